"""Each logits processor against Transformers' processor of the same name, and inside generate()."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch
import transformers.generation.logits_process as hf

import xlagen.generation.logits_process as lp
from tests.conftest import left_padded_batch

V = 40


def run_both(ours, theirs, ids, scores, step=0):
    state = lp.DecodeState(
        tf.constant(ids, tf.int32), tf.ones(ids.shape, tf.bool), tf.constant(ids.shape[1]), tf.constant(step)
    )
    mine = ours(tf.constant(scores), state).numpy()
    ref = theirs(torch.tensor(ids), torch.tensor(scores)).numpy()
    np.testing.assert_array_equal(np.isneginf(mine), np.isneginf(ref))
    finite = np.isfinite(ref)
    np.testing.assert_allclose(mine[finite], ref[finite], rtol=1e-6, atol=1e-6)


@pytest.fixture
def case():
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 6, [3, 12])  # a small alphabet so n-grams repeat
    scores = rng.normal(size=[3, V]).astype(np.float32) * 3
    return ids, scores


@pytest.mark.parametrize("penalty", [1.3, 0.7])
def test_repetition_penalty(case, penalty):
    ids, scores = case
    run_both(
        lp.RepetitionPenaltyLogitsProcessor(tf.constant(penalty)),
        hf.RepetitionPenaltyLogitsProcessor(penalty),
        ids,
        scores,
    )


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_no_repeat_ngram(case, n):
    ids, scores = case
    run_both(lp.NoRepeatNGramLogitsProcessor(n), hf.NoRepeatNGramLogitsProcessor(n), ids, scores)


def test_no_repeat_ngram_short_sequence(case):
    ids, scores = case
    run_both(lp.NoRepeatNGramLogitsProcessor(3), hf.NoRepeatNGramLogitsProcessor(3), ids[:, :1], scores)


def test_bad_words(case):
    ids, scores = case
    words = [[7], [ids[0, -1], 9], [ids[1, -2], ids[1, -1], 11], [3, 3, 3, 12], [2]]
    run_both(
        lp.NoBadWordsLogitsProcessor(words, [2]),
        hf.NoBadWordsLogitsProcessor(words, eos_token_id=2),
        ids,
        scores,
    )


def test_suppress_tokens(case):
    ids, scores = case
    run_both(
        lp.SuppressTokensLogitsProcessor([1, 5, 39], V),
        hf.SuppressTokensLogitsProcessor([1, 5, 39]),
        ids,
        scores,
    )


@pytest.mark.parametrize("begin", [12, 11])
def test_suppress_tokens_at_begin(case, begin):
    ids, scores = case
    ours = lp.SuppressTokensAtBeginLogitsProcessor([0, 4], tf.constant(begin), V)
    run_both(ours, hf.SuppressTokensAtBeginLogitsProcessor([0, 4], begin), ids, scores)


@pytest.mark.parametrize("length", [1, 2])
def test_forced_bos(case, length):
    ids, scores = case
    run_both(
        lp.ForcedBOSTokenLogitsProcessor(6), hf.ForcedBOSTokenLogitsProcessor(6), ids[:, :length], scores
    )


@pytest.mark.parametrize("max_length", [13, 14])
def test_forced_eos(case, max_length):
    ids, scores = case
    ours = lp.ForcedEOSTokenLogitsProcessor([2, 3], tf.constant(max_length))
    run_both(ours, hf.ForcedEOSTokenLogitsProcessor(max_length, [2, 3]), ids, scores)


@pytest.mark.parametrize("step, expect_block", [(2, True), (4, False)])
def test_min_new_tokens(case, step, expect_block):
    ids, scores = case
    ours = lp.MinNewTokensLogitsProcessor(tf.constant(4), tf.constant([2, 3]), V)
    prompt = ids.shape[1] - step
    run_both(ours, hf.MinNewTokensLengthLogitsProcessor(prompt, 4, [2, 3]), ids, scores, step=step)


def test_warpers(case):
    ids, scores = case
    run_both(lp.TemperatureLogitsWarper(tf.constant(0.7)), hf.TemperatureLogitsWarper(0.7), ids, scores)
    run_both(lp.TopKLogitsWarper(5), hf.TopKLogitsWarper(5), ids, scores)
    for p in (0.3, 0.8, 0.99):
        run_both(lp.TopPLogitsWarper(tf.constant(p)), hf.TopPLogitsWarper(p), ids, scores)


# -- inside generate --------------------------------------------------------------------------

PROCESSOR_OPTIONS = [
    dict(repetition_penalty=1.5),
    dict(no_repeat_ngram_size=2),
    dict(no_repeat_ngram_size=3, repetition_penalty=0.8),
    dict(bad_words_ids=[[17], [40, 41]], suppress_tokens=[5, 6], begin_suppress_tokens=[7]),
    dict(forced_eos_token_id=9, min_new_tokens=5, eos_token_id=[9, 10]),
]


@pytest.mark.parametrize("options", PROCESSOR_OPTIONS, ids=lambda o: ",".join(o))
def test_generate_with_processors_matches_transformers(gpt2_model, gpt2_torch, options):
    ids, mask = left_padded_batch(np.random.default_rng(7), [4, 9], vocab=128)
    kw = dict(max_new_tokens=24, pad_token_id=0, **options)
    with torch.no_grad():
        ref = gpt2_torch.generate(
            torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            output_scores=True,
            return_dict_in_generate=True,
            **kw,
        )
    for jit in (False, True):
        out = gpt2_model.generate(
            ids, attention_mask=mask, output_scores=True, return_dict_in_generate=True, jit_compile=jit, **kw
        )
        np.testing.assert_array_equal(out.sequences.numpy(), ref.sequences.numpy())
        assert len(out.scores) == len(ref.scores)
        for mine, theirs in zip(out.scores, ref.scores):
            theirs = theirs.numpy()
            np.testing.assert_array_equal(np.isneginf(mine.numpy()), np.isneginf(theirs))
            finite = np.isfinite(theirs)
            np.testing.assert_allclose(mine.numpy()[finite], theirs[finite], atol=1e-4)


@pytest.mark.parametrize("n", [2, 3])
def test_no_repeat_ngram_under_xla_never_repeats(gpt2_model, n):
    ids, mask = left_padded_batch(np.random.default_rng(8), [3, 6, 10, 2], vocab=128)
    fn = tf.function(gpt2_model.generate, jit_compile=True)
    out = fn(
        tf.constant(ids),
        attention_mask=tf.constant(mask),
        max_new_tokens=60,
        no_repeat_ngram_size=n,
        eos_token_id=None,
    )
    for row, m in zip(out.numpy(), mask):
        real = list(row[np.concatenate([m, np.ones(60, int)]).astype(bool)])
        grams = [tuple(real[i : i + n]) for i in range(len(real) - n + 1)]
        assert len(grams) == len(set(grams))


def test_token_logprobs_and_scores_in_xla(gpt2_model):
    """``scores`` are after the warpers (as in Transformers); ``token_logprobs`` are the model's
    log-probabilities before them (the temperature does not change them; top-k does not renormalise)."""
    ids, mask = left_padded_batch(np.random.default_rng(9), [5, 3], vocab=128)
    fn = tf.function(gpt2_model.generate, jit_compile=True)
    common = dict(attention_mask=tf.constant(mask), max_new_tokens=6, output_scores=True,
                  return_dict_in_generate=True, do_sample=True, seed=(1, 2), eos_token_id=None)  # fmt: skip
    out = fn(tf.constant(ids), top_k=10, temperature=0.5, **common)
    hot = fn(tf.constant(ids), top_k=0, temperature=0.5, **common)
    assert out.sequences.shape == (2, 5 + 6) and len(out.scores) == 6 and out.token_logprobs.shape == (2, 6)
    for step in range(6):
        assert (np.isfinite(out.scores[step].numpy()).sum(axis=1) == 10).all()  # top_k kept 10 tokens
        # Temperature alone: scores are logits / 0.5, so the model's log-probabilities are known.
        chosen = hot.sequences.numpy()[:, 5 + step]
        expected = tf.nn.log_softmax(hot.scores[step] * 0.5).numpy()[np.arange(2), chosen]
        np.testing.assert_allclose(hot.token_logprobs.numpy()[:, step], expected, atol=1e-5)
    # The same first step under top-k: the same distribution before the warpers.
    first = out.sequences.numpy()[:, 5]
    expected = tf.nn.log_softmax(hot.scores[0] * 0.5).numpy()[np.arange(2), first]
    np.testing.assert_allclose(out.token_logprobs.numpy()[:, 0], expected, atol=1e-5)


def test_changing_penalty_value_does_not_recompile(gpt2_dir):
    import xlagen

    model = xlagen.TFAutoModelForCausalLM.from_pretrained(gpt2_dir)
    ids = np.array([[5, 6, 7]])
    model.generate(ids, max_new_tokens=4, repetition_penalty=1.2)
    model.generate(ids, max_new_tokens=4, repetition_penalty=1.7)
    assert model.generation_stats()["compilations"] == 1
