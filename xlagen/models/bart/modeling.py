"""The BART family (BART, mBART, Marian, Pegasus, Blenderbot, BlenderbotSmall, M2M100/NLLB) as one Keras model.

One encoder-decoder built from the shared blocks (``layers.EncoderLayer`` / ``DecoderLayer``); what
differs between the model types is the config's ``layout`` (see ``configuration.py``): norm placement,
embedding norm, position scheme, embedding scale, activation, final logits bias, embedding tying.
Weights keep Transformers' state-dict names (``model.encoder.layers.0.self_attn.q_proj.weight`` ...),
so Transformers-written checkpoints load by name; fixed sinusoidal position tables are computed
here, as Transformers does, and any copy in the file is ignored.

For ``generate`` the cross-attention keys/values are computed once from the encoder output and kept
in the cache next to the static self-attention buffers; decoder positions come from the generation
loop's ``position_ids`` (counted from the first real token, so a left-padded decoder prompt is not
shifted), which is what Transformers computes for an unpadded decoder prompt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf

from xlagen.loading.checkpoint import AliasedTensors
from xlagen.modeling_utils import Seq2SeqLMOutput, Seq2SeqLMTraining, TFPreTrainedModel, seq2seq_lm_loss
from xlagen.models.activations import ACTIVATIONS
from xlagen.models.bart.configuration import (
    BartConfig,
    BlenderbotConfig,
    BlenderbotSmallConfig,
    M2M100Config,
    MarianConfig,
    MBartConfig,
    PegasusConfig,
)
from xlagen.models.layers import (
    DecoderLayer,
    EncoderLayer,
    LayerNorm,
    WeightLayer,
    causal_allowed,
    kv_caches,
    linear,
    output_positions,
    shape_list,
)


def marian_sinusoids(length: int, dim: int) -> np.ndarray:
    """Marian/Pegasus position table [length, dim]: sines in the first half, cosines in the second
    (float64 then float32, as Transformers builds it)."""
    j = np.arange(dim)
    angles = np.arange(length, dtype=np.float64)[:, None] / np.power(10000, 2 * (j // 2) / dim)[None, :]
    sentinel = dim // 2 if dim % 2 == 0 else dim // 2 + 1
    out = np.empty((length, dim), np.float64)
    out[:, :sentinel] = np.sin(angles[:, 0::2])
    out[:, sentinel:] = np.cos(angles[:, 1::2])
    return out.astype(np.float32)


def fairseq_sinusoids(length: int, dim: int, padding_idx: int | None) -> np.ndarray:
    """M2M100/NLLB position table [length, dim] (tensor2tensor layout, float32 as Transformers computes
    it); the padding index row is zero."""
    half = dim // 2
    step = math.log(10000) / (half - 1)
    freqs = np.exp(np.arange(half, dtype=np.float32) * np.float32(-step)).astype(np.float32)
    angles = np.arange(length, dtype=np.float32)[:, None] * freqs[None, :]
    table = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
    if dim % 2:
        table = np.concatenate([table, np.zeros((length, 1), np.float32)], axis=1)
    if padding_idx is not None:
        table[padding_idx] = 0.0
    return table.astype(np.float32)


class BartStack(WeightLayer):
    """The encoder or decoder: position table, optional embedding norm, blocks, optional final norm."""

    def __init__(self, config: BartConfig, prefix: str, decoder: bool, init, **kw) -> None:
        super().__init__(**kw)
        layout, d = config.layout, config.d_model
        self.decoder = decoder
        self.scheme = layout["positions"]
        self.offset = layout["position_offset"]
        n_pos = config.max_position_embeddings
        if self.scheme == "learned":
            self.positions = self.new_weight(
                f"{prefix}.embed_positions.weight", (n_pos + self.offset, d), init
            )
        elif self.scheme == "sinusoidal":
            self.positions = tf.constant(marian_sinusoids(n_pos, d))
        else:  # fairseq: counted from pad + 1, zero row at pad
            self.positions = tf.constant(fairseq_sinusoids(n_pos + self.offset, d, config.pad_token_id))
        self.pad = config.pad_token_id
        self.layernorm_embedding = (
            LayerNorm(f"{prefix}.layernorm_embedding", d, 1e-5) if layout["layernorm_embedding"] else None
        )
        self.norm_before_positions = decoder and layout["embed_norm_before_positions"]
        heads = config.decoder_attention_heads if decoder else config.encoder_attention_heads
        ffn = config.decoder_ffn_dim if decoder else config.encoder_ffn_dim
        n = config.decoder_layers if decoder else config.encoder_layers
        cls = DecoderLayer if decoder else EncoderLayer
        self.layers = [
            cls(
                f"{prefix}.layers.{i}",
                d,
                heads,
                ffn,
                ACTIVATIONS[config.activation_function],
                normalize_before=layout["normalize_before"],
                dropout=config.dropout,
                attention_dropout=config.attention_dropout,
                activation_dropout=config.activation_dropout,
                init=init,
                name=f"layer_{i}",
            )
            for i in range(n)
        ]
        self.layer_norm = LayerNorm(f"{prefix}.layer_norm", d, 1e-5) if layout["normalize_before"] else None
        self.dropout = keras.layers.Dropout(config.dropout)
        self.built = True

    def position_rows(self, ids: tf.Tensor, positions: tf.Tensor) -> tf.Tensor:
        """Rows of the position table for tokens ``ids`` at 0-based ``positions`` (same shape)."""
        positions = tf.cast(positions, tf.int32)
        if self.scheme == "fairseq":
            return tf.where(tf.equal(ids, self.pad), self.pad, positions + self.pad + 1)
        return positions + self.offset

    def embed(self, token_embeddings: tf.Tensor, ids: tf.Tensor, positions: tf.Tensor, training: bool):
        """Token embeddings (already scaled) plus positions, normalised where the layout says."""
        rows = tf.clip_by_value(self.position_rows(ids, positions), 0, self.positions.shape[0] - 1)
        pos = tf.gather(self.positions, rows)
        if self.norm_before_positions:  # BlenderbotSmall's decoder
            h = self.layernorm_embedding(token_embeddings) + pos
        else:
            h = token_embeddings + pos
            if self.layernorm_embedding is not None:
                h = self.layernorm_embedding(h)
        return self.dropout(h, training=training)

    def finish(self, h: tf.Tensor) -> tf.Tensor:
        return h if self.layer_norm is None else self.layer_norm(h)

    def cross_kv(self, encoder_hidden: tf.Tensor) -> tuple[tuple[tf.Tensor, tf.Tensor], ...]:
        """Cross-attention keys/values of every decoder layer, from the encoder output."""
        return tuple(layer.encoder_attn.key_value(encoder_hidden) for layer in self.layers)


class TFBartForConditionalGeneration(Seq2SeqLMTraining, TFPreTrainedModel):
    """BART-family encoder-decoder with its LM head; subclasses only name the config class."""

    config_class: ClassVar[type[BartConfig]] = BartConfig
    checkpoint_prefix = "model."
    # Cache entries shared by all beams of an input: beam search does not reorder them.
    beam_invariant_cache_keys = ("cross", "encoder_mask")
    # Cross-attention takes one encoder row per input for all its beams (``layers.attend``).
    encoder_rows_shared_by_beams = True
    # Fixed sinusoidal tables (computed here) and Transformers' unused copies.
    ignored_checkpoint_keys = (
        r"^(model\.)?(encoder|decoder)\.embed_positions\.(weight|weights)$",
        r"^(model\.)?(encoder|decoder)\.version$",
    )
    # A buffer many files leave out; Transformers starts it at zero then.
    optional_checkpoint_keys = (r"^final_logits_bias$",)

    def __init__(self, config: BartConfig, **kw) -> None:
        super().__init__(config, **kw)
        d = config.d_model
        init = keras.initializers.RandomNormal(stddev=config.init_std)
        self.embed_scale = math.sqrt(d) if config.scale_embedding else 1.0
        target_vocab = config.target_vocab_size
        self.embeddings = WeightLayer(name="embeddings")
        names = self.embedding_names(config)
        tables: dict[str, Any] = {}
        for role, name in names.items():
            if name not in tables:
                rows = target_vocab if role in ("decoder", "head") else config.vocab_size
                tables[name] = self.embeddings.new_weight(name, (rows, d), init)
        self.encoder_embed = tables[names["encoder"]]
        self.decoder_embed = tables[names["decoder"]]
        self.head = tables[names["head"]]
        self.final_logits_bias = (
            self.embeddings.new_weight("final_logits_bias", (1, target_vocab))
            if config.layout["final_logits_bias"]
            else None
        )
        self.embeddings.built = True
        self.encoder = BartStack(config, "model.encoder", False, init, name="encoder")
        self.decoder = BartStack(config, "model.decoder", True, init, name="decoder")
        self.built = True

    @staticmethod
    def embedding_names(config: BartConfig) -> dict[str, str]:
        """Checkpoint name of the encoder, decoder and head tables (equal names: one shared weight),
        following Transformers' tying: all one ``model.shared`` table when ``tie_word_embeddings``,
        except Marian with ``share_encoder_decoder_embeddings: false`` (the head is the decoder's)."""
        enc, dec = "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"
        if not config.tie_word_embeddings:
            return {"encoder": enc, "decoder": dec, "head": "lm_head.weight"}
        if getattr(config, "share_encoder_decoder_embeddings", True):
            return {
                "encoder": "model.shared.weight",
                "decoder": "model.shared.weight",
                "head": "model.shared.weight",
            }
        return {"encoder": enc, "decoder": dec, "head": dec}

    # -- loading ----------------------------------------------------------------------------------
    _TABLES = (
        "model.shared.weight",
        "model.encoder.embed_tokens.weight",
        "model.decoder.embed_tokens.weight",
    )

    def checkpoint_keys_to_ignore(self) -> tuple[str, ...]:
        """Also the token tables this config ties to another name (Transformers' files repeat them)."""
        wanted = set(self.embedding_names(self.config).values())
        tied = tuple(
            "^(model\\.)?" + name[len("model.") :].replace(".", "\\.") + "$"
            for name in self._TABLES
            if name not in wanted
        )
        return self.ignored_checkpoint_keys + tied

    def load_state_dict(
        self, tensors: Mapping[str, np.ndarray], sources: Mapping[str, Any] | None = None
    ) -> None:
        """As the base class; a token table missing from the file is read from another name it is tied
        to in Transformers (``model.shared`` / ``model.encoder.embed_tokens`` / ``model.decoder.embed_tokens``)."""

        def stored(name: str) -> str | None:
            for candidate in (name, name[len("model.") :]):
                if candidate in tensors:
                    return candidate
            return None

        aliases = {}
        for name in set(self.embedding_names(self.config).values()) - {"lm_head.weight"}:
            if stored(name) is None:
                # the shared table first, then the encoder's, then the decoder's
                source = next((stored(n) for n in self._TABLES if stored(n) is not None), None)
                if source is not None:
                    aliases[name] = source
        if aliases:
            tensors = AliasedTensors(tensors, aliases)
            if sources:
                sources = {**sources, **{k: sources[v] for k, v in aliases.items() if v in sources}}
        super().load_state_dict(tensors, sources)

    # -- forward ----------------------------------------------------------------------------------
    def _tokens(self, table: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
        ids = tf.clip_by_value(tf.cast(ids, tf.int32), 0, table.shape[0] - 1)
        h = tf.gather(table, ids)
        return h * self.embed_scale if self.embed_scale != 1.0 else h

    def _logits(self, h: tf.Tensor) -> tf.Tensor:
        logits = linear(h, self.head)
        if self.final_logits_bias is not None:
            logits = logits + self.final_logits_bias
        return logits

    def _encoder_positions(self, ids: tf.Tensor) -> tf.Tensor:
        """0-based positions of the encoder tokens: their index, or for fairseq positions the count of
        non-padding tokens so far (Transformers' ``create_position_ids_from_input_ids``)."""
        ids = tf.cast(ids, tf.int32)
        if self.encoder.scheme == "fairseq":
            real = tf.cast(tf.not_equal(ids, self.config.pad_token_id), tf.int32)
            return tf.cumsum(real, axis=1) - 1
        b, s = shape_list(ids)
        return tf.broadcast_to(tf.range(s)[None, :], [b, s])

    def encode(self, input_ids, attention_mask=None, training: bool = False) -> dict[str, tf.Tensor]:
        """Run the encoder once: ``{"last_hidden_state": [B, S, d_model], "attention_mask": [B, S]}``."""
        input_ids = tf.cast(input_ids, tf.int32)
        if attention_mask is None:
            attention_mask = tf.ones_like(input_ids, tf.int32)
        attention_mask = tf.cast(attention_mask, tf.int32)
        h = self.encoder.embed(
            self._tokens(self.encoder_embed, input_ids),
            input_ids,
            self._encoder_positions(input_ids),
            training,
        )
        allowed = tf.cast(attention_mask, tf.bool)[:, None, None, :]
        for layer in self.encoder.layers:
            h = layer(h, allowed, training=training)
        return {"last_hidden_state": self.encoder.finish(h), "attention_mask": attention_mask}

    def _decode(self, ids, positions, allowed, cross_kv, encoder_mask, caches, cache_index, training):
        """Decoder stack; returns (final hidden states, updated self-attention caches or None)."""
        ids = tf.cast(ids, tf.int32)
        h = self.decoder.embed(self._tokens(self.decoder_embed, ids), ids, positions, training)
        cross_allowed = tf.cast(encoder_mask, tf.bool)[:, None, None, :]
        new_caches = []
        for i, layer in enumerate(self.decoder.layers):
            h, layer_cache = layer(
                h,
                allowed,
                cross_kv[i],
                cross_allowed,
                cache=None if caches is None else caches[i],
                cache_index=cache_index,
                training=training,
            )
            new_caches.append(layer_cache)
        return self.decoder.finish(h), (None if caches is None else tuple(new_caches))

    def call(
        self,
        input_ids,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        labels=None,
        training=False,
    ) -> Seq2SeqLMOutput:
        """Logits for every decoder position, like Transformers' ``...ForConditionalGeneration(...)``.

        Without ``decoder_input_ids``, ``labels`` shifted right (after ``decoder_start_token_id``)
        are the decoder input, and the output has the mean cross-entropy ``loss``.
        """
        inputs = self._unpack_inputs(
            input_ids,
            attention_mask,
            decoder_input_ids,
            decoder_attention_mask,
            labels,
            names=("attention_mask", "decoder_input_ids", "decoder_attention_mask", "labels"),
        )
        encoded = self.encode(inputs["input_ids"], inputs.get("attention_mask"), training=training)
        dec_ids, labels = inputs.get("decoder_input_ids"), inputs.get("labels")
        if dec_ids is None:
            if labels is None:
                raise ValueError(f"{type(self).__name__} needs decoder_input_ids or labels")
            dec_ids = self.decoder_input_ids_from_labels(labels)
        dec_ids = tf.cast(dec_ids, tf.int32)
        b, t = shape_list(dec_ids)
        dec_mask = inputs.get("decoder_attention_mask")
        if dec_mask is None:
            dec_mask = tf.ones([b, t], tf.int32)
        if self.decoder.scheme == "fairseq":
            positions = self._encoder_positions(dec_ids)  # Transformers counts non-pad tokens here too
        else:
            positions = tf.broadcast_to(tf.range(t)[None, :], [b, t])
        h, _ = self._decode(
            dec_ids,
            positions,
            causal_allowed(dec_mask, 0, t),
            self.decoder.cross_kv(encoded["last_hidden_state"]),
            encoded["attention_mask"],
            None,
            None,
            training,
        )
        logits = self._logits(h)
        out = Seq2SeqLMOutput(logits=logits, encoder_last_hidden_state=encoded["last_hidden_state"])
        if labels is not None:
            out["loss"] = seq2seq_lm_loss(logits, labels)
        return out

    # -- cached decoding protocol (used by xlagen.generation) -------------------------------------
    def init_cache(self, batch_size, max_length: int, encoder_outputs: dict[str, tf.Tensor] | None = None):
        """Zeroed self-attention K/V of ``max_length`` slots per decoder layer, cross-attention K/V
        computed once from ``encoder_outputs``, and the encoder mask."""
        if encoder_outputs is None:
            raise ValueError(f"{type(self).__name__}.init_cache needs encoder_outputs (from encode())")
        c = self.config
        heads = c.decoder_attention_heads
        return {
            "self": kv_caches(c.decoder_layers, batch_size, heads, max_length, c.d_model // heads),
            "cross": self.decoder.cross_kv(encoder_outputs["last_hidden_state"]),
            "encoder_mask": tf.cast(encoder_outputs["attention_mask"], tf.int32),
        }

    def forward_cached(self, input_ids, position_ids, attention_mask, cache, cache_index, last_only=True):
        """Run decoder ids [B, T] at positions ``position_ids`` and cache slots ``cache_index``..;
        return (logits, new cache). ``attention_mask`` [B, max_length] covers every self-attention slot."""
        t = shape_list(input_ids)[1]
        h, self_caches = self._decode(
            input_ids,
            position_ids,
            causal_allowed(attention_mask, cache_index, t),
            cache["cross"],
            cache["encoder_mask"],
            cache["self"],
            cache_index,
            False,
        )
        h = output_positions(h, last_only)
        new_cache = {"self": self_caches, "cross": cache["cross"], "encoder_mask": cache["encoder_mask"]}
        return self._logits(h), new_cache

    @property
    def output_vocab_size(self) -> int:
        """Rows of the LM head (Marian's ``decoder_vocab_size`` when its vocabularies are separate)."""
        return self.config.target_vocab_size

    @property
    def max_positions(self) -> int:
        """Decoder positions the position table covers (``max_position_embeddings``)."""
        return self.config.max_position_embeddings


class TFMBartForConditionalGeneration(TFBartForConditionalGeneration):
    """mBART / mBART-50 (pre-layernorm)."""

    config_class = MBartConfig


class TFMarianMTModel(TFBartForConditionalGeneration):
    """Marian translation models (opus-mt)."""

    config_class = MarianConfig


class TFPegasusForConditionalGeneration(TFBartForConditionalGeneration):
    """Pegasus summarisation models."""

    config_class = PegasusConfig


class TFBlenderbotForConditionalGeneration(TFBartForConditionalGeneration):
    """Blenderbot (pre-layernorm) dialogue models."""

    config_class = BlenderbotConfig


class TFBlenderbotSmallForConditionalGeneration(TFBartForConditionalGeneration):
    """BlenderbotSmall dialogue models."""

    config_class = BlenderbotSmallConfig


class TFM2M100ForConditionalGeneration(TFBartForConditionalGeneration):
    """M2M100 and NLLB translation models (model_type ``m2m_100``)."""

    config_class = M2M100Config
