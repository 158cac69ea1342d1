"""generate(): parity with Transformers (PyTorch), XLA/graph/eager agreement, buckets, argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch

import xlagen
from tests.conftest import left_padded_batch

NEW = 40


@pytest.fixture(scope="module")
def prompts():
    return left_padded_batch(np.random.default_rng(1), [3, 10, 7], vocab=128)


@pytest.fixture(scope="module")
def reference(gpt2_torch, prompts):
    ids, mask = prompts
    with torch.no_grad():
        out = gpt2_torch.generate(
            torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            max_new_tokens=NEW,
            do_sample=False,
            pad_token_id=0,
        )
    return out.numpy()


def test_greedy_matches_transformers_eager(gpt2_model, prompts, reference):
    ids, mask = prompts
    out = gpt2_model.generate(ids, attention_mask=mask, max_new_tokens=NEW, pad_token_id=0, jit_compile=False)
    np.testing.assert_array_equal(out.numpy(), reference)


def test_greedy_matches_transformers_xla_buckets(gpt2_model, prompts, reference):
    ids, mask = prompts
    out = gpt2_model.generate(
        tf.constant(ids), attention_mask=tf.constant(mask), max_new_tokens=NEW, pad_token_id=0
    )
    np.testing.assert_array_equal(out.numpy(), reference)


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
def test_greedy_matches_transformers_in_user_tf_function(gpt2_model, prompts, reference, jit):
    ids, mask = prompts
    fn = tf.function(gpt2_model.generate, jit_compile=jit)
    out = fn(
        tf.constant(ids, tf.int32),
        attention_mask=tf.constant(mask, tf.int32),
        max_new_tokens=NEW,
        pad_token_id=0,
    )
    out = out.numpy()
    assert out.shape == (3, ids.shape[1] + NEW)  # static shape, padded like Transformers' XLA generate
    np.testing.assert_array_equal(out[:, : reference.shape[1]], reference)
    assert (out[:, reference.shape[1] :] == 0).all()


def test_longer_prompt_in_same_bucket_does_not_recompile(gpt2_dir):
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(gpt2_dir)
    rng = np.random.default_rng(3)
    ids, mask = left_padded_batch(rng, [5, 9, 3], vocab=128)
    model.generate(ids, attention_mask=mask, max_new_tokens=20)
    assert model.generation_stats()["compilations"] == 1
    ids2, mask2 = left_padded_batch(rng, [12, 2, 6, 1], vocab=128)  # length 12, batch 4: same buckets (16, 4)
    model.generate(ids2, attention_mask=mask2, max_new_tokens=18)  # same new-token bucket too
    assert model.generation_stats()["compilations"] == 1
    ids3, mask3 = left_padded_batch(rng, [20], vocab=128)  # crosses into the 32 bucket
    model.generate(ids3, attention_mask=mask3, max_new_tokens=18)
    assert model.generation_stats()["compilations"] == 2
    assert model.generation_stats()["calls"] == 3


def test_bucket_padding_does_not_change_tokens(gpt2_model, gpt2_torch, rng):
    for lengths in ([1], [2, 15], [16, 4, 9, 11, 3]):
        ids, mask = left_padded_batch(rng, lengths, vocab=128)
        with torch.no_grad():
            ref = gpt2_torch.generate(
                torch.tensor(ids), attention_mask=torch.tensor(mask), max_new_tokens=33, pad_token_id=0
            ).numpy()
        out = gpt2_model.generate(ids, attention_mask=mask, max_new_tokens=33, pad_token_id=0)
        np.testing.assert_array_equal(out.numpy(), ref)


def test_custom_buckets(gpt2_dir, rng):
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(gpt2_dir)
    model.buckets = xlagen.Buckets(
        batch="exact", prompt_length=8, new_tokens=8, min_prompt_bucket=8, min_new_tokens_bucket=8
    )
    ids, mask = left_padded_batch(rng, [3, 5, 2], vocab=128)
    model.generate(ids, attention_mask=mask, max_new_tokens=5)
    (key,) = model.generation_stats()["programs"]
    assert key[:2] == (3, 8) and key[-2].capacity == 8


def test_eos_stops_rows_and_pads(gpt2_model, gpt2_torch, prompts):
    ids, mask = prompts
    # Pick as EOS a token the greedy continuation emits, so rows actually finish early.
    first = gpt2_model.generate(ids, attention_mask=mask, max_new_tokens=8, pad_token_id=0).numpy()
    eos = [int(first[0, ids.shape[1] + 2]), 127]
    with torch.no_grad():
        ref = gpt2_torch.generate(
            torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            max_new_tokens=NEW,
            eos_token_id=eos,
            pad_token_id=5,
        ).numpy()
    for jit in (False, True):
        out = gpt2_model.generate(
            ids, attention_mask=mask, max_new_tokens=NEW, eos_token_id=eos, pad_token_id=5, jit_compile=jit
        )
        np.testing.assert_array_equal(out.numpy(), ref)


def test_early_exit_when_all_rows_finish(gpt2_model, prompts):
    ids, mask = prompts
    first = gpt2_model.generate(ids[:1], attention_mask=mask[:1], max_new_tokens=4).numpy()
    eos = int(first[0, ids.shape[1]])  # the very first generated token
    out = gpt2_model.generate(ids[:1], attention_mask=mask[:1], max_new_tokens=30, eos_token_id=eos)
    assert out.shape == (1, ids.shape[1] + 1)


def test_min_new_tokens_matches_transformers(gpt2_model, gpt2_torch, prompts):
    ids, mask = prompts
    first = gpt2_model.generate(ids, attention_mask=mask, max_new_tokens=3, pad_token_id=0).numpy()
    eos = int(first[1, ids.shape[1]])
    with torch.no_grad():
        ref = gpt2_torch.generate(
            torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            max_new_tokens=20,
            min_new_tokens=6,
            eos_token_id=eos,
            pad_token_id=0,
        ).numpy()
    out = gpt2_model.generate(
        ids, attention_mask=mask, max_new_tokens=20, min_new_tokens=6, eos_token_id=eos, pad_token_id=0
    )
    np.testing.assert_array_equal(out.numpy(), ref)
    assert not (out.numpy()[:, ids.shape[1] : ids.shape[1] + 6] == eos).any()


def test_max_length_counts_the_prompt(gpt2_model, prompts):
    ids, mask = prompts
    out = gpt2_model.generate(ids, attention_mask=mask, max_length=ids.shape[1] + 5, eos_token_id=None)
    assert out.shape == (3, ids.shape[1] + 5)


def test_sampling_is_reproducible_across_modes(gpt2_model, prompts):
    ids, mask = prompts
    kw = dict(
        attention_mask=mask,
        max_new_tokens=24,
        do_sample=True,
        top_k=20,
        top_p=0.9,
        temperature=0.8,
        seed=(7, 11),
    )
    xla = gpt2_model.generate(ids, **kw).numpy()
    eager = gpt2_model.generate(ids, jit_compile=False, **kw).numpy()
    np.testing.assert_array_equal(xla, eager)
    fn = tf.function(gpt2_model.generate, jit_compile=True)
    user = fn(tf.constant(ids), **{**kw, "attention_mask": tf.constant(mask)}).numpy()
    np.testing.assert_array_equal(user[:, : xla.shape[1]], xla)
    again = gpt2_model.generate(ids, **kw).numpy()
    np.testing.assert_array_equal(again, xla)
    other = gpt2_model.generate(ids, **{**kw, "seed": (7, 12)}).numpy()
    assert not np.array_equal(other, xla)


def test_sampling_row_does_not_depend_on_batch_padding(gpt2_model, prompts):
    ids, mask = prompts
    kw = dict(max_new_tokens=16, do_sample=True, seed=(3, 4), eos_token_id=None)
    full = gpt2_model.generate(ids, attention_mask=mask, **kw).numpy()
    alone = gpt2_model.generate(ids[:1], attention_mask=mask[:1], **kw).numpy()
    np.testing.assert_array_equal(full[:1], alone)


def test_sampling_distribution_follows_softmax(gpt2_model):
    ids = np.array([[5, 6, 7]])
    logits = gpt2_model(ids).logits.numpy()[0, -1].astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    draws = np.stack(
        [
            gpt2_model.generate(ids, max_new_tokens=1, do_sample=True, top_k=0, seed=(s, 0)).numpy()[0, -1]
            for s in range(400)
        ]
    )
    top = np.argsort(probs)[-3:]
    for token in top:
        assert abs((draws == token).mean() - probs[token]) < 0.08


def test_top_k_one_is_greedy(gpt2_model, prompts, reference):
    ids, mask = prompts
    out = gpt2_model.generate(
        ids, attention_mask=mask, max_new_tokens=NEW, do_sample=True, top_k=1, seed=1, pad_token_id=0
    )
    np.testing.assert_array_equal(out.numpy(), reference)


def test_new_temperature_or_top_p_does_not_recompile(gpt2_dir, prompts):
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(gpt2_dir)
    ids, mask = prompts
    model.generate(
        ids, attention_mask=mask, max_new_tokens=8, do_sample=True, temperature=0.7, top_p=0.9, seed=1
    )
    model.generate(
        ids, attention_mask=mask, max_new_tokens=8, do_sample=True, temperature=1.3, top_p=0.5, seed=2
    )
    model.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=True, temperature=0.2, top_p=0.95)
    assert model.generation_stats()["compilations"] == 1


def test_num_return_sequences_with_sampling(gpt2_model, prompts):
    ids, mask = prompts
    out = gpt2_model.generate(
        ids, attention_mask=mask, max_new_tokens=6, do_sample=True, num_return_sequences=2, seed=0
    )
    assert out.shape[0] == 6
    np.testing.assert_array_equal(out.numpy()[0, : ids.shape[1]], out.numpy()[1, : ids.shape[1]])


def test_pad_token_past_vocabulary(gpt2_model, gpt2_torch, prompts, reference):
    """A pad id outside the embedding table (GPT-2 + pad_token="</s>") works in every mode."""
    ids, mask = prompts
    ids = np.where(mask == 1, ids, 128)  # pad positions hold the out-of-vocabulary pad id
    for jit in (False, True):
        out = gpt2_model.generate(
            ids, attention_mask=mask, max_new_tokens=NEW, pad_token_id=128, jit_compile=jit
        )
        np.testing.assert_array_equal(out.numpy()[:, ids.shape[1] :], reference[:, ids.shape[1] :])
    fn = tf.function(gpt2_model.generate, jit_compile=True)
    out = fn(tf.constant(ids), attention_mask=tf.constant(mask), max_new_tokens=NEW, pad_token_id=128).numpy()
    np.testing.assert_array_equal(out[:, ids.shape[1] : reference.shape[1]], reference[:, ids.shape[1] :])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(max_new_tokens=200), "positions"),
        (dict(max_new_tokens=-1), "max_new_tokens"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(max_new_tokens=2.5), "max_new_tokens"),
        (dict(max_length=3), "max_length"),
        (dict(min_new_tokens=-2), "min_new_tokens"),
        (dict(do_sample=True, top_p=0.0), "top_p"),
        (dict(do_sample=True, top_p=1.5), "top_p"),
        (dict(do_sample=True, temperature=0.0), "temperature"),
        (dict(do_sample=True, temperature=-1.0), "temperature"),
        (dict(do_sample=True, top_k=-3), "top_k"),
        (dict(do_sample=True, seed=(1, 2, 3)), "seed"),
        (dict(num_beams=0), "num_beams"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(no_repeat_ngram_size=-1), "no_repeat_ngram_size"),
        (dict(bad_words_ids=[[]]), "bad_words_ids"),
        (dict(suppress_tokens=[1, 999]), "suppress_tokens"),
        (dict(num_return_sequences=2), "num_return_sequences"),
        (dict(frobnicate=True), "frobnicate"),
        (dict(eos_token_id="x"), "eos_token_id"),
    ],
)
def test_invalid_arguments_are_named_before_compiling(gpt2_dir, kwargs, match):
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(gpt2_dir)
    ids = np.array([[5, 6, 7, 8]])
    if "max_length" not in kwargs:
        kwargs.setdefault("max_new_tokens", 4)
    with pytest.raises(ValueError, match=match):
        model.generate(ids, **kwargs)
    assert model.generation_stats()["compilations"] == 0


def test_invalid_inputs_are_named(gpt2_model):
    ids = np.array([[5, 6, 7, 8]])
    with pytest.raises(TypeError, match="input_ids"):
        gpt2_model.generate(ids.astype(np.float32), max_new_tokens=2)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        gpt2_model.generate(np.array([[5, 6, 500]]), max_new_tokens=2)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        gpt2_model.generate(np.array([[5, -1, 6]]), max_new_tokens=2)
    with pytest.raises(ValueError, match="attention_mask shape"):
        gpt2_model.generate(ids, attention_mask=np.ones([1, 3]), max_new_tokens=2)
    with pytest.raises(ValueError, match="all zeros"):
        gpt2_model.generate(ids, attention_mask=np.zeros([1, 4]), max_new_tokens=2)
    with pytest.raises(ValueError, match="only 0 and 1"):
        gpt2_model.generate(ids, attention_mask=np.full([1, 4], 2), max_new_tokens=2)
    with pytest.raises(ValueError, match="2-D"):
        gpt2_model.generate(np.array([5, 6]), max_new_tokens=2)
    with pytest.raises(ValueError, match="input_ids"):
        gpt2_model.generate(max_new_tokens=2)
    # Out-of-vocabulary ids where the mask is 0 (padding) are fine.
    gpt2_model.generate(np.array([[999, 5, 6]]), attention_mask=np.array([[0, 1, 1]]), max_new_tokens=2)
