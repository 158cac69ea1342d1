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


def uniform_noise(seed: tf.Tensor, step: tf.Tensor, shape: tf.Tensor) -> tf.Tensor:
    """Uniform floats in (0, 1) of ``shape`` [rows, vocab], a pure function of (seed, step, position)."""
    seed = tf.cast(seed, _U32)
    key = _mix(
        tf.bitwise.bitwise_xor(
            seed[0], _mix(seed[1] + _mix(tf.cast(step, _U32) + tf.constant(0x9E3779B9, _U32)))
        )
    )
    rows, cols = shape[0], shape[1]
    index = tf.cast(tf.range(rows)[:, None] * cols + tf.range(cols)[None, :], _U32)
    bits = _mix(tf.bitwise.bitwise_xor(index * tf.constant(0x9E3779B1, _U32), key))
    return (tf.cast(tf.bitwise.right_shift(bits, tf.constant(8, _U32)), tf.float32) + 0.5) * (
        1.0 / 16777216.0
    )


def sample(scores: tf.Tensor, seed: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
    """Draw one token per row from softmax(scores) by the Gumbel-max trick."""
    u = uniform_noise(seed, step, tf.shape(scores))
    gumbel = -tf.math.log(-tf.math.log(u))
    return tf.argmax(scores + gumbel, axis=-1, output_type=tf.int32)


def greedy(scores: tf.Tensor) -> tf.Tensor:
    return tf.argmax(scores, axis=-1, output_type=tf.int32)
