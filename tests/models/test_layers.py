"""Shared building blocks: attention with key/value rows shared by groups of query rows."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from xlagen.models.layers import attend


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("queries", [1, 3])
def test_attend_with_shared_rows_equals_repeated_rows(masked, queries):
    rng = np.random.default_rng(0)
    rows, groups, heads, keys, dim = 2, 3, 4, 9, 8
    q = tf.constant(rng.normal(size=[rows * groups, heads, queries, dim]), tf.float32)
    k = tf.constant(rng.normal(size=[rows, heads, keys, dim]), tf.float32)
    v = tf.constant(rng.normal(size=[rows, heads, keys, dim]), tf.float32)
    allowed = None
    if masked:
        allowed = tf.constant(np.arange(keys)[None, None, None, :] < np.array([5, 9])[:, None, None, None])

    def repeat(t):
        return None if t is None else tf.repeat(t, groups, axis=0)

    want = attend(q, repeat(k), repeat(v), repeat(allowed), 0.5)
    got = attend(q, k, v, allowed, 0.5)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    jitted = tf.function(lambda q, k, v: attend(q, k, v, allowed, 0.5), jit_compile=True)
    np.testing.assert_allclose(jitted(q, k, v).numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


def test_attend_rejects_rows_that_do_not_divide():
    q, kv = tf.zeros([5, 2, 1, 4]), tf.zeros([2, 2, 3, 4])
    with pytest.raises(ValueError, match="5 query rows cannot share 2"):
        attend(q, kv, kv, None, 1.0)
