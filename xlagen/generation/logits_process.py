"""Logits processors: small pieces that see only the scores and the decoding state.

Each runs inside the compiled loop. Shapes are static; values that a user tunes between calls
(temperature, top_p, penalty strength) arrive as tensors, so changing them never recompiles.
Scores are [rows, vocab] float32; a filtered entry becomes -inf, as in Transformers.

``DecodeState`` is what a processor may look at: the token buffer (prompt and generated tokens,
with a mask of the real ones — bucket padding is never a token), ``cur_len`` in Transformers'
sense (the caller's prompt width + tokens generated so far) and ``step`` (tokens generated).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import tensorflow as tf

FILTER_VALUE = float("-inf")


class DecodeState(NamedTuple):
    """``cur_len`` and ``step`` are scalars in ``generate`` (one value for the batch) and [rows, 1]
    in the server's decode slots (each row its own request); processors broadcast either way."""

    tokens: tf.Tensor  # [rows, slots] int32: prompt then generated tokens
    valid: tf.Tensor  # [rows, slots] bool: real tokens (not padding, not yet generated)
    cur_len: tf.Tensor  # int32: prompt width + step (Transformers' input_ids.shape[-1])
    step: tf.Tensor  # int32: tokens generated so far
    generated: tf.Tensor | None = None  # [rows, slots] bool: the generated tokens (None: not tracked)


class LogitsProcessor:
    """Base: ``__call__(scores, state) -> scores``."""

    def __call__(self, scores: tf.Tensor, state: DecodeState) -> tf.Tensor:
        raise NotImplementedError


class LogitsProcessorList(list):
    """Apply processors in order."""

    def __call__(self, scores: tf.Tensor, state: DecodeState) -> tf.Tensor:
        for processor in self:
            scores = processor(scores, state)
        return scores


def token_mask(token_ids: tf.Tensor | Sequence[int], vocab_size: int) -> tf.Tensor:
    """[vocab] bool, true at each id of ``token_ids`` (ids outside the vocabulary are ignored)."""
    ids = tf.reshape(tf.cast(token_ids, tf.int32), [-1])
    hits = tf.one_hot(ids, vocab_size, on_value=True, off_value=False, dtype=tf.bool)
    return tf.reduce_any(tf.concat([hits, tf.zeros([1, vocab_size], tf.bool)], axis=0), axis=0)


def token_counts(state: DecodeState, vocab_size: int, extra: tf.Tensor | None = None) -> tf.Tensor:
    """[rows, vocab] int32: how often each id occurs among the real tokens (and ``extra``, if given)."""
    rows, slots = tf.shape(state.tokens)[0], tf.shape(state.tokens)[1]
    valid = state.valid if extra is None else tf.logical_and(state.valid, extra)
    ids = tf.clip_by_value(state.tokens, 0, vocab_size - 1)
    index = tf.stack([tf.repeat(tf.range(rows), slots), tf.reshape(ids, [-1])], axis=1)
    return tf.scatter_nd(index, tf.reshape(tf.cast(valid, tf.int32), [-1]), [rows, vocab_size])


def seen_tokens(state: DecodeState, vocab_size: int, extra: tf.Tensor | None = None) -> tf.Tensor:
    """[rows, vocab] bool: which ids occur among the real tokens (scatter: linear in the length)."""
    return token_counts(state, vocab_size, extra) > 0


def _force(scores: tf.Tensor, token_ids: Sequence[int], when: tf.Tensor) -> tf.Tensor:
    forced = tf.where(token_mask(token_ids, scores.shape[-1])[None, :], 0.0, FILTER_VALUE)
    return tf.where(when, tf.broadcast_to(forced, tf.shape(scores)), scores)


class MinNewTokensLogitsProcessor(LogitsProcessor):
    """Forbid end-of-sequence tokens while fewer than ``min_new_tokens`` tokens were generated."""

    def __init__(self, min_new_tokens: tf.Tensor, eos_token_ids: tf.Tensor, vocab_size: int) -> None:
        self.min_new_tokens = min_new_tokens
        self.eos_mask = token_mask(eos_token_ids, vocab_size)

    def __call__(self, scores, state):
        block = tf.logical_and(self.eos_mask[None, :], state.step < self.min_new_tokens)
        return tf.where(block, FILTER_VALUE, scores)


class RepetitionPenaltyLogitsProcessor(LogitsProcessor):
    """Scale down tokens already present (prompt and generated): divide positive scores by the
    penalty, multiply negative ones (CTRL's rule, as Transformers)."""

    def __init__(self, penalty: tf.Tensor) -> None:
        self.penalty = penalty

    def __call__(self, scores, state):
        seen = seen_tokens(state, scores.shape[-1])
        penalised = tf.where(scores < 0, scores * self.penalty, scores / self.penalty)
        return tf.where(seen, penalised, scores)


class PresenceFrequencyPenaltyLogitsProcessor(LogitsProcessor):
    """OpenAI's penalties over the *generated* tokens: subtract ``frequency * count`` and
    ``presence`` (once) from each id already generated (``state.generated`` must be tracked)."""

    def __init__(self, presence_penalty: tf.Tensor, frequency_penalty: tf.Tensor) -> None:
        self.presence = presence_penalty
        self.frequency = frequency_penalty

    def __call__(self, scores, state):
        if state.generated is None:
            raise ValueError("presence/frequency penalties need DecodeState.generated")
        counts = tf.cast(token_counts(state, scores.shape[-1], state.generated), scores.dtype)
        return scores - self.frequency * counts - self.presence * tf.cast(counts > 0, scores.dtype)


class NoRepeatNGramLogitsProcessor(LogitsProcessor):
    """Ban every token that would repeat an n-gram of the sequence.

    Compares the last n-1 tokens with every window of the buffer (O(length * n) per step, no
    n-gram table), then scatters the bans: memory stays linear in the length.
    """

    def __init__(self, ngram_size: int) -> None:
        if ngram_size < 1:
            raise ValueError(f"no_repeat_ngram_size must be >= 1, got {ngram_size}")
        self.n = ngram_size

    def __call__(self, scores, state):
        n, vocab = self.n, scores.shape[-1]
        tokens, valid = state.tokens, state.valid
        rows, slots = tf.shape(tokens)[0], tf.shape(tokens)[1]
        # Real tokens sit contiguously; the newest one is at the last valid slot.
        last = tf.reduce_max(tf.where(valid, tf.range(slots)[None, :], -1), axis=1)  # [rows]
        starts = tf.range(slots)[None, :]  # window j covers slots j .. j+n-1
        match = tf.ones([rows, slots], tf.bool)
        for i in range(n - 1):
            prefix_slot = last - (n - 2) + i  # the i-th of the last n-1 tokens
            prefix_tok = tf.gather(tokens, tf.maximum(prefix_slot, 0), batch_dims=1)
            prefix_ok = tf.gather(valid, tf.maximum(prefix_slot, 0), batch_dims=1) & (prefix_slot >= 0)
            window_tok = tf.roll(tokens, shift=-i, axis=1)
            window_ok = tf.roll(valid, shift=-i, axis=1) & (starts + i < slots)
            match &= window_ok & tf.equal(window_tok, prefix_tok[:, None]) & prefix_ok[:, None]
        follow_slot = starts + (n - 1)
        follow_ok = (follow_slot <= last[:, None]) & tf.roll(valid, shift=-(n - 1), axis=1)
        match &= follow_ok & (follow_slot < slots)
        banned_tok = tf.roll(tokens, shift=-(n - 1), axis=1)
        index = tf.stack(
            [tf.repeat(tf.range(rows), slots), tf.reshape(tf.clip_by_value(banned_tok, 0, vocab - 1), [-1])],
            axis=1,
        )
        banned = tf.scatter_nd(index, tf.reshape(tf.cast(match, tf.int32), [-1]), [rows, vocab]) > 0
        enough = state.cur_len + 1 >= n  # Transformers bans nothing before n-1 tokens exist
        return tf.where(tf.logical_and(banned, enough), FILTER_VALUE, scores)


class NoBadWordsLogitsProcessor(LogitsProcessor):
    """Ban the last token of each banned sequence when the tokens before it were just generated
    (a one-token sequence is always banned). The banned sequences are static."""

    def __init__(self, bad_words_ids: Sequence[Sequence[int]], eos_token_ids: Sequence[int] = ()) -> None:
        eos = set(eos_token_ids)
        # Transformers drops a banned "word" that is exactly one eos token.
        self.words = [list(w) for w in bad_words_ids if not (len(w) == 1 and w[0] in eos)]

    def __call__(self, scores, state):
        vocab = scores.shape[-1]
        tokens, valid = state.tokens, state.valid
        slots = tf.shape(tokens)[1]
        last = tf.reduce_max(tf.where(valid, tf.range(slots)[None, :], -1), axis=1)
        banned = tf.zeros_like(scores, tf.bool)
        for word in self.words:
            hit = tf.ones_like(last, tf.bool)
            for i, token in enumerate(word[:-1]):
                slot = last - (len(word) - 2) + i
                ok = slot >= 0
                tok = tf.gather(tokens, tf.maximum(slot, 0), batch_dims=1)
                hit &= ok & tf.gather(valid, tf.maximum(slot, 0), batch_dims=1) & tf.equal(tok, token)
            banned |= hit[:, None] & token_mask([word[-1]], vocab)[None, :]
        return tf.where(banned, FILTER_VALUE, scores)


class SuppressTokensLogitsProcessor(LogitsProcessor):
    """Never generate these tokens."""

    def __init__(self, token_ids: Sequence[int], vocab_size: int) -> None:
        self.mask = token_mask(list(token_ids), vocab_size)

    def __call__(self, scores, state):
        return tf.where(self.mask[None, :], FILTER_VALUE, scores)


class SuppressTokensAtBeginLogitsProcessor(LogitsProcessor):
    """Suppress tokens when ``cur_len == begin_index`` (the first generated token by default)."""

    def __init__(self, token_ids: Sequence[int], begin_index: tf.Tensor, vocab_size: int) -> None:
        self.mask = token_mask(list(token_ids), vocab_size)
        self.begin_index = begin_index

    def __call__(self, scores, state):
        return tf.where(
            tf.logical_and(self.mask[None, :], state.cur_len == self.begin_index), FILTER_VALUE, scores
        )


class ForcedBOSTokenLogitsProcessor(LogitsProcessor):
    """Force ``bos_token_id`` as the token generated when ``cur_len == 1`` (encoder-decoders)."""

    def __init__(self, bos_token_id: int) -> None:
        self.bos_token_id = bos_token_id

    def __call__(self, scores, state):
        return _force(scores, [self.bos_token_id], state.cur_len == 1)


class ForcedEOSTokenLogitsProcessor(LogitsProcessor):
    """Force an end-of-sequence token as the last token allowed by ``max_length``."""

    def __init__(self, eos_token_ids: Sequence[int], max_length: tf.Tensor) -> None:
        self.eos_token_ids = list(eos_token_ids)
        self.max_length = max_length

    def __call__(self, scores, state):
        return _force(scores, self.eos_token_ids, state.cur_len == self.max_length - 1)


class TemperatureLogitsWarper(LogitsProcessor):
    def __init__(self, temperature: tf.Tensor) -> None:
        self.temperature = temperature

    def __call__(self, scores, state):
        return scores / self.temperature


class TopKLogitsWarper(LogitsProcessor):
    """Keep the ``top_k`` highest scores. An int k is static (it sets a shape: ``top_k`` picks them);
    a tensor (one k per row, [rows, 1], 0 = off: the server's slots) reads the k-th of the sorted row."""

    def __init__(self, top_k: int | tf.Tensor, min_tokens_to_keep: int = 1) -> None:
        self.top_k = top_k if tf.is_tensor(top_k) else max(top_k, min_tokens_to_keep)
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, scores, state):
        if tf.is_tensor(self.top_k):
            vocab = scores.shape[-1]
            k = tf.clip_by_value(tf.maximum(self.top_k, self.min_tokens_to_keep), 1, vocab)
            ranked = tf.sort(scores, axis=-1, direction="DESCENDING")
            kth = tf.gather(ranked, k - 1, axis=-1, batch_dims=1)  # [rows, 1]
            threshold = tf.where(self.top_k > 0, kth, FILTER_VALUE)
            return tf.where(scores < threshold, FILTER_VALUE, scores)
        k = min(self.top_k, scores.shape[-1])
        kth = tf.math.top_k(scores, k=k, sorted=False).values
        threshold = tf.reduce_min(kth, axis=-1, keepdims=True)
        return tf.where(scores < threshold, FILTER_VALUE, scores)


class TopPLogitsWarper(LogitsProcessor):
    """Nucleus filtering: keep the smallest set of top tokens whose probability reaches ``top_p``."""

    def __init__(self, top_p: tf.Tensor, min_tokens_to_keep: int = 1) -> None:
        self.top_p = top_p
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, scores, state):
        ranked = tf.sort(scores, axis=-1, direction="DESCENDING")
        mass_before = tf.cumsum(tf.nn.softmax(ranked, axis=-1), axis=-1, exclusive=True)
        keep = mass_before < self.top_p  # the best token always has mass_before == 0
        keep |= tf.range(tf.shape(ranked)[-1])[None, :] < self.min_tokens_to_keep
        threshold = tf.reduce_min(tf.where(keep, ranked, float("inf")), axis=-1, keepdims=True)
        return tf.where(scores < threshold, FILTER_VALUE, scores)
