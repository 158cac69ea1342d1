"""Whisper numerics and generation against Hugging Face Transformers (PyTorch) on the same random weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import torch
import transformers
from transformers.generation.utils import GenerationMixin as TorchGenerationMixin

import xlagen
from tests.conftest import perturb_norms_and_biases
from xlagen.models.whisper.modeling import TFWhisperForConditionalGeneration

H5_FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "tf_h5" / "whisper"

# Special tokens of the tiny vocabulary (real Whisper: 50256 / 50257 / 50259 / 50359 / 50363).
EOT, SOT, EN, TRANSCRIBE, NO_TIMESTAMPS = 100, 101, 102, 103, 104
TINY_WHISPER = dict(
    vocab_size=120,
    num_mel_bins=80,
    d_model=32,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=64,
    decoder_ffn_dim=48,
    max_source_positions=64,  # 128 feature frames
    max_target_positions=40,
    bos_token_id=EOT,
    eos_token_id=EOT,
    pad_token_id=EOT,
    decoder_start_token_id=SOT,
    begin_suppress_tokens=None,
    suppress_tokens=None,
)


def write_whisper(path, seed: int = 0, **overrides) -> transformers.WhisperForConditionalGeneration:
    """Save a random Whisper (PyTorch) to ``path`` with perturbed norms/biases; return it in eval mode."""
    config = transformers.WhisperConfig(**{**TINY_WHISPER, **overrides})
    torch.manual_seed(seed)
    model = transformers.WhisperForConditionalGeneration(config).eval()

    def sharpen(name, p):
        if "embed_tokens" in name:
            p.mul_(5.0)  # sharper logits: greedy choices are not near-ties

    perturb_norms_and_biases(model, "layer_norm", extra=sharpen)
    model.save_pretrained(path)
    return model


def features(rng: np.random.Generator, batch: int, mels: int = 80, frames: int = 128) -> np.ndarray:
    return rng.standard_normal((batch, mels, frames)).astype(np.float32)


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("whisper_tiny")
    write_whisper(path)
    return path


@pytest.fixture(scope="module")
def whisper_torch(whisper_dir):
    return transformers.WhisperForConditionalGeneration.from_pretrained(whisper_dir).eval()


@pytest.fixture(scope="module")
def whisper_model(whisper_dir):
    return xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(whisper_dir)


def torch_logits(pt, feats, ids, mask=None):
    with torch.no_grad():
        out = pt(
            input_features=torch.tensor(feats),
            decoder_input_ids=torch.tensor(ids),
            decoder_attention_mask=None if mask is None else torch.tensor(mask),
        )
    return out.logits.numpy()


def torch_greedy(pt, feats, prompt, max_new_tokens):
    """Plain greedy search (Transformers' generic generate, none of Whisper's decoding rules)."""
    with torch.no_grad():
        out = TorchGenerationMixin.generate(
            pt,
            input_features=torch.tensor(feats),
            decoder_input_ids=torch.tensor(prompt),
            do_sample=False,
            num_beams=1,
            max_new_tokens=max_new_tokens,
        )
    return out.numpy()


def test_logits_match_transformers(whisper_model, whisper_torch, rng):
    assert isinstance(whisper_model, TFWhisperForConditionalGeneration)
    feats = features(rng, 2)
    ids = rng.integers(0, 100, (2, 9))
    ids[:, 0] = SOT
    out = whisper_model(tf.constant(feats), decoder_input_ids=tf.constant(ids))
    ref = torch_logits(whisper_torch, feats, ids)
    assert out.logits.shape == ref.shape
    assert np.abs(out.logits.numpy() - ref).max() <= 1e-4
    assert out.encoder_last_hidden_state.shape == (2, 64, 32)


def test_padded_decoder_mask_and_dict_inputs(whisper_model, whisper_torch, rng):
    feats = features(rng, 2)
    ids = rng.integers(0, 100, (2, 6))
    mask = np.ones_like(ids)
    mask[1, 4:] = 0  # right padding: the live positions must not change
    ref = torch_logits(whisper_torch, feats, ids, mask)
    out = whisper_model({"input_features": feats, "decoder_input_ids": ids, "decoder_attention_mask": mask})
    live = mask.astype(bool)
    assert np.abs(out["logits"].numpy() - ref)[live].max() <= 1e-4


@pytest.mark.parametrize("jit", [False, True])
def test_greedy_generate_matches_transformers(whisper_model, whisper_torch, rng, jit):
    feats = features(rng, 3)
    prompt = np.array([[SOT, EN, TRANSCRIBE, NO_TIMESTAMPS]] * 3)
    prompt[1, 1] = 7  # rows differ in their prompt too
    ref = torch_greedy(whisper_torch, feats, prompt, 12)
    got = whisper_model.generate(
        tf.constant(feats), decoder_input_ids=prompt, max_new_tokens=12, jit_compile=jit
    )
    np.testing.assert_array_equal(got.numpy(), ref)


def test_generate_inside_tf_function(whisper_model, whisper_torch, rng):
    feats = features(rng, 2)
    prompt = np.array([[SOT, NO_TIMESTAMPS]] * 2)
    ref = torch_greedy(whisper_torch, feats, prompt, 6)

    @tf.function(input_signature=[tf.TensorSpec([None, 80, 128], tf.float32)])
    def run(f):
        return whisper_model.generate(
            f, decoder_input_ids=tf.constant(prompt), max_new_tokens=6, min_new_tokens=6
        )

    got = run(tf.constant(feats)).numpy()
    n = ref.shape[1]
    np.testing.assert_array_equal(got[:, :n], ref)


def test_default_prompt_from_generation_config(whisper_dir, whisper_torch, rng):
    model = TFWhisperForConditionalGeneration.from_pretrained(whisper_dir)
    feats = features(rng, 1)
    assert model.decoder_prompt_ids() == [SOT]
    model.generation_config._extra.update(
        is_multilingual=True,
        lang_to_id={"<|en|>": EN},
        task_to_id={"transcribe": TRANSCRIBE},
        no_timestamps_token_id=NO_TIMESTAMPS,
    )
    assert model.decoder_prompt_ids(language="en") == [SOT, EN, TRANSCRIBE, NO_TIMESTAMPS]
    with pytest.raises(ValueError, match="multilingual: pass language="):
        model.decoder_prompt_ids()
    detected = model.generate(feats, max_new_tokens=1, jit_compile=False).numpy()  # the only language: en
    assert detected[0, :4].tolist() == [SOT, EN, TRANSCRIBE, NO_TIMESTAMPS]
    got = model.generate(feats, language="en", max_new_tokens=5, jit_compile=False).numpy()
    ref = torch_greedy(whisper_torch, feats, np.array([[SOT, EN, TRANSCRIBE, NO_TIMESTAMPS]]), 5)
    np.testing.assert_array_equal(got, ref)


def test_input_features_are_validated(whisper_model, rng):
    with pytest.raises(ValueError, match=r"input_features has shape \(1, 80, 3000\).*\[batch, 80, 128\]"):
        whisper_model.generate(np.zeros([1, 80, 3000], np.float32), max_new_tokens=2)
    with pytest.raises(ValueError, match="input_features has shape"):
        whisper_model.generate(np.zeros([1, 128, 128], np.float32), max_new_tokens=2)
    with pytest.raises(ValueError, match="input_features must be 3-D"):
        whisper_model.generate(np.zeros([80, 128], np.float32), max_new_tokens=2)
    with pytest.raises(TypeError, match="input_features must hold floating-point"):
        whisper_model.generate(np.zeros([1, 80, 128], np.int32), max_new_tokens=2)
    with pytest.raises(ValueError, match="NaN"):
        whisper_model.generate(np.full([1, 80, 128], np.nan, np.float32), max_new_tokens=2)
    with pytest.raises(ValueError, match="needs input_features"):
        whisper_model.generate(max_new_tokens=2)
    with pytest.raises(ValueError, match="exceeds the model's 40 positions"):
        whisper_model.generate(features(rng, 1), max_new_tokens=40)
    with pytest.raises(ValueError, match="input_features has shape"):
        whisper_model(np.zeros([1, 80, 100], np.float32), decoder_input_ids=np.zeros([1, 2], np.int32))


def test_tf_h5_fixture_loads_and_matches(rng):
    model = TFWhisperForConditionalGeneration.from_pretrained(H5_FIXTURE)
    h5_dir_only = {k: v for k, v in model.state_dict().items()}
    pt = transformers.WhisperForConditionalGeneration.from_pretrained(H5_FIXTURE).eval()
    for name, value in pt.state_dict().items():
        if name in h5_dir_only:
            np.testing.assert_array_equal(h5_dir_only[name], value.numpy(), err_msg=name)
    feats = features(rng, 1)
    ids = np.array([[3, 5, 9, 11]])
    assert (
        np.abs(model(feats, decoder_input_ids=ids).logits.numpy() - torch_logits(pt, feats, ids)).max()
        <= 1e-4
    )


def test_tf_h5_only_directory(tmp_path, rng):
    for name in ("config.json", "generation_config.json", "tf_model.h5"):
        (tmp_path / name).write_bytes((H5_FIXTURE / name).read_bytes())
    model = xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    ref = TFWhisperForConditionalGeneration.from_pretrained(H5_FIXTURE)
    feats, ids = features(rng, 1), np.array([[3, 4]])
    np.testing.assert_array_equal(
        model(feats, decoder_input_ids=ids).logits, ref(feats, decoder_input_ids=ids).logits
    )


def test_save_pretrained_round_trip_and_128_mels(tmp_path, rng):
    pt = write_whisper(tmp_path / "src", seed=1, num_mel_bins=128, decoder_layers=1)
    model = TFWhisperForConditionalGeneration.from_pretrained(tmp_path / "src")
    assert model.config.num_mel_bins == 128
    model.save_pretrained(tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "whisper"
    back = transformers.WhisperForConditionalGeneration.from_pretrained(tmp_path / "out").eval()
    feats, ids = features(rng, 1, mels=128), np.array([[SOT, 5, 6]])
    np.testing.assert_allclose(torch_logits(back, feats, ids), torch_logits(pt, feats, ids), atol=1e-6)
    assert (
        np.abs(model(feats, decoder_input_ids=ids).logits.numpy() - torch_logits(pt, feats, ids)).max()
        <= 1e-4
    )


def test_sharded_safetensors(tmp_path, whisper_torch, rng):
    whisper_torch.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    model = TFWhisperForConditionalGeneration.from_pretrained(tmp_path)
    feats, ids = features(rng, 1), np.array([[SOT, 9]])
    ref = torch_logits(whisper_torch, feats, ids)
    assert np.abs(model(feats, decoder_input_ids=ids).logits.numpy() - ref).max() <= 1e-4


def test_config_validation():
    with pytest.raises(ValueError, match="d_model"):
        xlagen.WhisperConfig(d_model=30, encoder_attention_heads=4)
    with pytest.raises(ValueError, match="num_mel_bins"):
        xlagen.WhisperConfig(num_mel_bins=0)
    assert xlagen.WhisperConfig().num_frames == 3000
    assert (
        xlagen.WhisperConfig(hidden_size=64, encoder_attention_heads=4, decoder_attention_heads=8).d_model
        == 64
    )
