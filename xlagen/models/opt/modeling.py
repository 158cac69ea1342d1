"""OPT as a Keras model with TensorFlow numerics, plus the cached-decoding protocol.

Weights keep Hugging Face's state-dict names (``model.decoder.layers.0.self_attn.q_proj.weight`` ...)
and PyTorch's ``nn.Linear`` layout ``[out, in]``: projections multiply with ``transpose_b`` instead of
transposing at load time, so checkpoints load (and save) by name with no conversion step.

Every variant of the published checkpoints is covered: pre-norm (125m, 1.3b, ...) and post-norm
(350m) layers, ``word_embed_proj_dim`` != ``hidden_size`` (``project_in`` / ``project_out``),
``enable_bias``, ``layer_norm_elementwise_affine``, ``_remove_final_layer_norm`` and tied or untied heads.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from xlagen.modeling_utils import CausalLMOutput, TFPreTrainedModel
from xlagen.models.activations import ACTIVATIONS
from xlagen.models.layers import (
    LayerNorm,
    WeightLayer,
    attend,
    causal_allowed,
    kv_caches,
    linear,
    merge_heads,
    output_positions,
    shape_list,
    split_heads,
    update_cache,
)
from xlagen.models.opt.configuration import OPTConfig

# OPT's learned position table has two extra rows in front (a fairseq padding_idx leftover):
# position p reads row p + 2, and Transformers gives padding tokens position -1 (row 1).
POSITION_OFFSET = 2
LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, which OPT uses


def mask_positions(attention_mask: tf.Tensor) -> tf.Tensor:
    """Transformers' OPT positions from a mask: ``cumsum(mask) * mask - 1`` (padding gets -1)."""
    mask = tf.cast(attention_mask, tf.int32)
    return tf.cumsum(mask, axis=1) * mask - 1


class OPTAttention(WeightLayer):
    def __init__(self, config: OPTConfig, prefix: str, **kw) -> None:
        super().__init__(**kw)
        c = config.hidden_size
        init = keras.initializers.RandomNormal(stddev=config.init_std)
        self.proj: dict[str, tuple[keras.Variable, keras.Variable | None]] = {}
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            w = self.new_weight(f"{prefix}.{name}.weight", (c, c), init)
            b = self.new_weight(f"{prefix}.{name}.bias", (c,)) if config.enable_bias else None
            self.proj[name] = (w, b)
        self.num_heads = config.num_attention_heads
        # Transformers scales q (bias included) before the dot product, not the scores: same order here.
        self.scaling = config.head_dim**-0.5
        self.attn_dropout = keras.layers.Dropout(config.attention_dropout)
        self.built = True

    def call(self, x, allowed, cache=None, cache_index=None, training=False):
        q = linear(x, *self.proj["q_proj"]) * self.scaling
        k = linear(x, *self.proj["k_proj"])
        v = linear(x, *self.proj["v_proj"])
        q, k, v = (split_heads(t, self.num_heads) for t in (q, k, v))
        if cache is not None:
            k = update_cache(cache[0], k, cache_index)
            v = update_cache(cache[1], v, cache_index)
            cache = (k, v)
        dropout = (lambda p: self.attn_dropout(p, training=training)) if training else None
        out = attend(q, k, v, allowed, 1.0, dropout)
        return linear(merge_heads(out), *self.proj["out_proj"]), cache


class OPTDecoderLayer(WeightLayer):
    """Self-attention + MLP, with layer norms before (pre-norm) or after (post-norm) each residual add."""

    def __init__(self, config: OPTConfig, prefix: str, **kw) -> None:
        super().__init__(**kw)
        c, ffn = config.hidden_size, config.ffn_dim
        init = keras.initializers.RandomNormal(stddev=config.init_std)
        affine = config.layer_norm_elementwise_affine
        self.pre_norm = config.do_layer_norm_before
        self.self_attn = OPTAttention(config, f"{prefix}.self_attn")
        self.self_attn_layer_norm = LayerNorm(
            f"{prefix}.self_attn_layer_norm", c, LAYER_NORM_EPS, affine=affine
        )
        self.final_layer_norm = LayerNorm(f"{prefix}.final_layer_norm", c, LAYER_NORM_EPS, affine=affine)
        bias = config.enable_bias
        self.fc1_w = self.new_weight(f"{prefix}.fc1.weight", (ffn, c), init)
        self.fc1_b = self.new_weight(f"{prefix}.fc1.bias", (ffn,)) if bias else None
        self.fc2_w = self.new_weight(f"{prefix}.fc2.weight", (c, ffn), init)
        self.fc2_b = self.new_weight(f"{prefix}.fc2.bias", (c,)) if bias else None
        self.act = ACTIVATIONS[config.activation_function]
        self.dropout = keras.layers.Dropout(config.dropout)
        self.built = True

    def call(self, x, allowed, cache=None, cache_index=None, training=False):
        h = self.self_attn_layer_norm(x) if self.pre_norm else x
        h, cache = self.self_attn(h, allowed, cache=cache, cache_index=cache_index, training=training)
        x = x + self.dropout(h, training=training)
        if not self.pre_norm:
            x = self.self_attn_layer_norm(x)
        h = self.final_layer_norm(x) if self.pre_norm else x
        h = linear(self.act(linear(h, self.fc1_w, self.fc1_b)), self.fc2_w, self.fc2_b)
        x = x + self.dropout(h, training=training)
        if not self.pre_norm:
            x = self.final_layer_norm(x)
        return x, cache


class TFOPTForCausalLM(TFPreTrainedModel):
    """OPT with a language-modelling head (tied to the token embedding unless the config unties it)."""

    config_class = OPTConfig
    checkpoint_prefix = "model."  # OPTModel files (and the original metaseq exports) lack it

    def __init__(self, config: OPTConfig, **kw) -> None:
        super().__init__(config, **kw)
        c, e = config.hidden_size, config.word_embed_proj_dim
        init = keras.initializers.RandomNormal(stddev=config.init_std)
        self.embeddings = WeightLayer(name="embeddings")
        self.embed_tokens = self.embeddings.new_weight(
            "model.decoder.embed_tokens.weight", (config.vocab_size, e), init
        )
        self.embed_positions = self.embeddings.new_weight(
            "model.decoder.embed_positions.weight",
            (config.max_position_embeddings + POSITION_OFFSET, c),
            init,
        )
        if e != c:
            self.project_in = self.embeddings.new_weight("model.decoder.project_in.weight", (c, e), init)
            self.project_out = self.embeddings.new_weight("model.decoder.project_out.weight", (e, c), init)
        else:
            self.project_in = self.project_out = None
        self.embeddings.built = True
        self.decoder_layers = [
            OPTDecoderLayer(config, f"model.decoder.layers.{i}", name=f"layers_{i}")
            for i in range(config.num_hidden_layers)
        ]
        self.final_layer_norm = (
            LayerNorm(
                "model.decoder.final_layer_norm",
                c,
                LAYER_NORM_EPS,
                affine=config.layer_norm_elementwise_affine,
                name="final_layer_norm",
            )
            if config.has_final_layer_norm
            else None
        )
        if config.tie_word_embeddings:
            self.lm_head = None
            self.lm_head_weight = self.embed_tokens
        else:
            self.lm_head = WeightLayer(name="lm_head")
            self.lm_head_weight = self.lm_head.new_weight("lm_head.weight", (config.vocab_size, e), init)
            self.lm_head.built = True
        self.layerdrop_seed = keras.random.SeedGenerator() if config.layerdrop > 0 else None
        self.built = True

    # -- shared forward -------------------------------------------------------------------------
    def _embed(self, input_ids, position_ids):
        """Token (+ project_in) plus learned position embeddings; ``position_ids`` are 0-based."""
        ids = tf.clip_by_value(tf.cast(input_ids, tf.int32), 0, self.config.vocab_size - 1)
        rows = tf.cast(position_ids, tf.int32) + POSITION_OFFSET
        rows = tf.clip_by_value(rows, 0, self.config.max_position_embeddings + POSITION_OFFSET - 1)
        h = tf.gather(self.embed_tokens, ids)
        if self.project_in is not None:
            h = linear(h, self.project_in)
        return h + tf.gather(self.embed_positions, rows)

    def _decode(self, h, allowed, cache=None, cache_index=None, training=False):
        new_cache = []
        for i, layer in enumerate(self.decoder_layers):
            layer_cache = None if cache is None else cache[i]
            out, layer_cache = layer(
                h, allowed, cache=layer_cache, cache_index=cache_index, training=training
            )
            if training and self.layerdrop_seed is not None:  # LayerDrop: skip the whole layer with prob p
                keep = keras.random.uniform((), seed=self.layerdrop_seed) >= self.config.layerdrop
                out = tf.where(keep, out, h)
            h = out
            new_cache.append(layer_cache)
        return h, tuple(new_cache)

    def _logits(self, h):
        if self.final_layer_norm is not None:
            h = self.final_layer_norm(h)
        if self.project_out is not None:
            h = linear(h, self.project_out)
        return linear(h, self.lm_head_weight)

    def call(
        self, input_ids, attention_mask=None, position_ids=None, labels=None, training=False
    ) -> CausalLMOutput:
        """Logits for every position, like Transformers' ``OPTForCausalLM(...)``.

        Without ``position_ids``, positions come from the attention mask (``cumsum(mask) * mask - 1``),
        so left padding does not shift them; given ``position_ids`` are 0-based, as in Transformers.
        """
        inputs = self._unpack_inputs(
            input_ids,
            attention_mask,
            position_ids,
            labels,
            names=("attention_mask", "position_ids", "labels"),
        )
        input_ids = inputs["input_ids"]
        b, t = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = tf.ones([b, t], tf.int32)
        pos = inputs.get("position_ids")
        if pos is None:
            pos = mask_positions(mask)
        h = self._embed(input_ids, pos)
        h, _ = self._decode(h, causal_allowed(mask, 0, t), training=training)
        logits = self._logits(h)
        out = CausalLMOutput(logits=logits)
        if inputs.get("labels") is not None:
            out["loss"] = self.causal_lm_loss(logits, inputs["labels"])
        return out

    # -- cached decoding protocol (used by xlagen.generation) -----------------------------------
    def init_cache(self, batch_size: int, max_length: int):
        """Zeroed key/value cache: one (k, v) pair of [batch * heads, max_length, head_dim] per layer."""
        c = self.config
        return kv_caches(c.num_hidden_layers, batch_size, c.num_attention_heads, max_length, c.head_dim)

    def forward_cached(self, input_ids, position_ids, attention_mask, cache, cache_index, last_only=True):
        """Run ``input_ids`` [B, T] at cache slots ``cache_index``.. and return (logits, new cache).

        ``attention_mask`` [B, max_length] covers every cache slot; ``position_ids`` are 0-based.
        Logits are for the last position only when ``last_only`` (all generation needs), else for all T.
        """
        t = shape_list(input_ids)[1]
        h = self._embed(input_ids, position_ids)
        allowed = causal_allowed(attention_mask, cache_index, t)
        h, new_cache = self._decode(h, allowed, cache=cache, cache_index=cache_index)
        h = output_positions(h, last_only)
        return self._logits(h), new_cache

    @property
    def max_positions(self) -> int:
        return self.config.max_position_embeddings
