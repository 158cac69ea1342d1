"""Checks of generate()'s options and lengths: every bad value gets a ValueError naming it, before tracing."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import tensorflow as tf

from xlagen.generation.config import GenerationConfig


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int) -> int:
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def as_seed(seed: Any) -> np.ndarray:
    if seed is None:
        return np.asarray(tf.random.uniform([2], 0, 2**31 - 1, dtype=tf.int64).numpy(), np.uint32)
    if tf.is_tensor(seed) and not tf.executing_eagerly():
        return seed
    values = np.asarray(seed.numpy() if tf.is_tensor(seed) else seed)
    if values.ndim == 0:
        values = np.stack([values, np.zeros_like(values)])
    if values.shape != (2,) or not np.issubdtype(values.dtype, np.integer) or (values < 0).any():
        raise ValueError(f"seed must be a non-negative int or a pair of non-negative ints, got {seed!r}")
    if (values >= 2**32).any():
        raise ValueError(f"seed values must be < 2**32, got {seed!r}")
    return values.astype(np.uint32)


def check_options(gc: GenerationConfig, vocab: int) -> None:
    """Check every option's type and range (before anything is traced); errors name the option."""
    check_int("num_beams", gc.num_beams, 1)
    if gc.early_stopping not in (True, False, "never"):
        raise ValueError(f"early_stopping must be True, False or 'never', got {gc.early_stopping!r}")
    lpen = gc.length_penalty
    if not isinstance(lpen, numbers.Real) or isinstance(lpen, bool) or not np.isfinite(lpen):
        raise ValueError(f"length_penalty must be a finite float, got {lpen!r}")
    for name in ("do_sample", "output_scores", "return_dict_in_generate"):
        if not isinstance(getattr(gc, name), bool):
            raise ValueError(f"{name} must be True or False, got {getattr(gc, name)!r}")
    if gc.output_logits:
        raise ValueError("output_logits=True is not supported; use output_scores=True")
    if gc.do_sample:
        t = gc.temperature
        if not isinstance(t, numbers.Real) or isinstance(t, bool) or not t > 0 or not np.isfinite(t):
            raise ValueError(f"temperature must be a float > 0 when sampling, got {t!r}")
        check_int("top_k", gc.top_k if gc.top_k is not None else 0, 0)
        p = gc.top_p if gc.top_p is not None else 1.0
        if not isinstance(p, numbers.Real) or isinstance(p, bool) or not 0.0 < p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {gc.top_p!r}")
    r = gc.repetition_penalty
    if not isinstance(r, numbers.Real) or isinstance(r, bool) or not r > 0 or not np.isfinite(r):
        raise ValueError(f"repetition_penalty must be a float > 0, got {r!r}")
    check_int("no_repeat_ngram_size", gc.no_repeat_ngram_size or 0, 0)
    if gc.bad_words_ids is not None:
        words = gc.bad_words_ids
        if (
            not isinstance(words, list | tuple)
            or not words
            or not all(
                isinstance(w, list | tuple) and w and all(is_int(t) and t >= 0 for t in w) for w in words
            )
        ):
            raise ValueError(
                f"bad_words_ids must be a non-empty list of non-empty lists of token ids, got {words!r}"
            )
    for name in ("suppress_tokens", "begin_suppress_tokens"):
        ids = getattr(gc, name)
        if ids is not None and (
            not isinstance(ids, list | tuple) or not all(is_int(t) and t >= 0 for t in ids)
        ):
            raise ValueError(f"{name} must be a list of token ids, got {ids!r}")
    if gc.forced_bos_token_id is not None and not is_int(gc.forced_bos_token_id):
        raise ValueError(f"forced_bos_token_id must be an int, got {gc.forced_bos_token_id!r}")
    forced_eos = gc.forced_eos_token_id
    if forced_eos is not None and not (
        is_int(forced_eos)
        or (isinstance(forced_eos, list | tuple) and forced_eos and all(map(is_int, forced_eos)))
    ):
        raise ValueError(f"forced_eos_token_id must be an int or a list of ints, got {forced_eos!r}")
    check_int("num_return_sequences", gc.num_return_sequences, 1)
    if gc.num_beams > 1 and gc.num_return_sequences > gc.num_beams:
        raise ValueError(
            f"num_return_sequences={gc.num_return_sequences} must be <= num_beams={gc.num_beams}"
        )
    if gc.num_return_sequences > 1 and gc.num_beams == 1 and not gc.do_sample:
        raise ValueError(
            f"num_return_sequences={gc.num_return_sequences} needs do_sample=True or num_beams > 1 "
            "(greedy search would return the same sequence every time)"
        )
    for eos in gc.eos_token_ids:
        if not is_int(eos) or not 0 <= eos:
            raise ValueError(
                f"eos_token_id must be a non-negative int or a list of them, got {gc.eos_token_id!r}"
            )
    if gc.pad_token_id is not None and not is_int(gc.pad_token_id):
        raise ValueError(f"pad_token_id must be an int, got {gc.pad_token_id!r}")
    for name, ids in (
        ("suppress_tokens", gc.suppress_tokens or []),
        ("begin_suppress_tokens", gc.begin_suppress_tokens or []),
        ("forced_bos_token_id", [] if gc.forced_bos_token_id is None else [gc.forced_bos_token_id]),
        ("bad_words_ids", [t for w in gc.bad_words_ids or [] for t in w]),
    ):
        outside = [t for t in ids if t >= vocab]
        if outside:
            raise ValueError(f"{name} holds ids outside the vocabulary [0, {vocab}): {outside[:5]}")


def resolve_lengths(gc: GenerationConfig, prompt_len: int) -> tuple[int, int]:
    """(max_new_tokens, min_new_tokens) from either the *_new_tokens or the total-length options."""
    if gc.max_new_tokens is not None:
        max_new = check_int("max_new_tokens", gc.max_new_tokens, 1)
    else:
        max_length = check_int("max_length", gc.max_length, 1)
        max_new = max_length - prompt_len
        if max_new <= 0:
            raise ValueError(
                f"max_length={max_length} leaves no room to generate after a prompt of {prompt_len} tokens; "
                "raise max_length or set max_new_tokens"
            )
    min_new = max(0, check_int("min_length", gc.min_length or 0, 0) - prompt_len)
    if gc.min_new_tokens is not None:
        min_new = max(min_new, check_int("min_new_tokens", gc.min_new_tokens, 0))
    return max_new, min_new
