"""Llama as a Keras model with TensorFlow numerics, plus the cached-decoding protocol.

Rotary position embeddings on q and k (``rotate_half`` form, frequencies from ``rope_theta``),
grouped-query attention with a static cache of ``num_key_value_heads`` rows per input (the query
heads of a group attend to one copy: no repeated keys/values), RMSNorm computed in float32, SwiGLU
MLP. Weights keep Hugging Face's state-dict names (``model.layers.0.self_attn.q_proj.weight`` ...).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from xlagen.modeling_utils import CausalLMOutput, TFPreTrainedModel
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
from xlagen.models.llama.configuration import LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config


def rotary_tables(position_ids: tf.Tensor, inv_freq, scaling: float = 1.0) -> tuple[tf.Tensor, tf.Tensor]:
    """cos, sin [B, 1, T, head_dim] for integer positions [B, T] and frequencies [head_dim / 2]
    (or one set per row, [B, 1, head_dim / 2]), both times ``scaling`` (YaRN's attention factor)."""
    inv_freq = tf.convert_to_tensor(inv_freq, tf.float32)
    freqs = tf.cast(position_ids, tf.float32)[..., None] * inv_freq  # [B, T, D/2]
    emb = tf.concat([freqs, freqs], axis=-1)[:, None]
    if scaling == 1.0:
        return tf.cos(emb), tf.sin(emb)
    return tf.cos(emb) * scaling, tf.sin(emb) * scaling


def dynamic_ntk_inv_freq(config: LlamaConfig, position_ids: tf.Tensor, per_row: bool) -> tf.Tensor:
    """Dynamic NTK frequencies [1 or B, 1, head_dim / 2] for the positions of one forward call.

    Transformers 5 (``dynamic_rope_update``) recomputes them from ``seq_len = max(position_ids) + 1``
    over the whole call once that exceeds ``max_position_embeddings``, with the rope base grown to
    ``theta * (factor * seq_len / max_pos - (factor - 1)) ** (d / (d - 2))``, in float32. Keys
    already cached keep the rotation they were written with, here as there. ``per_row``: one
    ``seq_len`` per row (the server's decode slots, independent requests) instead of the batch's
    largest; requests prefilled together in one server insert still share the batch's largest.

    Transformers also keeps grown frequencies between calls (until a call shorter than
    ``max_position_embeddings`` resets them); xlagen keeps no state, so it equals a Transformers
    model whose previous call was short (or a fresh one). Within one ``generate`` the positions only
    grow, so both agree step by step.
    """
    d, n, factor = config.head_dim, config.max_position_embeddings, config._rope["factor"]
    static = tf.constant(config.rope_inv_freq(), tf.float32)
    longest = tf.reduce_max(tf.cast(position_ids, tf.int32), axis=1 if per_row else None) + 1
    longest = tf.reshape(longest, [-1, 1, 1])  # [B or 1, 1, 1]
    seq_len = tf.cast(tf.maximum(longest, n), tf.float32)
    ratio = tf.constant(factor, tf.float32) * seq_len / tf.constant(n, tf.float32)
    ratio = ratio - tf.constant(factor - 1, tf.float32)
    base = tf.constant(config.rope_theta, tf.float32) * tf.pow(ratio, tf.constant(d / (d - 2), tf.float32))
    exponents = tf.constant(np.arange(0, d, 2, dtype=np.float32) / np.float32(d))
    grown = 1.0 / tf.pow(base, exponents)
    return tf.where(longest > n, grown, static)


def apply_rotary(x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor) -> tf.Tensor:
    """``x * cos + rotate_half(x) * sin`` on [B, H, T, D] (cos/sin, computed in float32, cast to x's dtype)."""
    cos, sin = tf.cast(cos, x.dtype), tf.cast(sin, x.dtype)
    half = x.shape[-1] // 2
    rotated = tf.concat([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def attend_grouped(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, allowed: tf.Tensor, scale: float, kv_heads: int):
    """Grouped-query attention: q [B, H, T, D] against a cache's k/v [B * kv_heads, S, D].

    The H / kv_heads query heads of a group become extra query positions of their key/value head
    (``layers.attend`` on [B, kv_heads, G * T, D]), so each cached key/value is read once.
    ``allowed`` [B, 1, T, S]. Returns [B, H, T, D]."""
    b, h, t, d = shape_list(q)
    groups = h // kv_heads
    if groups > 1:
        q = tf.reshape(q, [b, kv_heads, groups * t, d])
        allowed = tf.tile(allowed, [1, 1, groups, 1])
    return tf.reshape(attend(q, k, v, allowed, scale), [b, h, t, d])


class LlamaAttention(WeightLayer):
    def __init__(self, config: LlamaConfig, prefix: str, **kw) -> None:
        super().__init__(**kw)
        c, d = config.hidden_size, config.head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = (
            config.num_attention_heads,
            config.num_key_value_heads,
            d,
        )
        init = keras.initializers.RandomNormal(stddev=config.initializer_range)
        qwen2 = config.model_type == "qwen2"  # q/k/v always biased, o never
        qkv_bias, o_bias = config.attention_bias or qwen2, config.attention_bias and not qwen2
        self.proj = {}
        for name, rows in (
            ("q_proj", self.num_heads * d),
            ("k_proj", self.num_kv_heads * d),
            ("v_proj", self.num_kv_heads * d),
        ):
            w = self.new_weight(f"{prefix}.{name}.weight", (rows, c), init)
            self.proj[name] = (w, self.new_weight(f"{prefix}.{name}.bias", (rows,)) if qkv_bias else None)
        o = self.new_weight(f"{prefix}.o_proj.weight", (c, self.num_heads * d), init)
        self.proj["o_proj"] = (o, self.new_weight(f"{prefix}.o_proj.bias", (c,)) if o_bias else None)
        if config.model_type == "qwen3":  # per-head RMSNorm of queries and keys, before the rotation
            dtype = self.dtype_policy.name
            self.q_norm = RMSNorm(f"{prefix}.q_norm", d, config.rms_norm_eps, dtype=dtype)
            self.k_norm = RMSNorm(f"{prefix}.k_norm", d, config.rms_norm_eps, dtype=dtype)
        else:
            self.q_norm = self.k_norm = None
        self.scaling = d**-0.5
        self.built = True

    def call(self, x, allowed, rotary, cache=None, cache_index=None):
        q = split_heads(linear(x, *self.proj["q_proj"]), self.num_heads)
        k = split_heads(linear(x, *self.proj["k_proj"]), self.num_kv_heads)
        v = split_heads(linear(x, *self.proj["v_proj"]), self.num_kv_heads)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        if cache is None:  # full forward: the keys/values as a [B * KVH, T, D] "cache"
            b, _, t, _ = shape_list(k)
            k_all, v_all = (tf.reshape(z, [-1, t, self.head_dim]) for z in (k, v))
        else:
            k_all = update_cache(cache[0], k, cache_index)
            v_all = update_cache(cache[1], v, cache_index)
            cache = (k_all, v_all)
        out = merge_heads(attend_grouped(q, k_all, v_all, allowed, self.scaling, self.num_kv_heads))
        return linear(out, *self.proj["o_proj"]), cache


class LlamaDecoderLayer(WeightLayer):
    """Pre-norm self-attention and SwiGLU MLP, each a residual branch."""

    def __init__(self, config: LlamaConfig, prefix: str, **kw) -> None:
        super().__init__(**kw)
        c, f = config.hidden_size, config.intermediate_size
        init = keras.initializers.RandomNormal(stddev=config.initializer_range)
        dtype = self.dtype_policy.name
        self.self_attn = LlamaAttention(config, f"{prefix}.self_attn", dtype=dtype)
        self.input_layernorm = RMSNorm(f"{prefix}.input_layernorm", c, config.rms_norm_eps, dtype=dtype)
        self.post_attention_layernorm = RMSNorm(
            f"{prefix}.post_attention_layernorm", c, config.rms_norm_eps, dtype=dtype
        )
        bias = config.mlp_bias
        self.mlp = {}
        for name, shape in (("gate_proj", (f, c)), ("up_proj", (f, c)), ("down_proj", (c, f))):
            w = self.new_weight(f"{prefix}.mlp.{name}.weight", shape, init)
            self.mlp[name] = (w, self.new_weight(f"{prefix}.mlp.{name}.bias", (shape[0],)) if bias else None)
        self.act = ACTIVATIONS[config.hidden_act]
        self.built = True

    def call(self, x, allowed, rotary, cache=None, cache_index=None):
        h, cache = self.self_attn(
            self.input_layernorm(x), allowed, rotary, cache=cache, cache_index=cache_index
        )
        x = x + h
        h = self.post_attention_layernorm(x)
        h = self.act(linear(h, *self.mlp["gate_proj"])) * linear(h, *self.mlp["up_proj"])
        return x + linear(h, *self.mlp["down_proj"]), cache


class TFLlamaForCausalLM(TFPreTrainedModel):
    """Llama with a language-modelling head (tied to the token embedding when the config ties it)."""

    config_class = LlamaConfig
    # bfloat16 halves the weights' memory; on CPU it measured no faster than float32 (README), so
    # float32 stays the default. float16 is refused: the attention mask's -1e30 overflows it.
    supported_dtypes = ("float32", "bfloat16")

    def __init__(self, config: LlamaConfig, **kw) -> None:
        super().__init__(config, **kw)
        c = config.hidden_size
        init = keras.initializers.RandomNormal(stddev=config.initializer_range)
        dtype = self.dtype_policy.name  # float32, or bfloat16 (from_pretrained(dtype=...))
        self.embeddings = WeightLayer(name="embeddings", dtype=dtype)
        self.embed_tokens = self.embeddings.new_weight(
            "model.embed_tokens.weight", (config.vocab_size, c), init
        )
        self.embeddings.built = True
        self.decoder_layers = [
            LlamaDecoderLayer(config, f"model.layers.{i}", name=f"layers_{i}", dtype=dtype)
            for i in range(config.num_hidden_layers)
        ]
        self.norm = RMSNorm("model.norm", c, config.rms_norm_eps, name="norm", dtype=dtype)
        self._windows = config.layer_windows()
        self._inv_freq = config.rope_inv_freq()
        self._rope_scaling = config.rope_attention_scaling()
        self._dynamic_rope = config._rope["rope_type"] == "dynamic"
        if config.tie_word_embeddings:
            self.lm_head_weight = self.embed_tokens
        else:
            self.lm_head = WeightLayer(name="lm_head", dtype=dtype)
            self.lm_head_weight = self.lm_head.new_weight("lm_head.weight", (config.vocab_size, c), init)
            self.lm_head.built = True
        self.built = True

    def _run(self, input_ids, position_ids, allowed, cache=None, cache_index=None):
        """``allowed`` [B, 1, T, S]: causal + padding; sliding layers also drop keys more than their
        window of cache slots behind the query (slots, as Transformers counts, padding included)."""
        ids = tf.clip_by_value(tf.cast(input_ids, tf.int32), 0, self.config.vocab_size - 1)
        h = tf.gather(self.embed_tokens, ids)
        inv_freq = self._inv_freq
        if self._dynamic_rope:
            per_row = cache_index is not None and tf.convert_to_tensor(cache_index).shape.rank == 1
            inv_freq = dynamic_ntk_inv_freq(self.config, position_ids, per_row)
        rotary = rotary_tables(position_ids, inv_freq, self._rope_scaling)
        masks = {None: allowed}
        for window in sorted(set(self._windows) - {None}):
            t, s = shape_list(allowed)[2], shape_list(allowed)[3]
            q_slots = query_slots(0 if cache_index is None else cache_index, t)  # [T] or [B, T]
            near = tf.range(s) > q_slots[..., None] - window
            near = near[None, None] if near.shape.rank == 2 else near[:, None]
            masks[window] = tf.logical_and(allowed, near)
        new_cache = []
        for i, layer in enumerate(self.decoder_layers):
            h, layer_cache = layer(
                h,
                masks[self._windows[i]],
                rotary,
                cache=None if cache is None else cache[i],
                cache_index=cache_index,
            )
            new_cache.append(layer_cache)
        return h, tuple(new_cache)

    def _logits(self, h):
        """Logits in float32 whatever the weights' dtype (what the decoding processors work in)."""
        return tf.cast(linear(self.norm(h), self.lm_head_weight), tf.float32)

    def call(
        self, input_ids, attention_mask=None, position_ids=None, labels=None, training=False
    ) -> CausalLMOutput:
        """Logits for every position, like Transformers' ``LlamaForCausalLM(...)``: without
        ``position_ids`` the positions are 0..T-1, as there (pass them for left-padded batches)."""
        inputs = self._unpack_inputs(
            input_ids,
            attention_mask,
            position_ids,
            labels,
            names=("attention_mask", "position_ids", "labels"),
        )
        input_ids = inputs["input_ids"]
        b, t = shape_list(input_ids)
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = tf.ones([b, t], tf.int32)
        pos = inputs.get("position_ids")
        if pos is None:
            pos = tf.broadcast_to(tf.range(t)[None], [b, t])
        h, _ = self._run(input_ids, pos, causal_allowed(mask, 0, t))
        logits = self._logits(h)
        out = CausalLMOutput(logits=logits)
        if inputs.get("labels") is not None:
            out["loss"] = self.causal_lm_loss(logits, inputs["labels"])
        return out

    # -- cached decoding protocol (used by xlagen.generation) -----------------------------------
    def init_cache(self, batch_size: int, max_length: int):
        """Zeroed key/value cache: one (k, v) pair of [batch * kv_heads, max_length, head_dim] per layer."""
        c = self.config
        cache = kv_caches(c.num_hidden_layers, batch_size, c.num_key_value_heads, max_length, c.head_dim)
        dtype = self.dtype_policy.compute_dtype
        return cache if dtype == "float32" else tf.nest.map_structure(lambda t: tf.cast(t, dtype), cache)

    def forward_cached(self, input_ids, position_ids, attention_mask, cache, cache_index, last_only=True):
        """Run ``input_ids`` [B, T] at cache slots ``cache_index``.. and return (logits, new cache)."""
        t = shape_list(input_ids)[1]
        allowed = causal_allowed(attention_mask, cache_index, t)
        h, new_cache = self._run(input_ids, position_ids, allowed, cache, cache_index)
        h = output_positions(h, last_only)
        return self._logits(h), new_cache

    @property
    def max_positions(self) -> int | None:
        """``max_position_embeddings``; None (no limit) under dynamic NTK rope, which exists to run past it."""
        return None if self._dynamic_rope else self.config.max_position_embeddings


class TFMistralForCausalLM(TFLlamaForCausalLM):
    """Mistral: the Llama core with a sliding window on every layer."""

    config_class = MistralConfig


class TFQwen2ForCausalLM(TFLlamaForCausalLM):
    """Qwen2: the Llama core with q/k/v biases and per-layer sliding windows."""

    config_class = Qwen2Config


class TFQwen3ForCausalLM(TFLlamaForCausalLM):
    """Qwen3: the Llama core with per-head query/key RMSNorm and per-layer sliding windows."""

    config_class = Qwen3Config
