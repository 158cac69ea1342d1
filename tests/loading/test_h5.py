"""Tests for reading Transformers 4.x TF ``tf_model.h5`` checkpoints as PyTorch-style state dicts.

The fixtures under ``tests/fixtures/tf_h5/`` were written by ``scripts/make_tf_h5_fixtures.py`` with
Transformers 4.57 (TF classes converted from the PyTorch model with ``from_pt=True``), so each directory's
``tf_model.h5`` and ``model.safetensors`` hold the same weights.

Both files store tied weights once, so the key sets are equal: safetensors drops the tied copies
(GPT-2/OPT ``lm_head.weight``, T5 ``encoder/decoder.embed_tokens.weight`` and, when tied, ``lm_head.weight``,
Whisper ``proj_out.weight``) and non-persistent buffers (GPT-2 ``attn.bias``); the TF models own a single
variable for each (``wte``, ``embed_tokens``, ``shared``), which maps to the same name safetensors keeps.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from safetensors.numpy import load_file

from xlagen.loading.h5 import load_h5_state_dict, tf_weight_name_to_pt
from xlagen.models.bart.modeling import marian_sinusoids

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tf_h5"
SINGLE_FILE = [
    "gpt2",
    "opt",
    "opt_postnorm_proj",
    "t5",
    "t5_v11",
    "whisper",
    "mistral",
    "bart",
    "mbart",
    "marian",
    "pegasus",
    "blenderbot",
    "blenderbot_small",
]


def _assert_same_state(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        assert got[name].shape == value.shape, name
        assert got[name].dtype == value.dtype, name
        np.testing.assert_allclose(got[name], value, rtol=0, atol=1e-6, err_msg=name)


# Tables Transformers 4 TF stored in tf_model.h5 and Transformers 5 computes instead of saving.
COMPUTED_IN_H5 = {"marian": ("model.encoder.embed_positions.weight", "model.decoder.embed_positions.weight")}


@pytest.mark.parametrize("name", SINGLE_FILE)
def test_h5_matches_safetensors(name: str) -> None:
    got = load_h5_state_dict(FIXTURES / name / "tf_model.h5")
    for computed in COMPUTED_IN_H5.get(name, ()):  # Marian's sinusoids: the same table xlagen computes
        table = got.pop(computed)
        np.testing.assert_allclose(table, marian_sinusoids(*table.shape), rtol=0, atol=1e-6)
    _assert_same_state(got, load_file(str(FIXTURES / name / "model.safetensors")))


def test_sharded_h5_via_index_matches_safetensors() -> None:
    got = load_h5_state_dict(FIXTURES / "t5_sharded" / "tf_model.h5.index.json")
    _assert_same_state(got, load_file(str(FIXTURES / "t5_sharded" / "model.safetensors")))


def test_sharded_h5_shards_individually() -> None:
    want = load_file(str(FIXTURES / "t5_sharded" / "model.safetensors"))
    merged: dict[str, np.ndarray] = {}
    shards = sorted((FIXTURES / "t5_sharded").glob("tf_model-*-of-*.h5"))
    assert len(shards) > 1
    for shard in shards:
        part = load_h5_state_dict(shard)
        assert part and not set(part) & set(merged)
        merged.update(part)
    _assert_same_state(merged, want)


def test_known_layouts() -> None:
    gpt2 = load_h5_state_dict(FIXTURES / "gpt2" / "tf_model.h5")
    assert gpt2["transformer.h.0.attn.c_attn.weight"].shape == (32, 96)  # Conv1D: (in, out), not transposed
    assert gpt2["transformer.h.0.attn.c_attn.bias"].shape == (96,)  # stored as (1, 96) in TF
    whisper = load_h5_state_dict(FIXTURES / "whisper" / "tf_model.h5")
    assert whisper["model.encoder.conv1.weight"].shape == (32, 80, 3)  # TF (k, in, out) -> PT (out, in, k)
    t5 = load_h5_state_dict(FIXTURES / "t5_v11" / "tf_model.h5")
    assert t5["lm_head.weight"].shape == (128, 32)  # Dense kernel (in, out) -> (out, in)
    opt = load_h5_state_dict(FIXTURES / "opt_postnorm_proj" / "tf_model.h5")
    assert opt["model.decoder.project_in.weight"].shape == (32, 16)


@pytest.mark.parametrize(
    ("tf_name", "has_scope", "pt_name", "transpose"),
    [
        ("tfgpt2lm_head_model/transformer/h_._3/ln_1/gamma:0", True, "transformer.h.3.ln_1.weight", False),
        ("tf_model_7/model/decoder/layers.1/fc1/kernel:0", True, "model.decoder.layers.1.fc1.weight", True),
        ("shared/shared/embeddings:0", True, "shared.weight", False),
        ("final_logits_bias:0", True, "final_logits_bias", False),
        ("m/enc/bn/moving_variance:0", True, "enc.bn.running_var", False),
        ("m/enc/dup___real/beta:0", True, "enc.real.bias", False),
        (
            "encoder/block_._0/layer_._1/DenseReluDense/wo/kernel:0",
            False,
            "encoder.block.0.layer.1.DenseReluDense.wo.weight",
            True,
        ),
    ],
)
def test_tf_weight_name_to_pt(tf_name: str, has_scope: bool, pt_name: str, transpose: bool) -> None:
    assert tf_weight_name_to_pt(tf_name, has_model_scope=has_scope) == (pt_name, transpose)


def test_synthetic_keras_layout(tmp_path: Path) -> None:
    """Old-style bytes attributes, chunked ``weight_names0/1``, Conv2D kernels and top-level weights."""
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((4, 6)).astype(np.float32)
    conv2d = rng.standard_normal((3, 5, 2, 7)).astype(np.float32)
    logits_bias = rng.standard_normal((1, 9)).astype(np.float32)
    path = tmp_path / "tf_model.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"model"])
        group = f.create_group("model")
        names = [b"tf_thing_model_2/model/dense/kernel:0", b"tf_thing_model_2/model/conv/kernel:0"]
        group.attrs["weight_names0"] = np.array(names[:1])
        group.attrs["weight_names1"] = np.array(names[1:])
        group.create_dataset(names[0].decode(), data=dense)
        group.create_dataset(names[1].decode(), data=conv2d)
        top = f.create_group("top_level_model_weights")
        top.attrs["weight_names"] = np.array([b"final_logits_bias:0"])
        top.create_dataset("final_logits_bias:0", data=logits_bias)
    got = load_h5_state_dict(path)
    assert sorted(got) == ["final_logits_bias", "model.conv.weight", "model.dense.weight"]
    np.testing.assert_array_equal(got["model.dense.weight"], dense.T)
    np.testing.assert_array_equal(got["model.conv.weight"], conv2d.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(got["final_logits_bias"], logits_bias)  # not a "bias" leaf: kept (1, 9)


def test_missing_file_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "tf_model.h5"
    with pytest.raises(FileNotFoundError, match="nope"):
        load_h5_state_dict(missing)
    with pytest.raises(OSError, match="tf_model.h5.index.json"):
        load_h5_state_dict(tmp_path / "tf_model.h5.index.json")


def test_not_h5_file_error(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.h5"
    bad.write_bytes(b"this is not hdf5 at all" * 20)
    with pytest.raises(ValueError, match="garbage.h5.*not an HDF5 file"):
        load_h5_state_dict(bad)
    lfs = tmp_path / "lfs.h5"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")
    with pytest.raises(ValueError, match="lfs.h5.*Git LFS"):
        load_h5_state_dict(lfs)


def test_truncated_h5_error(tmp_path: Path) -> None:
    data = (FIXTURES / "gpt2" / "tf_model.h5").read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match="cut.h5"):
        load_h5_state_dict(cut)


def test_corrupt_h5_error(tmp_path: Path) -> None:
    data = bytearray((FIXTURES / "gpt2" / "tf_model.h5").read_bytes())
    data[2000:6000] = b"\xff" * 4000  # clobbers the attribute heap / object headers
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(bytes(data))
    with pytest.raises((OSError, ValueError), match="corrupt.h5"):
        load_h5_state_dict(bad)


def test_h5_without_keras_layout_error(tmp_path: Path) -> None:
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match="plain.h5.*layer_names"):
        load_h5_state_dict(path)


def test_bad_index_error(tmp_path: Path) -> None:
    index = tmp_path / "tf_model.h5.index.json"
    index.write_text("{not json")
    with pytest.raises(ValueError, match="tf_model.h5.index.json"):
        load_h5_state_dict(index)
