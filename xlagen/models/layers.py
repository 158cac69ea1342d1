"""Building blocks shared by the models: weight-holding layers and attention with a static KV cache.

Every layer creates its weights at construction (shapes come from the config), and keeps the
Hugging Face state-dict name of each weight, so loading is a name lookup.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator, Mapping

import keras
import numpy as np
import tensorflow as tf
from tensorflow.compiler.tf2xla.python.xla import dynamic_update_slice, optimization_barrier

from xlagen.loading.checkpoint import AliasedTensors, tensor_meta

NEG_INF = -1e30  # large finite negative: masked scores never win, fully masked rows stay finite


def shape_list(x: tf.Tensor) -> list:
    """``x``'s shape: Python ints where the dimension is static, scalar tensors where it is not.

    Generation programs have static shapes (buckets), so reshapes built from these lists are
    constants rather than Shape/StridedSlice/Pack ops: a smaller graph that traces and lowers faster.
    """
    static = x.shape.as_list()
    if None not in static:
        return static
    dynamic = tf.shape(x)
    return [dim if dim is not None else dynamic[i] for i, dim in enumerate(static)]


_XLA_TRACE = threading.local()


@contextlib.contextmanager
def xla_program():
    """Mark the code traced inside as part of a program XLA compiles (``ProgramCache``): layers may
    then use XLA-only ops (``dense``'s optimization barrier)."""
    depth = getattr(_XLA_TRACE, "depth", 0)
    _XLA_TRACE.depth = depth + 1
    try:
        yield
    finally:
        _XLA_TRACE.depth = depth


def in_xla_program() -> bool:
    return getattr(_XLA_TRACE, "depth", 0) > 0


def dense(
    x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor | None = None, transpose: bool = False
) -> tf.Tensor:
    """``x @ kernel + bias`` over the last axis, as one 2-D GEMM (what XLA CPU runs fastest).

    ``transpose`` takes a PyTorch ``nn.Linear`` layout kernel ``[out, in]`` as it is.

    At one row (a batch-1 decode step) XLA CPU would fuse the bias add into the matrix-vector
    product and emit the fusion itself, on one thread; behind an optimization barrier the product
    stays Eigen's, which uses every core (GPT-2 124M batch-1 step on a quiet 2-core machine: ~21
    -> ~18 ms, the weight products alone take ~17). Only inside XLA programs (the op has no other
    kernel); more rows are never output-fused on CPU, so their programs are unchanged.
    """
    shape = shape_list(x)
    y = tf.matmul(tf.reshape(x, [-1, shape[-1]]), kernel, transpose_b=transpose)
    if bias is not None and y.shape[0] == 1 and in_xla_program():
        y = optimization_barrier(y)[0]
    if bias is not None:
        y = y + bias
    out_dim = kernel.shape[0] if transpose else kernel.shape[-1]
    return tf.reshape(y, shape[:-1] + [out_dim])


def linear(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor | None = None) -> tf.Tensor:
    """``x @ weight.T + bias`` for a PyTorch-layout ``weight`` [out, in] (``nn.Linear``)."""
    return dense(x, weight, bias, transpose=True)


def checkpoint_value(array: np.ndarray, transposed: bool, dtype: str | np.dtype = "float32") -> np.ndarray:
    """A checkpoint tensor in its variable's layout: transposed when the variable holds it so, as ``dtype``."""
    return np.ascontiguousarray(array.T if transposed else array, dtype)


class CheckpointValues:
    """Initial values for weights created while :func:`initial_values_from` is active.

    ``tensors`` maps checkpoint names to arrays (a lazy mapping is read one tensor at a time);
    ``prefix`` is a state-dict prefix files may omit (``"transformer."``). ``used`` records which
    checkpoint tensor each weight was created from, so loading does not assign it again.
    """

    def __init__(self, tensors: Mapping[str, np.ndarray], prefix: str = "") -> None:
        self.tensors = tensors
        self.prefix = prefix
        self.used: dict[str, str] = {}

    def covers(self, tensors: Mapping[str, np.ndarray]) -> bool:
        """Whether ``tensors`` is this checkpoint (or a view of it with extra names)."""
        while isinstance(tensors, AliasedTensors) and tensors is not self.tensors:
            tensors = tensors.base
        return tensors is self.tensors

    def _source(self, ckpt_name: str) -> str | None:
        if ckpt_name in self.tensors:
            return ckpt_name
        if (
            self.prefix
            and ckpt_name.startswith(self.prefix)
            and ckpt_name[len(self.prefix) :] in self.tensors
        ):
            return ckpt_name[len(self.prefix) :]
        return None

    def initializer(self, ckpt_name: str, shape: tuple[int, ...], transposed: bool) -> Callable | None:
        """An initializer reading ``ckpt_name`` from the checkpoint, or None (absent, or a shape or
        dtype that loading will reject with a message)."""
        name = self._source(ckpt_name)
        if name is None:
            return None
        file_shape, file_dtype = tensor_meta(self.tensors, name)
        expected = tuple(shape[::-1]) if transposed else tuple(shape)
        if tuple(file_shape) != expected or not np.issubdtype(file_dtype, np.floating):
            return None
        tensors = self.tensors
        self.used[ckpt_name] = name

        def read(shape, dtype=None):  # noqa: ARG001 - Keras' initializer signature
            return checkpoint_value(tensors[name], transposed, np.float32 if dtype is None else dtype)

        return read


_INITIAL_VALUES: contextvars.ContextVar[CheckpointValues | None] = contextvars.ContextVar(
    "xlagen_initial_values", default=None
)


@contextlib.contextmanager
def initial_values_from(values: CheckpointValues) -> Iterator[CheckpointValues]:
    """Weights created inside take their values from ``values`` (a checkpoint) instead of their
    random initializers: no random tensors are made, and each weight is in memory once."""
    token = _INITIAL_VALUES.set(values)
    try:
        yield values
    finally:
        _INITIAL_VALUES.reset(token)


def active_initial_values() -> CheckpointValues | None:
    """The :class:`CheckpointValues` weights are being created from, if any."""
    return _INITIAL_VALUES.get()


class WeightLayer(keras.layers.Layer):
    """A layer whose weights are created up front and carry their checkpoint names."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.checkpoint_names: dict[str, keras.Variable] = {}
        self.transposed_checkpoint_names: set[str] = set()

    def new_weight(
        self,
        ckpt_name: str,
        shape: tuple[int, ...],
        initializer: str | keras.Initializer = "zeros",
        transposed: bool = False,
    ):
        """A variable for checkpoint tensor ``ckpt_name`` of ``shape``. ``transposed`` (2-D only): the
        variable holds the tensor's transpose, and loading and saving transpose it back and forth,
        e.g. GPT-2's ``Conv1D`` [in, out] kept as [out, in], the layout XLA CPU multiplies faster."""
        if transposed:
            if len(shape) != 2:
                raise ValueError(f"only 2-D weights can be stored transposed, {ckpt_name} has shape {shape}")
            shape = (shape[1], shape[0])
            self.transposed_checkpoint_names.add(ckpt_name)
        values = _INITIAL_VALUES.get()
        if values is not None:
            initializer = values.initializer(ckpt_name, shape, transposed) or initializer
        var = self.add_weight(shape=shape, initializer=initializer, name=ckpt_name.rsplit(".", 1)[-1])
        self.checkpoint_names[ckpt_name] = var
        return var


class LayerNorm(WeightLayer):
    """Layer normalisation over the last axis (weight ``.weight``, bias ``.bias``)."""

    def __init__(self, prefix: str, dim: int, epsilon: float, bias: bool = True, affine: bool = True, **kw):
        super().__init__(**kw)
        self.epsilon = epsilon
        self.gamma = self.new_weight(f"{prefix}.weight", (dim,), "ones") if affine else None
        self.beta = self.new_weight(f"{prefix}.bias", (dim,), "zeros") if affine and bias else None
        self.built = True

    def call(self, x: tf.Tensor) -> tf.Tensor:
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        y = (x - mean) * tf.math.rsqrt(var + self.epsilon)
        if self.gamma is not None:
            y = y * self.gamma
        if self.beta is not None:
            y = y + self.beta
        return y


class RMSNorm(WeightLayer):
    """RMS normalisation: ``x / sqrt(mean(x^2) + eps) * weight``, no mean, no bias (T5's layer norm,
    Llama's RMSNorm); computed in float32 like Transformers."""

    def __init__(self, prefix: str, dim: int, epsilon: float, **kw) -> None:
        super().__init__(**kw)
        self.epsilon = epsilon
        self.weight = self.new_weight(f"{prefix}.weight", (dim,), "ones")
        self.built = True

    def call(self, x: tf.Tensor) -> tf.Tensor:
        h = tf.cast(x, tf.float32)
        h = h * tf.math.rsqrt(tf.reduce_mean(tf.square(h), axis=-1, keepdims=True) + self.epsilon)
        return self.weight * tf.cast(h, x.dtype)


def output_positions(h: tf.Tensor, which: bool | tf.Tensor) -> tf.Tensor:
    """The decoder positions whose logits ``forward_cached`` returns: ``True`` the last one (all that
    decoding needs), ``False`` every one, or an int tensor [B, k] of positions per row (one extra
    position costs one more row of the output projection, e.g. Whisper's no-speech probe)."""
    if which is True:
        return h[:, -1:, :]
    if which is False:
        return h
    return tf.gather(h, tf.cast(which, tf.int32), batch_dims=1)


def split_heads(x: tf.Tensor, num_heads: int) -> tf.Tensor:
    """[B, T, H*D] -> [B, H, T, D]."""
    b, t, c = shape_list(x)
    x = tf.reshape(x, [b, t, num_heads, c // num_heads])
    return tf.transpose(x, [0, 2, 1, 3])


def merge_heads(x: tf.Tensor) -> tf.Tensor:
    """[B, H, T, D] -> [B, T, H*D]."""
    b, h, t, d = shape_list(x)
    return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [b, t, h * d])


def kv_cache(batch: int, heads: int, length: int, head_dim: int) -> tuple[tf.Tensor, tf.Tensor]:
    """A zeroed self-attention cache (keys, values), each [batch * heads, length, head_dim].

    Rows are (batch, head) pairs, batch-major. Attention then reads the buffer the step updated
    with no reshape: a 4-D [B, H, L, D] buffer made XLA fuse the update into the reshape the
    batched dot needs, which cost two copies of every cache buffer per decode step.
    """
    shape = [batch * heads, length, head_dim]
    return tf.zeros(shape), tf.zeros(shape)


def kv_caches(num_layers: int, batch: int, heads: int, length: int, head_dim: int) -> tuple:
    """A decoder-only model's cache: one zeroed ``kv_cache`` (keys, values) pair per layer."""
    return tuple(kv_cache(batch, heads, length, head_dim) for _ in range(num_layers))


def update_cache(cache: tf.Tensor, new: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """Write ``new`` [B, H, T, D] into the static ``cache`` [B * H, L, D] at slot ``index``.

    ``index`` is a scalar (every row writes at the same slot: ``generate``'s loop) or a vector [B]
    (each row at its own slot: the server's decode slots, where requests sit at different lengths).
    """
    zero = tf.zeros([], tf.int32)
    b, h, t, d = shape_list(new)
    rows = tf.reshape(tf.cast(new, cache.dtype), [-1, t, cache.shape[-1]])
    index = tf.cast(index, tf.int32)
    if index.shape.rank == 0:
        return dynamic_update_slice(cache, rows, [zero, index, zero])
    # One scatter of B * H * T vectors of D: XLA updates the loop-carried buffer in place.
    slots = tf.repeat(index, h)[:, None] + tf.range(t)[None, :]  # [B * H, T]
    row_ids = tf.broadcast_to(tf.range(b * h)[:, None], [b * h, t])
    where = tf.reshape(tf.stack([row_ids, slots], axis=-1), [-1, 2])
    return tf.tensor_scatter_nd_update(cache, where, tf.reshape(rows, [-1, cache.shape[-1]]))


def query_slots(cache_index: tf.Tensor, num_queries: int | tf.Tensor) -> tf.Tensor:
    """Cache slots of T queries written from ``cache_index``: [T] for a scalar index, [B, T] for [B]."""
    start = tf.cast(cache_index, tf.int32)
    if start.shape.rank == 0:
        return start + tf.range(num_queries)
    return start[:, None] + tf.range(num_queries)[None, :]


def attend(
    q: tf.Tensor,
    k: tf.Tensor,
    v: tf.Tensor,
    allowed: tf.Tensor | None,
    scale: float,
    dropout=None,
    bias: tf.Tensor | None = None,
) -> tf.Tensor:
    """Scaled dot-product attention: q [B,H,T,D]; k/v [B,H,S,D] or a cache's [B*H,S,D].

    ``allowed`` [B,1,T,S] bool (None: every key), ``bias`` added to the scaled scores
    (T5's relative positions). Returns [B,H,T,D].

    4-D k/v with fewer rows than q (statically known: R rows, q has R*G) are shared by G
    consecutive query rows, e.g. the beams of one input attending to its encoder output: the G
    rows become G*T queries of one row, so each shared K/V is read once, not G times. ``allowed``
    and ``bias`` then have R rows (or 1) and one query position (or T when G is 1).
    """
    rows_q, rows_k = q.shape[0], k.shape[0]
    if k.shape.rank == 4 and rows_q is not None and rows_k is not None and rows_q != rows_k:
        if rows_q % rows_k:
            raise ValueError(f"attention: {rows_q} query rows cannot share {rows_k} key/value rows")
        return _attend_shared(q, k, v, allowed, scale, dropout, bias, rows_q // rows_k)
    b, h, t, d = shape_list(q)
    s = shape_list(k)[-2]  # key slots, in either layout
    flat = k.shape.rank == 3
    if flat:
        q = tf.reshape(q, [-1, t, d])
    scores = tf.matmul(q, k, transpose_b=True)
    if flat:
        scores = tf.reshape(scores, [b, h, t, s])
    if scale != 1.0:
        scores = scores * scale
    if bias is not None:
        scores = scores + bias
    if allowed is not None:
        scores = tf.where(allowed, scores, NEG_INF)
    probs = tf.nn.softmax(scores, axis=-1)
    if dropout is not None:
        probs = dropout(probs)
    if flat:
        return tf.reshape(tf.matmul(tf.reshape(probs, [-1, t, s]), v), [b, h, t, d])
    return tf.matmul(probs, v)


def _attend_shared(q, k, v, allowed, scale, dropout, bias, groups: int) -> tf.Tensor:
    """``attend`` for q [R*G, H, T, D] against k/v [R, H, S, D]: the G rows of a group as G*T queries."""
    _, h, t, d = shape_list(q)
    rows = k.shape[0]
    folded = tf.reshape(
        tf.transpose(tf.reshape(q, [rows, groups, h, t, d]), [0, 2, 1, 3, 4]), [rows, h, -1, d]
    )
    out = attend(folded, k, v, allowed, scale, dropout, bias)  # [R, H, G*T, D]
    out = tf.transpose(tf.reshape(out, [rows, h, groups, t, d]), [0, 2, 1, 3, 4])
    return tf.reshape(out, [rows * groups, h, t, d])


def causal_allowed(
    attention_mask: tf.Tensor, query_start: tf.Tensor, num_queries: int | tf.Tensor
) -> tf.Tensor:
    """Which key slots each query may see: key <= query slot and the key is not padding.

    attention_mask [B, S] covers every key slot; queries sit at slots query_start .. +num_queries,
    ``query_start`` a scalar or one start per row [B]. Returns [B, 1, T, S] bool.
    """
    s = shape_list(attention_mask)[1]
    q_slots = query_slots(query_start, num_queries)  # [T] or [B, T]
    causal = tf.range(s) <= q_slots[..., None]  # [T, S] or [B, T, S]
    if causal.shape.rank == 2:
        causal = causal[None]
    keep = tf.cast(attention_mask, tf.bool)[:, None, None, :]
    return tf.logical_and(causal[:, None], keep)


class MultiHeadAttention(WeightLayer):
    """Attention with ``q_proj`` / ``k_proj`` / ``v_proj`` / ``out_proj`` linear layers (BART family,
    Whisper): self-attention over a static cache, or cross-attention on precomputed keys/values.

    ``biases`` names the projections that have a bias (Whisper's ``k_proj`` has none). Queries are
    scaled by ``head_dim ** -0.5`` before the product, as Whisper does (BART scales the scores after it:
    the same up to float rounding, and cheaper on [T, D] than on [T, S]).
    """

    def __init__(
        self,
        prefix: str,
        dim: int,
        num_heads: int,
        dropout: float = 0.0,
        init: str | keras.Initializer = "zeros",
        biases: tuple[str, ...] = ("q", "k", "v", "out"),
        **kw,
    ) -> None:
        super().__init__(**kw)

        def proj(name: str):
            w = self.new_weight(f"{prefix}.{name}_proj.weight", (dim, dim), init)
            b = self.new_weight(f"{prefix}.{name}_proj.bias", (dim,)) if name in biases else None
            return w, b

        self.q_w, self.q_b = proj("q")
        self.k_w, self.k_b = proj("k")
        self.v_w, self.v_b = proj("v")
        self.o_w, self.o_b = proj("out")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.attn_dropout = keras.layers.Dropout(dropout)
        self.built = True

    def key_value(self, states: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Keys and values [B, H, S, D] of ``states`` [B, S, C] (cross-attention: computed once)."""
        k = split_heads(linear(states, self.k_w, self.k_b), self.num_heads)
        v = split_heads(linear(states, self.v_w, self.v_b), self.num_heads)
        return k, v

    def scores(self, x: tf.Tensor, kv: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        """Scaled attention scores [B, H, T, S] (before the softmax) of queries ``x`` [B, T, C] on
        precomputed ``kv``: what Whisper's word alignment reads from a few cross-attention heads."""
        q = split_heads(linear(x, self.q_w, self.q_b) * self.scale, self.num_heads)
        return tf.matmul(q, kv[0], transpose_b=True)

    def call(self, x, allowed=None, kv=None, cache=None, cache_index=None, training=False):
        """Attend from ``x`` to ``kv`` (cross) or to itself (written into ``cache`` when given).

        ``allowed`` [B, 1, T, S] bool, or None for no masking. Returns (output [B, T, C], the
        updated self-attention cache or None).
        """
        q = split_heads(linear(x, self.q_w, self.q_b) * self.scale, self.num_heads)
        if kv is None:
            k, v = self.key_value(x)
            if cache is not None:
                k = update_cache(cache[0], k, cache_index)
                v = update_cache(cache[1], v, cache_index)
                cache = (k, v)
        else:
            k, v = kv
        dropout = (lambda p: self.attn_dropout(p, training=training)) if training else None
        out = attend(q, k, v, allowed, 1.0, dropout)
        return linear(merge_heads(out), self.o_w, self.o_b), cache


class FeedForward(WeightLayer):
    """``fc2(dropout(act(fc1(x))))`` with biases (BART family, Whisper)."""

    def __init__(
        self,
        prefix: str,
        dim: int,
        ffn_dim: int,
        activation: Callable[[tf.Tensor], tf.Tensor],
        dropout: float = 0.0,
        init: str | keras.Initializer = "zeros",
        **kw,
    ) -> None:
        super().__init__(**kw)
        self.fc1_w = self.new_weight(f"{prefix}.fc1.weight", (ffn_dim, dim), init)
        self.fc1_b = self.new_weight(f"{prefix}.fc1.bias", (ffn_dim,))
        self.fc2_w = self.new_weight(f"{prefix}.fc2.weight", (dim, ffn_dim), init)
        self.fc2_b = self.new_weight(f"{prefix}.fc2.bias", (dim,))
        self.act = activation
        self.act_dropout = keras.layers.Dropout(dropout)
        self.built = True

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        h = self.act_dropout(self.act(linear(x, self.fc1_w, self.fc1_b)), training=training)
        return linear(h, self.fc2_w, self.fc2_b)


class EncoderLayer(WeightLayer):
    """A Transformer encoder block of the BART family and Whisper: self-attention and feed-forward,
    each with a residual, layer-normed before (``normalize_before``) or after the residual add.

    Weight names follow Transformers: ``self_attn``, ``self_attn_layer_norm``, ``fc1``, ``fc2``,
    ``final_layer_norm`` under ``prefix``.
    """

    def __init__(
        self,
        prefix: str,
        dim: int,
        num_heads: int,
        ffn_dim: int,
        activation: Callable[[tf.Tensor], tf.Tensor],
        normalize_before: bool,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        init: str | keras.Initializer = "zeros",
        attention_biases: tuple[str, ...] = ("q", "k", "v", "out"),
        epsilon: float = 1e-5,
        **kw,
    ) -> None:
        super().__init__(**kw)
        self.normalize_before = normalize_before
        self.attention_options = (attention_dropout, init, attention_biases)  # DecoderLayer's cross-attention
        self.epsilon = epsilon
        self.self_attn = MultiHeadAttention(f"{prefix}.self_attn", dim, num_heads, *self.attention_options)
        self.self_attn_layer_norm = LayerNorm(f"{prefix}.self_attn_layer_norm", dim, epsilon)
        self.ffn = FeedForward(prefix, dim, ffn_dim, activation, activation_dropout, init)
        self.final_layer_norm = LayerNorm(f"{prefix}.final_layer_norm", dim, epsilon)
        self.dropout = keras.layers.Dropout(dropout)
        self.built = True

    def residual(self, x: tf.Tensor, norm: LayerNorm, sublayer: Callable, training: bool):
        """``x + sublayer(...)`` with ``norm`` before the sublayer or after the sum; returns (out, extra)."""
        h, extra = sublayer(norm(x) if self.normalize_before else x)
        out = x + self.dropout(h, training=training)
        return (out if self.normalize_before else norm(out)), extra

    def call(self, x, allowed=None, training=False):
        x, _ = self.residual(
            x, self.self_attn_layer_norm, lambda h: self.self_attn(h, allowed, training=training), training
        )
        x, _ = self.residual(
            x, self.final_layer_norm, lambda h: (self.ffn(h, training=training), None), training
        )
        return x


class DecoderLayer(EncoderLayer):
    """A decoder block: causal self-attention over the static cache, cross-attention on the encoder's
    keys/values (``encoder_attn``, ``encoder_attn_layer_norm``) and feed-forward."""

    def __init__(self, prefix: str, dim: int, num_heads: int, *args, **kw) -> None:
        """As :class:`EncoderLayer` (same arguments), plus the cross-attention and its norm."""
        super().__init__(prefix, dim, num_heads, *args, **kw)
        self.encoder_attn = MultiHeadAttention(
            f"{prefix}.encoder_attn", dim, num_heads, *self.attention_options
        )
        self.encoder_attn_layer_norm = LayerNorm(f"{prefix}.encoder_attn_layer_norm", dim, self.epsilon)

    def call(
        self,
        x,
        allowed,
        cross_kv,
        cross_allowed=None,
        cache=None,
        cache_index=None,
        training=False,
        return_cross_scores=False,
    ):
        """Returns (hidden states [B, T, C], the updated self-attention cache or None), and with
        ``return_cross_scores`` the cross-attention scores [B, H, T, S] before the softmax as well."""
        x, cache = self.residual(
            x,
            self.self_attn_layer_norm,
            lambda h: self.self_attn(h, allowed, cache=cache, cache_index=cache_index, training=training),
            training,
        )
        scores = []

        def cross(h):
            if return_cross_scores:
                scores.append(self.encoder_attn.scores(h, cross_kv))
            return self.encoder_attn(h, cross_allowed, kv=cross_kv, training=training)

        x, _ = self.residual(x, self.encoder_attn_layer_norm, cross, training)
        x, _ = self.residual(
            x, self.final_layer_norm, lambda h: (self.ffn(h, training=training), None), training
        )
        return (x, cache, scores[0]) if return_cross_scores else (x, cache)
