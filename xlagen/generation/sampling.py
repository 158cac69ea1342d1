"""Token choice: greedy argmax, or sampling with a counter-based random generator.

TensorFlow's stateless random ops give different numbers under XLA than on the plain CPU
kernels, so sampling here draws from an integer hash of (seed, step, row, token): the same
seed gives the same tokens in eager, graph and XLA modes, and a row's draws do not depend on
the padding added around it.
"""

from __future__ import annotations

import tensorflow as tf

_U32 = tf.uint32


def _mix(x: tf.Tensor) -> tf.Tensor:
    """A 32-bit integer finaliser (good avalanche, cheap): x -> hash(x)."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, _U32)))
    x = x * tf.constant(0x7FEB352D, _U32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(15, _U32)))
    x = x * tf.constant(0x846CA68B, _U32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, _U32)))


def _row_key(seed: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
    """The hash key of (seed, step): ``seed`` [2] with a scalar step, or [rows, 2] with [rows] steps."""
    seed = tf.cast(seed, _U32)
    step = tf.cast(step, _U32) + tf.constant(0x9E3779B9, _U32)
    return _mix(tf.bitwise.bitwise_xor(seed[..., 0], _mix(seed[..., 1] + _mix(step))))


def uniform_noise(
    seed: tf.Tensor, step: tf.Tensor, shape: tf.Tensor, rows: tf.Tensor | None = None
) -> tf.Tensor:
    """Uniform floats in (0, 1) of ``shape`` [rows, vocab], a pure function of (seed, step, position).

    One ``seed`` [2] and scalar ``step`` for the whole batch (``generate``), or one per row
    (``seed`` [rows, 2], ``step`` [rows]: the server's slots, each its own request). ``rows`` [rows]
    overrides the row number hashed into each draw, so a request's draws do not depend on the slot
    it happens to occupy (the server passes the index of the choice within its request).
    """
    key = _row_key(seed, step)
    n_rows, cols = shape[0], shape[1]
    row_ids = tf.range(n_rows) if rows is None else tf.cast(rows, tf.int32)
    index = tf.cast(row_ids[:, None] * cols + tf.range(cols)[None, :], _U32)
    key = key[:, None] if key.shape.rank == 1 else key
    bits = _mix(tf.bitwise.bitwise_xor(index * tf.constant(0x9E3779B1, _U32), key))
    return (tf.cast(tf.bitwise.right_shift(bits, tf.constant(8, _U32)), tf.float32) + 0.5) * (
        1.0 / 16777216.0
    )


def sample(scores: tf.Tensor, seed: tf.Tensor, step: tf.Tensor, rows: tf.Tensor | None = None) -> tf.Tensor:
    """Draw one token per row from softmax(scores) by the Gumbel-max trick (see ``uniform_noise``)."""
    u = uniform_noise(seed, step, tf.shape(scores), rows)
    gumbel = -tf.math.log(-tf.math.log(u))
    return tf.argmax(scores + gumbel, axis=-1, output_type=tf.int32)


def greedy(scores: tf.Tensor) -> tf.Tensor:
    return tf.argmax(scores, axis=-1, output_type=tf.int32)
