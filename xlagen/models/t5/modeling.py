"""T5 (original, v1.1, Flan-T5) as a Keras model with TensorFlow numerics, plus the cached-decoding protocol.

Weights keep Hugging Face's state-dict names (``encoder.block.0.layer.0.SelfAttention.q.weight`` ...) and
PyTorch layouts (``nn.Linear`` stores ``[out, in]``), so checkpoints load by name.

Relative position bias. Layer 0 of each stack owns a ``[num_buckets, heads]`` table; the bias it computes
is shared by the other layers of the stack, as in Transformers. Distances are *slot* distances
(key slot - query slot): in the encoder, slots of the right-padded input; in the decoder, slots of the
static self-attention cache, the query slot coming from the loop's ``cache_index``. When the generation
engine left-pads decoder prompts to a bucket, a row's real tokens are contiguous slots, so the distance
between any two of them is the same in slot space as in token space, and padded keys are masked out:
slot-based bias is exact (Transformers also computes it from cache positions). It is never recovered
from cache contents or the cache size, so a longer ``max_length`` (a bigger static cache) cannot change
the tokens, as it did with Transformers 4.x TF's XLA generation for T5.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from xlagen.loading.checkpoint import AliasedTensors
from xlagen.modeling_utils import Seq2SeqLMOutput, Seq2SeqLMTraining, TFPreTrainedModel, seq2seq_lm_loss
from xlagen.models.activations import ACTIVATIONS
from xlagen.models.layers import (
    RMSNorm,
    WeightLayer,
    attend,
    causal_allowed,
    kv_caches,
    linear,
    merge_heads,
    output_positions,
    query_slots,
    shape_list,
    split_heads,
    update_cache,
)
from xlagen.models.t5.configuration import T5Config

logger = logging.getLogger("xlagen")


def distance_buckets(num_buckets: int, max_distance: int) -> np.ndarray:
    """Bucket of each non-negative distance 0..max_distance, with Transformers' float32 arithmetic.

    Half the buckets are exact distances, the other half logarithmic up to ``max_distance``; farther
    distances share the last bucket, so callers clamp the distance to ``max_distance``. Built once in
    numpy so eager, graph and XLA runs use the same integers as PyTorch (no in-graph ``log`` rounding).
    """
    max_exact = num_buckets // 2
    n = np.arange(max_distance + 1)
    scaled = (
        np.log(np.maximum(n, 1).astype(np.float32) / np.float32(max_exact))
        / np.float32(math.log(max_distance / max_exact))
        * np.float32(num_buckets - max_exact)
    )
    large = np.minimum(max_exact + scaled.astype(np.int64), num_buckets - 1)
    return np.where(n < max_exact, n, large).astype(np.int32)


def relative_position_bucket(
    relative: tf.Tensor, num_buckets: int, max_distance: int, bidirectional: bool
) -> tf.Tensor:
    """T5's bucket of ``relative`` = key position - query position (int32 tensor, any shape)."""
    if bidirectional:
        half = num_buckets // 2
        table = tf.constant(distance_buckets(half, max_distance))
        distance = tf.minimum(tf.abs(relative), max_distance)
        return tf.where(relative > 0, half, 0) + tf.gather(table, distance)
    table = tf.constant(distance_buckets(num_buckets, max_distance))
    return tf.gather(table, tf.minimum(tf.maximum(-relative, 0), max_distance))


T5LayerNorm = RMSNorm  # T5's layer norm is an RMS norm (scale only)


class T5Attention(WeightLayer):
    """Unscaled multi-head attention; layer 0 of a stack also owns the relative position bias table."""

    def __init__(self, config: T5Config, prefix: str, has_relative_bias: bool, bidirectional: bool, **kw):
        super().__init__(**kw)
        d, inner, f = config.d_model, config.inner_dim, config.initializer_factor
        normal = keras.initializers.RandomNormal
        self.q_w = self.new_weight(
            f"{prefix}.q.weight", (inner, d), normal(stddev=f * (d * config.d_kv) ** -0.5)
        )
        self.k_w = self.new_weight(f"{prefix}.k.weight", (inner, d), normal(stddev=f * d**-0.5))
        self.v_w = self.new_weight(f"{prefix}.v.weight", (inner, d), normal(stddev=f * d**-0.5))
        self.o_w = self.new_weight(f"{prefix}.o.weight", (d, inner), normal(stddev=f * inner**-0.5))
        self.rel_bias = None
        if has_relative_bias:
            self.rel_bias = self.new_weight(
                f"{prefix}.relative_attention_bias.weight",
                (config.relative_attention_num_buckets, config.num_heads),
                normal(stddev=f * d**-0.5),
            )
        self.num_heads = config.num_heads
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        self.bidirectional = bidirectional
        self.attn_dropout = keras.layers.Dropout(config.dropout_rate)
        self.built = True

    def position_bias(self, query_slots: tf.Tensor, key_slots: tf.Tensor) -> tf.Tensor:
        """Bias [1, heads, T, S] for queries at ``query_slots`` [T] and keys at ``key_slots`` [S]
        ([B, heads, T, S] for per-row query slots [B, T])."""
        relative = key_slots - query_slots[..., None]
        buckets = relative_position_bucket(relative, self.num_buckets, self.max_distance, self.bidirectional)
        bias = tf.gather(self.rel_bias, buckets)  # [(B,) T, S, heads]
        if bias.shape.rank == 3:
            return tf.transpose(bias, [2, 0, 1])[None]
        return tf.transpose(bias, [0, 3, 1, 2])

    def project_kv(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Keys and values [B, heads, S, d_kv] of ``x`` (cross-attention computes these once)."""
        return split_heads(linear(x, self.k_w), self.num_heads), split_heads(
            linear(x, self.v_w), self.num_heads
        )

    def call(self, x, bias, allowed, kv=None, cache=None, cache_index=None, training=False):
        """Attend from ``x``; self-attention unless ``kv`` (cross-attention keys/values) is given.

        With ``cache`` (k, v static buffers) the new keys/values are written at ``cache_index`` and
        the updated pair is returned.
        """
        q = split_heads(linear(x, self.q_w), self.num_heads)
        if kv is None:
            k, v = self.project_kv(x)
            if cache is not None:
                k = update_cache(cache[0], k, cache_index)
                v = update_cache(cache[1], v, cache_index)
                cache = (k, v)
        else:
            k, v = kv
        dropout = (lambda p: self.attn_dropout(p, training=training)) if training else None
        out = attend(q, k, v, allowed, 1.0, dropout, bias=bias)  # T5 does not scale by 1/sqrt(d_kv)
        return linear(merge_heads(out), self.o_w), cache


class T5FeedForward(WeightLayer):
    """Pre-norm feed-forward sub-layer: ``DenseReluDense`` (plain or gated) with a residual."""

    def __init__(self, config: T5Config, prefix: str, **kw) -> None:
        super().__init__(**kw)
        d, ff, f = config.d_model, config.d_ff, config.initializer_factor
        normal = keras.initializers.RandomNormal
        p = f"{prefix}.DenseReluDense"
        self.gated = config.is_gated_act
        if self.gated:
            self.wi_0 = self.new_weight(f"{p}.wi_0.weight", (ff, d), normal(stddev=f * d**-0.5))
            self.wi_1 = self.new_weight(f"{p}.wi_1.weight", (ff, d), normal(stddev=f * d**-0.5))
        else:
            self.wi = self.new_weight(f"{p}.wi.weight", (ff, d), normal(stddev=f * d**-0.5))
        self.wo = self.new_weight(f"{p}.wo.weight", (d, ff), normal(stddev=f * ff**-0.5))
        self.layer_norm = T5LayerNorm(f"{prefix}.layer_norm", d, config.layer_norm_epsilon)
        self.act = ACTIVATIONS[config.dense_act_fn]
        self.inner_dropout = keras.layers.Dropout(config.dropout_rate)
        self.dropout = keras.layers.Dropout(config.dropout_rate)
        self.built = True

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        h = self.layer_norm(x)
        if self.gated:
            h = self.act(linear(h, self.wi_0)) * linear(h, self.wi_1)
        else:
            h = self.act(linear(h, self.wi))
        h = linear(self.inner_dropout(h, training=training), self.wo)
        return x + self.dropout(h, training=training)


class T5Block(WeightLayer):
    """Self-attention, cross-attention (decoder only) and feed-forward, each pre-norm with a residual."""

    def __init__(self, config: T5Config, prefix: str, index: int, is_decoder: bool, **kw) -> None:
        super().__init__(**kw)
        d, eps = config.d_model, config.layer_norm_epsilon
        self.self_attn = T5Attention(
            config, f"{prefix}.layer.0.SelfAttention", index == 0, bidirectional=not is_decoder
        )
        self.self_norm = T5LayerNorm(f"{prefix}.layer.0.layer_norm", d, eps)
        self.is_decoder = is_decoder
        if is_decoder:
            self.cross_attn = T5Attention(
                config, f"{prefix}.layer.1.EncDecAttention", False, bidirectional=True
            )
            self.cross_norm = T5LayerNorm(f"{prefix}.layer.1.layer_norm", d, eps)
        self.ff = T5FeedForward(config, f"{prefix}.layer.{2 if is_decoder else 1}")
        self.dropout = keras.layers.Dropout(config.dropout_rate)
        self.built = True

    def call(
        self,
        x,
        bias,
        allowed,
        cross_kv=None,
        cross_allowed=None,
        cache=None,
        cache_index=None,
        training=False,
    ):
        a, cache = self.self_attn(
            self.self_norm(x), bias, allowed, cache=cache, cache_index=cache_index, training=training
        )
        x = x + self.dropout(a, training=training)
        if self.is_decoder:
            a, _ = self.cross_attn(self.cross_norm(x), None, cross_allowed, kv=cross_kv, training=training)
            x = x + self.dropout(a, training=training)
        return self.ff(x, training=training), cache


class T5Stack(WeightLayer):
    """The encoder or decoder: blocks and a final norm (embeddings are the model's ``shared`` table)."""

    def __init__(self, config: T5Config, prefix: str, is_decoder: bool, **kw) -> None:
        super().__init__(**kw)
        n = config.num_decoder_layers if is_decoder else config.num_layers
        self.blocks = [
            T5Block(config, f"{prefix}.block.{i}", i, is_decoder, name=f"block_{i}") for i in range(n)
        ]
        self.final_layer_norm = T5LayerNorm(
            f"{prefix}.final_layer_norm", config.d_model, config.layer_norm_epsilon
        )
        self.dropout = keras.layers.Dropout(config.dropout_rate)
        self.built = True

    def position_bias(self, query_slots: tf.Tensor, key_slots: tf.Tensor) -> tf.Tensor:
        """Layer 0's relative position bias, shared by every layer of the stack."""
        return self.blocks[0].self_attn.position_bias(query_slots, key_slots)

    def cross_kv(self, encoder_hidden: tf.Tensor) -> tuple[tuple[tf.Tensor, tf.Tensor], ...]:
        """Cross-attention keys/values of every decoder layer, from the encoder output."""
        return tuple(block.cross_attn.project_kv(encoder_hidden) for block in self.blocks)


class TFT5ForConditionalGeneration(Seq2SeqLMTraining, TFPreTrainedModel):
    """T5 with its language-modelling head (tied to ``shared`` unless the checkpoint unties it)."""

    # Cache entries shared by all beams of an input: beam search does not reorder them.
    beam_invariant_cache_keys = ("cross", "encoder_mask")
    # Cross-attention takes one encoder row per input for all its beams (``layers.attend``), so
    # beam search neither repeats the encoder output per beam nor reads the same K/V K times.
    encoder_rows_shared_by_beams = True

    config_class = T5Config
    # Copies of ``shared.weight`` some files carry, and a weight Transformers drops as unused.
    ignored_checkpoint_keys = (
        r"^(encoder|decoder)\.embed_tokens\.weight$",
        r"^decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$",
    )

    def __init__(self, config: T5Config, **kw) -> None:
        super().__init__(config, **kw)
        self.embeddings = WeightLayer(name="shared")
        self.shared = self.embeddings.new_weight(
            "shared.weight",
            (config.vocab_size, config.d_model),
            keras.initializers.RandomNormal(stddev=config.initializer_factor),
        )
        self.embeddings.built = True
        self.encoder = T5Stack(config, "encoder", is_decoder=False, name="encoder")
        self.decoder = T5Stack(config, "decoder", is_decoder=True, name="decoder")
        if config.tie_word_embeddings:
            self.lm_head = None
        else:
            self.lm_head = WeightLayer(name="lm_head")
            self.lm_head_weight = self.lm_head.new_weight(
                "lm_head.weight",
                (config.vocab_size, config.d_model),
                keras.initializers.RandomNormal(stddev=config.initializer_factor),
            )
            self.lm_head.built = True
        self.built = True

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def _config_for_checkpoint(cls, config: T5Config, tensors: Mapping[str, np.ndarray]) -> T5Config:
        """Untie the head when the file holds an ``lm_head.weight`` that differs from ``shared.weight``.

        Transformers 5 writes ``tie_word_embeddings: true`` for every T5 (``scale_decoder_outputs``
        tells v1.1 apart) and unties on load in that case; Flan-T5 files re-saved by it look like that.
        """
        head, shared = tensors.get("lm_head.weight"), cls._shared_tensor(tensors)
        if config.tie_word_embeddings and head is not None and shared is not None:
            if head.shape != shared.shape or not np.array_equal(head, shared):
                logger.info(
                    "lm_head.weight in the checkpoint differs from shared.weight: untying the LM head"
                )
                config = copy.deepcopy(config)
                config.tie_word_embeddings = False
        return config

    @staticmethod
    def _shared_tensor(tensors: Mapping[str, np.ndarray]) -> np.ndarray | None:
        for name in ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
            if name in tensors:
                return tensors[name]
        return None

    def load_state_dict(
        self, tensors: Mapping[str, np.ndarray], sources: Mapping[str, Any] | None = None
    ) -> None:
        """As the base class; a file with only ``encoder/decoder.embed_tokens.weight`` supplies ``shared``."""
        if "shared.weight" not in tensors:
            for name in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
                if name in tensors:
                    tensors = AliasedTensors(tensors, {"shared.weight": name})
                    if sources and name in sources:
                        sources = {**sources, "shared.weight": sources[name]}
                    break
        super().load_state_dict(tensors, sources)

    # -- shared forward ---------------------------------------------------------------------------
    def _embed(self, ids: tf.Tensor) -> tf.Tensor:
        ids = tf.clip_by_value(tf.cast(ids, tf.int32), 0, self.config.vocab_size - 1)
        return tf.gather(self.shared, ids)

    def _logits(self, h: tf.Tensor) -> tf.Tensor:
        if self.config.scale_decoder_outputs:
            h = h * (self.config.d_model**-0.5)
        weight = self.shared if self.lm_head is None else self.lm_head_weight
        return linear(h, weight)

    def encode(self, input_ids, attention_mask=None, training: bool = False) -> dict[str, tf.Tensor]:
        """Run the encoder once: ``{"last_hidden_state": [B, S, d_model], "attention_mask": [B, S]}``."""
        s = tf.shape(input_ids)[1]
        if attention_mask is None:
            attention_mask = tf.ones_like(input_ids, tf.int32)
        attention_mask = tf.cast(attention_mask, tf.int32)
        h = self.encoder.dropout(self._embed(input_ids), training=training)
        slots = tf.range(s)
        bias = self.encoder.position_bias(slots, slots)
        allowed = tf.cast(attention_mask, tf.bool)[:, None, None, :]
        for block in self.encoder.blocks:
            h, _ = block(h, bias, allowed, training=training)
        h = self.encoder.dropout(self.encoder.final_layer_norm(h), training=training)
        return {"last_hidden_state": h, "attention_mask": attention_mask}

    def _decode(
        self, ids, query_slots, key_slots, allowed, cross_kv, encoder_mask, caches, cache_index, training
    ):
        """Decoder stack; returns (final hidden states, updated self-attention caches or None)."""
        h = self.decoder.dropout(self._embed(ids), training=training)
        bias = self.decoder.position_bias(query_slots, key_slots)
        cross_allowed = tf.cast(encoder_mask, tf.bool)[:, None, None, :]
        new_caches = []
        for i, block in enumerate(self.decoder.blocks):
            h, layer_cache = block(
                h,
                bias,
                allowed,
                cross_kv[i],
                cross_allowed,
                cache=None if caches is None else caches[i],
                cache_index=cache_index,
                training=training,
            )
            new_caches.append(layer_cache)
        h = self.decoder.dropout(self.decoder.final_layer_norm(h), training=training)
        return h, (None if caches is None else tuple(new_caches))

    def call(
        self,
        input_ids,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        labels=None,
        training=False,
    ) -> Seq2SeqLMOutput:
        """Logits for every decoder position, like Transformers' ``TFT5ForConditionalGeneration(...)``.

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
                raise ValueError("TFT5ForConditionalGeneration needs decoder_input_ids or labels")
            dec_ids = self.decoder_input_ids_from_labels(labels)
        b, t = tf.shape(dec_ids)[0], tf.shape(dec_ids)[1]
        dec_mask = inputs.get("decoder_attention_mask")
        if dec_mask is None:
            dec_mask = tf.ones([b, t], tf.int32)
        slots = tf.range(t)
        cross_kv = self.decoder.cross_kv(encoded["last_hidden_state"])
        h, _ = self._decode(
            dec_ids,
            slots,
            slots,
            causal_allowed(dec_mask, 0, t),
            cross_kv,
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
        """Everything the decoder needs: zeroed self-attention K/V of ``max_length`` slots per layer,
        cross-attention K/V computed once from ``encoder_outputs``, and the encoder mask."""
        if encoder_outputs is None:
            raise ValueError("TFT5ForConditionalGeneration.init_cache needs encoder_outputs (from encode())")
        c = self.config
        return {
            "self": kv_caches(c.num_decoder_layers, batch_size, c.num_heads, max_length, c.d_kv),
            "cross": self.decoder.cross_kv(encoder_outputs["last_hidden_state"]),
            "encoder_mask": tf.cast(encoder_outputs["attention_mask"], tf.int32),
        }

    def forward_cached(self, input_ids, position_ids, attention_mask, cache, cache_index, last_only=True):
        """Run decoder ids [B, T] at cache slots ``cache_index``.. and return (logits, new cache).

        ``attention_mask`` [B, max_length] covers every self-attention slot. ``position_ids`` is
        unused: T5 has no absolute positions, and its relative bias is computed from slots (see the
        module docstring).
        """
        del position_ids
        t = shape_list(input_ids)[1]
        max_length = shape_list(attention_mask)[1]
        allowed = causal_allowed(attention_mask, cache_index, t)
        h, self_caches = self._decode(
            input_ids,
            query_slots(cache_index, t),
            tf.range(max_length),
            allowed,
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
    def max_positions(self) -> None:
        """T5 has no position limit (relative positions only)."""
        return None
