"""GPT-2 numerics against Hugging Face Transformers (PyTorch) on the same random weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
import torch
import transformers

import xlagen
from tests.conftest import left_padded_batch, write_gpt2


def torch_logits(pt_model, ids, mask):
    positions = np.maximum(mask.cumsum(1) - 1, 0)
    with torch.no_grad():
        out = pt_model(
            torch.tensor(ids), attention_mask=torch.tensor(mask), position_ids=torch.tensor(positions)
        )
    return out.logits.numpy(), positions


def assert_logits_match(model, pt_model, ids, mask, tol=1e-4):
    ref, positions = torch_logits(pt_model, ids, mask)
    ours = model(tf.constant(ids), attention_mask=tf.constant(mask), position_ids=tf.constant(positions))
    live = mask.astype(bool)
    diff = np.abs(ours.logits.numpy() - ref)[live].max()
    assert diff <= tol, f"max abs logits difference {diff}"


def test_logits_match_transformers_on_left_padded_batch(gpt2_model, gpt2_torch, rng):
    ids, mask = left_padded_batch(rng, [3, 9, 14, 1], vocab=128)
    assert_logits_match(gpt2_model, gpt2_torch, ids, mask)


def test_default_positions_and_mask_follow_transformers(gpt2_model, gpt2_torch, rng):
    ids = rng.integers(0, 128, [2, 11])
    with torch.no_grad():
        ref = gpt2_torch(torch.tensor(ids)).logits.numpy()
    ours = gpt2_model(tf.constant(ids)).logits.numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-4)


@pytest.mark.parametrize(
    "overrides",
    [
        {"activation_function": "gelu"},
        {"activation_function": "relu", "n_inner": 48},
        {"activation_function": "silu", "layer_norm_epsilon": 1e-3},
        {"scale_attn_by_inverse_layer_idx": True, "reorder_and_upcast_attn": True},
        {"scale_attn_weights": False},
        {"tie_word_embeddings": False},
        {"n_layer": 3, "n_head": 2, "n_embd": 24},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_config_options_are_honoured(tmp_path, rng, overrides):
    pt_model = write_gpt2(tmp_path, seed=1, **overrides)
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path)
    ids, mask = left_padded_batch(rng, [5, 12], vocab=128)
    assert_logits_match(model, pt_model, ids, mask)


def test_untied_head_is_loaded_not_tied(tmp_path, rng):
    pt_model = write_gpt2(tmp_path, seed=2, tie_word_embeddings=False)
    model = xlagen.TFGPT2LMHeadModel.from_pretrained(tmp_path)
    head = model.checkpoint_variables()["lm_head.weight"].numpy()
    np.testing.assert_array_equal(head, pt_model.lm_head.weight.detach().numpy())
    assert not np.allclose(head, model.wte.numpy())


def test_unsupported_config_is_rejected(tmp_path):
    write_gpt2(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["activation_function"] = "mystery"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="activation_function"):
        xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path)
    config["activation_function"] = "gelu_new"
    config["add_cross_attention"] = True
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="add_cross_attention"):
        xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path)


def test_sharded_safetensors_load(tmp_path, gpt2_torch, rng):
    gpt2_torch.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path)
    ids, mask = left_padded_batch(rng, [4, 7], vocab=128)
    assert_logits_match(model, gpt2_torch, ids, mask)


def test_base_model_checkpoint_without_prefix_loads(tmp_path, gpt2_torch, rng):
    gpt2_torch.transformer.save_pretrained(tmp_path)  # GPT2Model: keys without "transformer."
    model = xlagen.TFGPT2LMHeadModel.from_pretrained(tmp_path)
    ids, mask = left_padded_batch(rng, [6], vocab=128)
    assert_logits_match(model, gpt2_torch, ids, mask)


def test_save_pretrained_round_trips_through_transformers(tmp_path, gpt2_model, rng):
    gpt2_model.save_pretrained(tmp_path)
    reloaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    ids, mask = left_padded_batch(rng, [8, 3], vocab=128)
    assert_logits_match(gpt2_model, reloaded, ids, mask, tol=1e-5)
    again = xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path)
    for name, value in gpt2_model.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[name], value)


def test_conv1d_weights_are_held_transposed(gpt2_model, gpt2_torch):
    """The Conv1D weights live as [out, in] (the faster layout for XLA CPU's products); the state
    dict still has the checkpoint's [in, out], equal to Transformers' tensors."""
    name = "transformer.h.0.attn.c_attn.weight"
    assert name in gpt2_model.transposed_checkpoint_names()
    var = gpt2_model.checkpoint_variables()[name]
    want = gpt2_torch.state_dict()[name].numpy()
    assert tuple(var.shape) == want.shape[::-1]
    np.testing.assert_array_equal(gpt2_model.state_dict()[name], want)
    with pytest.raises(ValueError, match="only 2-D weights"):
        gpt2_model.blocks[0].new_weight("x.bias", (4,), transposed=True)


def test_missing_tensor_is_named(tmp_path, gpt2_torch):
    from safetensors.numpy import load_file, save_file

    gpt2_torch.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    del tensors["transformer.h.1.mlp.c_fc.bias"]
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"transformer\.h\.1\.mlp\.c_fc\.bias.*missing.*model\.safetensors"):
        xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path)


def test_wrong_shape_is_named(tmp_path, gpt2_torch):
    from safetensors.numpy import load_file, save_file

    gpt2_torch.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["transformer.wpe.weight"] = tensors["transformer.wpe.weight"][:10]
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"transformer\.wpe\.weight.*model\.safetensors.*shape \(10, 32\)"):
        xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path)


def test_corrupt_and_missing_files_give_clear_errors(tmp_path, gpt2_torch):
    gpt2_torch.save_pretrained(tmp_path)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match="model.safetensors"):
        xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(OSError, match="no weights found"):
        xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path)
    with pytest.raises(OSError, match="not a local directory"):
        xlagen.TFAutoModelForCausalLM.from_pretrained("someone/not-downloaded-model")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OSError, match="config.json"):
        xlagen.TFAutoModelForCausalLM.from_pretrained(empty)


def test_model_call_accepts_dict_inputs_and_jit(gpt2_model, rng):
    ids, mask = left_padded_batch(rng, [4, 6], vocab=128)
    direct = gpt2_model(tf.constant(ids), attention_mask=tf.constant(mask)).logits
    as_dict = gpt2_model({"input_ids": tf.constant(ids), "attention_mask": tf.constant(mask)}).logits
    compiled = tf.function(lambda i, m: gpt2_model(i, attention_mask=m).logits, jit_compile=True)
    np.testing.assert_allclose(as_dict.numpy(), direct.numpy(), atol=1e-6)
    np.testing.assert_allclose(
        compiled(tf.constant(ids), tf.constant(mask)).numpy(), direct.numpy(), atol=1e-5
    )


def test_tf_model_h5_from_transformers_4_loads(tmp_path, rng):
    """tf_model.h5 written by Transformers 4.57 TF (scripts/make_tf_h5_fixtures.py) gives the same logits
    as Transformers 5 (PyTorch) on the safetensors of the same weights."""
    import shutil
    from pathlib import Path

    fixture = Path(__file__).parent.parent / "fixtures" / "tf_h5" / "gpt2"
    for name in ("config.json", "tf_model.h5"):
        shutil.copy(fixture / name, tmp_path / name)
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path)
    pt_model = transformers.GPT2LMHeadModel.from_pretrained(fixture).eval()
    ids, mask = left_padded_batch(rng, [7, 2, 11], vocab=pt_model.config.vocab_size)
    assert_logits_match(model, pt_model, ids, mask)
