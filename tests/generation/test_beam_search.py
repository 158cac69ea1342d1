"""Beam search against Transformers (PyTorch) for GPT-2 and T5, in eager and XLA modes."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch

import xlagen
from tests.conftest import left_padded_batch
from tests.models.test_t5 import encoder_batch, write_t5

CASES = [
    dict(num_beams=2, early_stopping=False),
    dict(num_beams=4, early_stopping=True, num_return_sequences=2),
    dict(num_beams=4, early_stopping="never", num_return_sequences=3, length_penalty=1.5),
    dict(num_beams=2, early_stopping=False, length_penalty=-0.5, no_repeat_ngram_size=2),
]
CASE_IDS = ["beams2", "beams4-early-nrs2", "beams4-never-nrs3-lp1.5", "beams2-lp-neg-ngram"]


def check(out, ref):
    np.testing.assert_array_equal(out.sequences.numpy(), ref.sequences.numpy())
    np.testing.assert_allclose(out.sequences_scores.numpy(), ref.sequences_scores.numpy(), atol=1e-4)
    assert len(out.scores) == len(ref.scores)
    for mine, theirs in zip(out.scores, ref.scores):
        theirs = theirs.numpy()
        finite = np.isfinite(theirs)
        np.testing.assert_array_equal(np.isfinite(mine.numpy()), finite)
        np.testing.assert_allclose(mine.numpy()[finite], theirs[finite], atol=1e-4)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_gpt2_beam_search_matches_transformers(gpt2_model, gpt2_torch, case):
    ids, mask = left_padded_batch(np.random.default_rng(11), [3, 10, 7], vocab=128)
    kw = dict(
        max_new_tokens=20,
        pad_token_id=5,
        eos_token_id=[7, 9],
        output_scores=True,
        return_dict_in_generate=True,
    )
    kw.update(case)
    with torch.no_grad():
        ref = gpt2_torch.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), **kw)
    for jit in (False, True):
        check(gpt2_model.generate(ids, attention_mask=mask, jit_compile=jit, **kw), ref)


def test_gpt2_beam_search_in_user_xla_function(gpt2_model, gpt2_torch):
    ids, mask = left_padded_batch(np.random.default_rng(12), [4, 8], vocab=128)
    kw = dict(max_new_tokens=16, num_beams=4, num_return_sequences=2, pad_token_id=5, eos_token_id=7)
    with torch.no_grad():
        ref = gpt2_torch.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), **kw).numpy()
    fn = tf.function(gpt2_model.generate, jit_compile=True)
    out = fn(tf.constant(ids), attention_mask=tf.constant(mask), **kw).numpy()
    assert out.shape == (4, 8 + 16)
    np.testing.assert_array_equal(out[:, : ref.shape[1]], ref)
    assert (out[:, ref.shape[1] :] == 5).all()


@pytest.fixture(scope="module")
def t5_pair(tmp_path_factory):
    path = tmp_path_factory.mktemp("t5_beam")
    pt_model = write_t5(path)
    return xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(path), pt_model


@pytest.mark.parametrize("case", CASES[:3], ids=CASE_IDS[:3])
def test_t5_beam_search_matches_transformers(t5_pair, case):
    model, pt_model = t5_pair
    ids, mask = encoder_batch(np.random.default_rng(13), [5, 11, 2])
    kw = dict(max_new_tokens=18, output_scores=True, return_dict_in_generate=True, **case)
    with torch.no_grad():
        ref = pt_model.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), **kw)
    for jit in (False, True):
        check(model.generate(ids, attention_mask=mask, jit_compile=jit, **kw), ref)


def test_beam_sampling_is_reproducible(gpt2_model):
    ids, mask = left_padded_batch(np.random.default_rng(14), [4, 6], vocab=128)
    kw = dict(max_new_tokens=12, num_beams=3, do_sample=True, seed=(4, 2), top_k=30, eos_token_id=None)
    xla = gpt2_model.generate(ids, attention_mask=mask, **kw).numpy()
    eager = gpt2_model.generate(ids, attention_mask=mask, jit_compile=False, **kw).numpy()
    np.testing.assert_array_equal(xla, eager)
    other = gpt2_model.generate(ids, attention_mask=mask, **{**kw, "seed": (4, 3)}).numpy()
    assert not np.array_equal(other, xla)


def test_beam_options_are_checked(gpt2_model):
    ids = np.array([[5, 6, 7]])
    with pytest.raises(ValueError, match="num_return_sequences"):
        gpt2_model.generate(ids, max_new_tokens=3, num_beams=2, num_return_sequences=3)
    with pytest.raises(ValueError, match="early_stopping"):
        gpt2_model.generate(ids, max_new_tokens=3, num_beams=2, early_stopping="sometimes")
    with pytest.raises(ValueError, match="num_beams"):
        gpt2_model.generate(ids, max_new_tokens=3, num_beams=0)


@pytest.mark.parametrize("batch_dim", [None, 3], ids=["dynamic-batch", "static-batch"])
def test_t5_beam_search_in_user_xla_function(t5_pair, batch_dim):
    """Inside a user's tf.function the encoder rows are shared by the beams only when the batch is
    static; with a dynamic batch the encoder output is repeated per beam, and both match Transformers."""
    model, pt_model = t5_pair
    ids, mask = encoder_batch(np.random.default_rng(14), [5, 11, 2])
    kw = dict(max_new_tokens=10, num_beams=3)
    with torch.no_grad():
        ref = pt_model.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), **kw).numpy()
    spec = tf.TensorSpec([batch_dim, ids.shape[1]], tf.int32)

    @tf.function(jit_compile=True, input_signature=[spec, spec])
    def fn(ids, mask):
        return model.generate(ids, attention_mask=mask, **kw)

    out = fn(tf.constant(ids, tf.int32), tf.constant(mask, tf.int32)).numpy()
    np.testing.assert_array_equal(out[:, : ref.shape[1]], ref)
    assert (out[:, ref.shape[1] :] == model.generation_config.pad_token_id).all()
