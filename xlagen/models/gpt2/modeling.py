"""GPT-2 as a Keras model with TensorFlow numerics, plus the cached-decoding protocol.

Weights keep Hugging Face's state-dict names (``transformer.h.0.attn.c_attn.weight`` ...), so
checkpoints load by name. GPT-2's Conv1D weights (``[in, out]`` in the checkpoint) are held as
``[out, in]`` and used as ``x @ W.T``: XLA CPU runs the decode step's products ~20 % faster at
batch 8 in that layout (loading and saving transpose them).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from xlagen.modeling_utils import CausalLMOutput, TFPreTrainedModel
from xlagen.models.activations import ACTIVATIONS
from xlagen.models.gpt2.configuration import GPT2Config
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


class GPT2Attention(WeightLayer):
    def __init__(self, config: GPT2Config, prefix: str, layer_idx: int, **kw) -> None:
        super().__init__(**kw)
        c = config.n_embd
        init = keras.initializers.RandomNormal(stddev=config.initializer_range)
        self.c_attn_w = self.new_weight(f"{prefix}.c_attn.weight", (c, 3 * c), init, transposed=True)
        self.c_attn_b = self.new_weight(f"{prefix}.c_attn.bias", (3 * c,))
        self.c_proj_w = self.new_weight(f"{prefix}.c_proj.weight", (c, c), init, transposed=True)
        self.c_proj_b = self.new_weight(f"{prefix}.c_proj.bias", (c,))
        self.num_heads = config.n_head
        scale = 1.0 / math.sqrt(c // config.n_head) if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            scale /= float(layer_idx + 1)
        self.scale = scale
        self.attn_dropout = keras.layers.Dropout(config.attn_pdrop)
        self.resid_dropout = keras.layers.Dropout(config.resid_pdrop)
        self.built = True

    def call(self, x, allowed, cache=None, cache_index=None, training=False):
        q, k, v = tf.split(linear(x, self.c_attn_w, self.c_attn_b), 3, axis=-1)
        q, k, v = (split_heads(t, self.num_heads) for t in (q, k, v))
        if cache is not None:
            k = update_cache(cache[0], k, cache_index)
            v = update_cache(cache[1], v, cache_index)
            cache = (k, v)
        dropout = (lambda p: self.attn_dropout(p, training=training)) if training else None
        out = attend(q, k, v, allowed, self.scale, dropout)
        out = linear(merge_heads(out), self.c_proj_w, self.c_proj_b)
        return self.resid_dropout(out, training=training), cache


class GPT2Block(WeightLayer):
    def __init__(self, config: GPT2Config, prefix: str, layer_idx: int, **kw) -> None:
        super().__init__(**kw)
        c, inner = config.n_embd, config.inner_dim
        init = keras.initializers.RandomNormal(stddev=config.initializer_range)
        self.ln_1 = LayerNorm(f"{prefix}.ln_1", c, config.layer_norm_epsilon)
        self.attn = GPT2Attention(config, f"{prefix}.attn", layer_idx)
        self.ln_2 = LayerNorm(f"{prefix}.ln_2", c, config.layer_norm_epsilon)
        self.fc_w = self.new_weight(f"{prefix}.mlp.c_fc.weight", (c, inner), init, transposed=True)
        self.fc_b = self.new_weight(f"{prefix}.mlp.c_fc.bias", (inner,))
        self.proj_w = self.new_weight(f"{prefix}.mlp.c_proj.weight", (inner, c), init, transposed=True)
        self.proj_b = self.new_weight(f"{prefix}.mlp.c_proj.bias", (c,))
        self.act = ACTIVATIONS[config.activation_function]
        self.mlp_dropout = keras.layers.Dropout(config.resid_pdrop)
        self.built = True

    def call(self, x, allowed, cache=None, cache_index=None, training=False):
        a, cache = self.attn(self.ln_1(x), allowed, cache=cache, cache_index=cache_index, training=training)
        x = x + a
        h = linear(self.act(linear(self.ln_2(x), self.fc_w, self.fc_b)), self.proj_w, self.proj_b)
        return x + self.mlp_dropout(h, training=training), cache


class TFGPT2LMHeadModel(TFPreTrainedModel):
    """GPT-2 with a language-modelling head (tied to the token embedding unless the config unties it)."""

    config_class = GPT2Config
    checkpoint_prefix = "transformer."
    ignored_checkpoint_keys = (r"\.attn\.bias$", r"\.attn\.masked_bias$")

    def __init__(self, config: GPT2Config, **kw) -> None:
        super().__init__(config, **kw)
        c = config.n_embd
        self.embeddings = WeightLayer(name="embeddings")
        self.wte = self.embeddings.new_weight(
            "transformer.wte.weight", (config.vocab_size, c), keras.initializers.RandomNormal(stddev=0.02)
        )
        self.wpe = self.embeddings.new_weight(
            "transformer.wpe.weight", (config.n_positions, c), keras.initializers.RandomNormal(stddev=0.01)
        )
        self.embeddings.built = True
        self.emb_dropout = keras.layers.Dropout(config.embd_pdrop)
        self.blocks = [
            GPT2Block(config, f"transformer.h.{i}", i, name=f"h_{i}") for i in range(config.n_layer)
        ]
        self.ln_f = LayerNorm("transformer.ln_f", c, config.layer_norm_epsilon, name="ln_f")
        if config.tie_word_embeddings:
            self.lm_head = None
        else:
            self.lm_head = WeightLayer(name="lm_head")
            self.lm_head.new_weight("lm_head.weight", (config.vocab_size, c), "glorot_uniform")
            self.lm_head.built = True
        self.built = True

    # -- shared forward -------------------------------------------------------------------------
    def _embed(self, input_ids, position_ids, token_type_ids=None, training=False):
        vocab, n_pos = self.config.vocab_size, self.config.n_positions
        ids = tf.clip_by_value(tf.cast(input_ids, tf.int32), 0, vocab - 1)
        pos = tf.clip_by_value(tf.cast(position_ids, tf.int32), 0, n_pos - 1)
        h = tf.gather(self.wte, ids) + tf.gather(self.wpe, pos)
        if token_type_ids is not None:
            h = h + tf.gather(self.wte, tf.clip_by_value(tf.cast(token_type_ids, tf.int32), 0, vocab - 1))
        return self.emb_dropout(h, training=training)

    def _logits(self, h):
        weight = self.wte if self.lm_head is None else self.lm_head.checkpoint_names["lm_head.weight"]
        return tf.matmul(h, weight, transpose_b=True)

    def call(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        token_type_ids=None,
        labels=None,
        training=False,
    ) -> CausalLMOutput:
        """Logits for every position, like Transformers' ``TFGPT2LMHeadModel(...)``."""
        inputs = self._unpack_inputs(input_ids, attention_mask, position_ids, token_type_ids, labels)
        input_ids = inputs["input_ids"]
        b, t = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = tf.ones([b, t], tf.int32)
        pos = inputs.get("position_ids")
        if pos is None:
            pos = tf.broadcast_to(tf.range(t)[None, :], [b, t])
        h = self._embed(input_ids, pos, inputs.get("token_type_ids"), training)
        allowed = causal_allowed(mask, 0, t)
        for block in self.blocks:
            h, _ = block(h, allowed, training=training)
        logits = self._logits(self.ln_f(h))
        out = CausalLMOutput(logits=logits)
        if inputs.get("labels") is not None:
            out["loss"] = self.causal_lm_loss(logits, inputs["labels"])
        return out

    # -- cached decoding protocol (used by xlagen.generation) -----------------------------------
    def init_cache(self, batch_size: int, max_length: int):
        """Zeroed key/value cache: one (k, v) pair of [batch * heads, max_length, head_dim] per layer."""
        c = self.config
        return kv_caches(c.n_layer, batch_size, c.n_head, max_length, c.n_embd // c.n_head)

    def forward_cached(self, input_ids, position_ids, attention_mask, cache, cache_index, last_only=True):
        """Run ``input_ids`` [B, T] at cache slots ``cache_index``.. and return (logits, new cache).

        ``attention_mask`` [B, max_length] covers every cache slot; logits are for the last
        position only when ``last_only`` (all generation needs), else for all T.
        """
        t = shape_list(input_ids)[1]
        h = self._embed(input_ids, position_ids)
        allowed = causal_allowed(attention_mask, cache_index, t)
        new_cache = []
        for block, layer_cache in zip(self.blocks, cache):
            h, layer_cache = block(h, allowed, cache=layer_cache, cache_index=cache_index)
            new_cache.append(layer_cache)
        h = output_positions(h, last_only)
        return self._logits(self.ln_f(h)), tuple(new_cache)

    @property
    def max_positions(self) -> int:
        return self.config.n_positions
