"""OPT numerics and generation against Hugging Face Transformers (PyTorch) on the same random weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf
import torch
import transformers

import xlagen
from tests.conftest import left_padded_batch, perturb_norms_and_biases

NEW = 33
PAD = 1  # OPT's pad id
TINY_OPT = dict(
    vocab_size=128,
    hidden_size=32,
    num_hidden_layers=2,
    ffn_dim=48,
    num_attention_heads=4,
    max_position_embeddings=96,
    pad_token_id=PAD,
    bos_token_id=2,
    eos_token_id=2,
)
# The configurations the published checkpoints use (350m: post-norm with a 512 -> 1024 projection).
VARIANTS = {
    "prenorm": {},
    "postnorm_proj": {"do_layer_norm_before": False, "word_embed_proj_dim": 16},
    "untied_head": {"tie_word_embeddings": False},
    "no_bias": {"enable_bias": False},
    "no_ln_affine": {"layer_norm_elementwise_affine": False},
}
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tf_h5"


def write_opt(path, seed: int = 0, **overrides) -> transformers.OPTForCausalLM:
    """Save a random OPT (PyTorch) to ``path``; return the eval-mode torch model."""
    config = transformers.OPTConfig(**{**TINY_OPT, **overrides})
    torch.manual_seed(seed)
    model = transformers.OPTForCausalLM(config).eval()
    perturb_norms_and_biases(model, "layer_norm")
    model.save_pretrained(path)
    return model


def torch_logits(pt_model, ids, mask, position_ids=None) -> np.ndarray:
    kw = {} if position_ids is None else {"position_ids": torch.tensor(position_ids)}
    with torch.no_grad():
        return pt_model(torch.tensor(ids), attention_mask=torch.tensor(mask), **kw).logits.numpy()


def assert_logits_match(model, pt_model, ids, mask, tol=1e-4) -> None:
    """Calls without position_ids (derived from the mask on both sides); compares attended positions."""
    ref = torch_logits(pt_model, ids, mask)
    ours = model(tf.constant(ids), attention_mask=tf.constant(mask)).logits.numpy()
    diff = np.abs(ours - ref)[mask.astype(bool)].max()
    assert diff <= tol, f"max abs logits difference {diff}"


@pytest.fixture(scope="module")
def prompts():
    return left_padded_batch(np.random.default_rng(1), [3, 10, 7], vocab=128, pad=PAD)


@pytest.fixture(scope="module", params=list(VARIANTS), ids=list(VARIANTS))
def opt(request, tmp_path_factory, prompts):
    """One variant: its directory, torch model, xlagen model and Transformers' greedy reference."""
    path = tmp_path_factory.mktemp(f"opt_{request.param}")
    pt_model = write_opt(path, seed=len(request.param), **VARIANTS[request.param])
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(path)
    ids, mask = prompts
    with torch.no_grad():
        reference = pt_model.generate(
            torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            max_new_tokens=NEW,
            do_sample=False,
            pad_token_id=PAD,
        ).numpy()
    return SimpleNamespace(path=path, pt=pt_model, model=model, reference=reference)


# -- logits -------------------------------------------------------------------------------------
def test_logits_match_on_left_padded_batch(opt):
    assert isinstance(opt.model, xlagen.TFOPTForCausalLM)
    ids, mask = left_padded_batch(np.random.default_rng(0), [3, 9, 14, 1], vocab=128, pad=PAD)
    assert_logits_match(opt.model, opt.pt, ids, mask)


def test_explicit_position_ids_and_no_mask_follow_transformers(opt):
    ids, mask = left_padded_batch(np.random.default_rng(2), [5, 11], vocab=128, pad=PAD)
    positions = np.maximum(mask.cumsum(1) - 1, 0)  # 0-based, as generate passes them
    ref = torch_logits(opt.pt, ids, mask, positions)
    ours = opt.model(tf.constant(ids), attention_mask=tf.constant(mask), position_ids=tf.constant(positions))
    assert np.abs(ours.logits.numpy() - ref)[mask.astype(bool)].max() <= 1e-4
    with torch.no_grad():
        ref = opt.pt(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(opt.model(tf.constant(ids)).logits.numpy(), ref, atol=1e-4)


@pytest.mark.parametrize(
    "overrides",
    [
        {"_remove_final_layer_norm": True},
        {"word_embed_proj_dim": 16},  # pre-norm with projections
        {"activation_function": "gelu", "ffn_dim": 24},
        {"num_hidden_layers": 3, "num_attention_heads": 2, "hidden_size": 24, "dropout": 0.3},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_more_config_options_are_honoured(tmp_path, overrides):
    pt_model = write_opt(tmp_path, seed=3, **overrides)
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path)
    ids, mask = left_padded_batch(np.random.default_rng(3), [4, 12], vocab=128, pad=PAD)
    assert_logits_match(model, pt_model, ids, mask)


@pytest.mark.parametrize("name", ["opt", "opt_postnorm_proj"])
def test_tf_model_h5_from_transformers_4_loads(tmp_path, name):
    """tf_model.h5 written by Transformers 4.57 TF gives the logits Transformers 5 (PyTorch) gives on the
    safetensors of the same weights."""
    for file in ("config.json", "tf_model.h5"):
        shutil.copy(FIXTURES / name / file, tmp_path / file)
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path)
    pt_model = transformers.OPTForCausalLM.from_pretrained(FIXTURES / name).eval()
    ids, mask = left_padded_batch(
        np.random.default_rng(4), [7, 2, 11], vocab=pt_model.config.vocab_size, pad=PAD
    )
    assert_logits_match(model, pt_model, ids, mask)


# -- generation ---------------------------------------------------------------------------------
def test_greedy_matches_transformers_eager(opt, prompts):
    ids, mask = prompts
    out = opt.model.generate(
        ids, attention_mask=mask, max_new_tokens=NEW, pad_token_id=PAD, jit_compile=False
    )
    np.testing.assert_array_equal(out.numpy(), opt.reference)


def test_greedy_matches_transformers_xla(opt, prompts):
    ids, mask = prompts
    out = opt.model.generate(
        tf.constant(ids), attention_mask=tf.constant(mask), max_new_tokens=NEW, pad_token_id=PAD
    )
    np.testing.assert_array_equal(out.numpy(), opt.reference)


def test_greedy_matches_transformers_in_user_xla_function(opt, prompts):
    ids, mask = prompts
    fn = tf.function(opt.model.generate, jit_compile=True)
    out = fn(
        tf.constant(ids, tf.int32),
        attention_mask=tf.constant(mask, tf.int32),
        max_new_tokens=NEW,
        pad_token_id=PAD,
    ).numpy()
    assert out.shape == (3, ids.shape[1] + NEW)
    np.testing.assert_array_equal(out[:, : opt.reference.shape[1]], opt.reference)
    assert (out[:, opt.reference.shape[1] :] == PAD).all()


def test_padded_batch_generates_what_each_prompt_alone_does(opt, prompts):
    ids, mask = prompts
    width = ids.shape[1]
    for row in range(ids.shape[0]):
        alone = ids[row][mask[row].astype(bool)][None, :]
        out = opt.model.generate(alone, max_new_tokens=NEW, pad_token_id=PAD).numpy()[0, alone.shape[1] :]
        batched = opt.reference[row, width:]
        np.testing.assert_array_equal(batched[: len(out)], out)
        assert (batched[len(out) :] == PAD).all()  # alone it stopped at EOS; batched it was padded


# -- loading and saving -------------------------------------------------------------------------
def test_save_pretrained_round_trips_through_transformers(opt, tmp_path):
    opt.model.save_pretrained(tmp_path)
    reloaded, info = transformers.OPTForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    ids, mask = left_padded_batch(np.random.default_rng(5), [8, 3], vocab=128, pad=PAD)
    assert_logits_match(opt.model, reloaded.eval(), ids, mask, tol=1e-5)
    again = xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path)
    assert again.config == opt.model.config
    for name, value in opt.model.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[name], value)


def test_remove_final_layer_norm_survives_save(tmp_path):
    write_opt(tmp_path / "a", _remove_final_layer_norm=True)
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path / "a")
    assert "model.decoder.final_layer_norm.weight" not in model.state_dict()
    model.save_pretrained(tmp_path / "b")
    assert json.loads((tmp_path / "b" / "config.json").read_text())["_remove_final_layer_norm"] is True
    assert transformers.OPTForCausalLM.from_pretrained(tmp_path / "b").model.decoder.final_layer_norm is None


@pytest.fixture(scope="module")
def prenorm(tmp_path_factory):
    path = tmp_path_factory.mktemp("opt_prenorm_plain")
    return write_opt(path, seed=7)


def test_sharded_safetensors_load(tmp_path, prenorm):
    prenorm.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path)
    ids, mask = left_padded_batch(np.random.default_rng(6), [4, 7], vocab=128, pad=PAD)
    assert_logits_match(model, prenorm, ids, mask)


def test_base_model_checkpoint_without_prefix_loads(tmp_path, prenorm):
    prenorm.model.save_pretrained(tmp_path)  # OPTModel: keys "decoder...." without "model."
    model = xlagen.TFOPTForCausalLM.from_pretrained(tmp_path)
    ids, mask = left_padded_batch(np.random.default_rng(7), [6, 2], vocab=128, pad=PAD)
    assert_logits_match(model, prenorm, ids, mask)


def _edit_safetensors(path: Path, edit) -> None:
    from safetensors.numpy import load_file, save_file

    tensors = load_file(path / "model.safetensors")
    edit(tensors)
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})


def test_missing_tensor_is_named(tmp_path, prenorm):
    prenorm.save_pretrained(tmp_path)
    _edit_safetensors(tmp_path, lambda t: t.pop("model.decoder.layers.1.self_attn.k_proj.bias"))
    with pytest.raises(ValueError, match=r"layers\.1\.self_attn\.k_proj\.bias.*missing.*model\.safetensors"):
        xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path)


def test_wrong_shape_is_named(tmp_path, prenorm):
    prenorm.save_pretrained(tmp_path)

    def shorten(t):
        t["model.decoder.embed_positions.weight"] = t["model.decoder.embed_positions.weight"][:10]

    _edit_safetensors(tmp_path, shorten)
    with pytest.raises(ValueError, match=r"embed_positions\.weight.*model\.safetensors.*shape \(10, 32\)"):
        xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "key, value",
    [
        ("activation_function", "mystery"),
        ("num_attention_heads", 5),
        ("dropout", 1.5),
        ("word_embed_proj_dim", 0),
        ("do_layer_norm_before", "yes"),
    ],
)
def test_unsupported_config_is_rejected(key, value):
    with pytest.raises(ValueError, match=key if key != "num_attention_heads" else "divisible"):
        xlagen.OPTConfig(**{**TINY_OPT, key: value})


def test_dict_inputs_jit_call_and_training_dropout(prenorm, tmp_path):
    prenorm.save_pretrained(tmp_path)
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path, dropout=0.5, layerdrop=0.5)
    ids, mask = left_padded_batch(np.random.default_rng(8), [4, 6], vocab=128, pad=PAD)
    direct = model(tf.constant(ids), attention_mask=tf.constant(mask)).logits.numpy()
    as_dict = model({"input_ids": tf.constant(ids), "attention_mask": tf.constant(mask)}).logits.numpy()
    compiled = tf.function(lambda i, m: model(i, attention_mask=m).logits, jit_compile=True)
    np.testing.assert_allclose(as_dict, direct, atol=1e-6)
    np.testing.assert_allclose(compiled(tf.constant(ids), tf.constant(mask)).numpy(), direct, atol=1e-5)
    np.testing.assert_allclose(
        direct[mask.astype(bool)], torch_logits(prenorm, ids, mask)[mask.astype(bool)], atol=1e-4
    )
    out = model({"input_ids": ids, "attention_mask": mask, "labels": ids}, training=True)
    assert np.isfinite(out.loss.numpy()) and not np.allclose(out.logits.numpy(), direct)
