"""Logits processors: small pieces that see only the scores, the generated tokens and the step.

Each is built inside the traced loop from tensors, so a new temperature or top_p value is a new
input, never a recompilation. Scores are [batch, vocab] float32; filtered entries become -inf.
"""

from __future__ import annotations

import tensorflow as tf

FILTER_VALUE = float("-inf")


class LogitsProcessor:
    """Base: ``__call__(scores, tokens, step) -> scores``."""

    def __call__(self, scores: tf.Tensor, tokens: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError


class LogitsProcessorList(list):
    """Apply processors in order."""

    def __call__(self, scores: tf.Tensor, tokens: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        for processor in self:
            scores = processor(scores, tokens, step)
        return scores


def token_mask(token_ids: tf.Tensor, vocab_size: int) -> tf.Tensor:
    """[vocab] bool, true at each id of ``token_ids`` (ids outside the vocabulary are ignored)."""
    ids = tf.reshape(tf.cast(token_ids, tf.int32), [-1])
    hits = tf.one_hot(ids, vocab_size, on_value=True, off_value=False, dtype=tf.bool)
    return tf.reduce_any(tf.concat([hits, tf.zeros([1, vocab_size], tf.bool)], axis=0), axis=0)


class MinNewTokensLogitsProcessor(LogitsProcessor):
    """Forbid end-of-sequence tokens while fewer than ``min_new_tokens`` tokens were generated."""

    def __init__(self, min_new_tokens: tf.Tensor, eos_token_ids: tf.Tensor, vocab_size: int) -> None:
        self.min_new_tokens = min_new_tokens
        self.eos_mask = token_mask(eos_token_ids, vocab_size)

    def __call__(self, scores, tokens, step):
        block = tf.logical_and(self.eos_mask[None, :], step < self.min_new_tokens)
        return tf.where(block, FILTER_VALUE, scores)


class TemperatureLogitsWarper(LogitsProcessor):
    def __init__(self, temperature: tf.Tensor) -> None:
        self.temperature = temperature

    def __call__(self, scores, tokens, step):
        return scores / self.temperature


class TopKLogitsWarper(LogitsProcessor):
    """Keep the ``top_k`` highest scores (k is static: it sets a shape)."""

    def __init__(self, top_k: int) -> None:
        self.top_k = top_k

    def __call__(self, scores, tokens, step):
        k = min(self.top_k, scores.shape[-1])
        kth = tf.math.top_k(scores, k=k, sorted=False).values
        threshold = tf.reduce_min(kth, axis=-1, keepdims=True)
        return tf.where(scores < threshold, FILTER_VALUE, scores)


class TopPLogitsWarper(LogitsProcessor):
    """Nucleus filtering: keep the smallest set of top tokens whose probability reaches ``top_p``."""

    def __init__(self, top_p: tf.Tensor) -> None:
        self.top_p = top_p

    def __call__(self, scores, tokens, step):
        ranked = tf.sort(scores, axis=-1, direction="DESCENDING")
        mass_before = tf.cumsum(tf.nn.softmax(ranked, axis=-1), axis=-1, exclusive=True)
        keep = mass_before < self.top_p  # the best token always has mass_before == 0
        threshold = tf.reduce_min(tf.where(keep, ranked, float("inf")), axis=-1, keepdims=True)
        return tf.where(scores < threshold, FILTER_VALUE, scores)
