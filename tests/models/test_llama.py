"""Llama numerics and generation against Hugging Face Transformers (PyTorch) on the same random weights."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import torch
import transformers

import xlagen
from tests.conftest import left_padded_batch, perturb_norms_and_biases

NEW = 20
PAD = 0
TINY_LLAMA = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=96,
    pad_token_id=PAD,
    bos_token_id=1,
    eos_token_id=2,
    rms_norm_eps=1e-6,
)
# What changes the computation: GQA ratios 1 / 2 / 4, explicit head_dim, biases, tying, rope_theta.
VARIANTS = {
    "mha": {},
    "gqa2_tied": {"num_key_value_heads": 2, "tie_word_embeddings": True},
    "mqa_head_dim": {"num_key_value_heads": 1, "head_dim": 16, "rope_theta": 500000.0},
    "biases": {"attention_bias": True, "mlp_bias": True, "num_key_value_heads": 2},
    "rope_linear": {"rope_scaling": {"rope_type": "linear", "factor": 4.0}},
    "rope_llama3": {
        "head_dim": 32,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
    },
    # Dynamic NTK past max_position_embeddings (8): the prompts (up to 14 tokens) and every decode
    # step grow the rope base, from the longest position of each forward call, as Transformers does.
    # initializer_range 0.2 (here and in the YaRN variants): at 0.02 attention is nearly uniform and
    # the greedy tokens do not change even with the scaling left out.
    "rope_dynamic": {
        "initializer_range": 0.2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 8,
        "rope_scaling": {"rope_type": "dynamic", "factor": 2.0},
    },
    # YaRN with prompts longer than original_max_position_embeddings; attention factor from the factor.
    "rope_yarn": {
        "initializer_range": 0.2,
        "head_dim": 16,
        "max_position_embeddings": 32,
        "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8},
    },
}


# The family on the same core: sliding windows shorter than the prompts (14 tokens), per-layer types.
FAMILY = {
    "mistral_window4": ("mistral", {"num_key_value_heads": 2, "sliding_window": 4}),
    "qwen2_window_layer1": (
        "qwen2",
        {"num_key_value_heads": 2, "use_sliding_window": True, "sliding_window": 5, "max_window_layers": 1},
    ),
    "qwen3_qk_norm": ("qwen3", {"num_key_value_heads": 1, "head_dim": 16, "tie_word_embeddings": True}),
    # Qwen2.5-style YaRN: untruncated ramp, own betas, attention factor from mscale / mscale_all_dim.
    "qwen2_yarn_mscale": (
        "qwen2",
        {
            "initializer_range": 0.2,
            "head_dim": 16,
            "rope_theta": 100.0,
            "max_position_embeddings": 32,
            "rope_scaling": {
                "rope_type": "yarn",
                "factor": 4.0,
                "original_max_position_embeddings": 8,
                "truncate": False,
                "beta_fast": 16,
                "beta_slow": 2,
                "mscale": 0.7,
                "mscale_all_dim": 0.3,
            },
        },
    ),
    "qwen3_window": (
        "qwen3",
        {"head_dim": 8, "use_sliding_window": True, "sliding_window": 3, "max_window_layers": 0},
    ),
}
CLASSES = {
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
    "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
    "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM),
}
XLAGEN_CLASSES = {
    "llama": "TFLlamaForCausalLM",
    "mistral": "TFMistralForCausalLM",
    "qwen2": "TFQwen2ForCausalLM",
    "qwen3": "TFQwen3ForCausalLM",
}


def write_llama(path, seed: int = 0, family: str = "llama", **overrides):
    """Save a random Llama-family model (PyTorch) to ``path``; return the eval-mode torch model."""
    config_class, model_class = CLASSES[family]
    config = config_class(**{**TINY_LLAMA, **overrides})
    torch.manual_seed(seed)
    model = model_class(config).eval()
    perturb_norms_and_biases(model, "norm")
    model.save_pretrained(path)
    return model


ALL = {**{k: ("llama", v) for k, v in VARIANTS.items()}, **FAMILY}


@pytest.fixture(scope="module", params=list(ALL), ids=list(ALL))
def llama(request, tmp_path_factory):
    family, overrides = ALL[request.param]
    path = tmp_path_factory.mktemp(f"llama_{request.param}")
    pt_model = write_llama(path, seed=len(request.param), family=family, **overrides)
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(path)
    assert type(model).__name__ == XLAGEN_CLASSES[family]
    return pt_model, model


def fresh_rope(pt_model) -> None:
    """Reset Transformers' dynamic-rope state (frequencies grown by an earlier, longer call) with
    the reset it does itself, a call shorter than max_position_embeddings: xlagen keeps no state
    between calls, so the reference must start from the config's frequencies too."""
    with torch.no_grad():
        pt_model(torch.tensor([[3]]))


def test_logits_match_on_left_padded_batch(llama):
    pt_model, model = llama
    fresh_rope(pt_model)
    ids, mask = left_padded_batch(np.random.default_rng(0), [3, 9, 14, 1], vocab=128, pad=PAD)
    positions = np.maximum(mask.cumsum(1) - 1, 0)
    with torch.no_grad():
        ref = pt_model(
            torch.tensor(ids), attention_mask=torch.tensor(mask), position_ids=torch.tensor(positions)
        ).logits.numpy()
    ours = model(tf.constant(ids), attention_mask=tf.constant(mask), position_ids=tf.constant(positions))
    diff = np.abs(ours.logits.numpy() - ref)[mask.astype(bool)].max()
    assert diff <= 1e-4, f"max abs logits difference {diff}"
    with torch.no_grad():  # no mask, no positions: 0..T-1 on both sides
        ref = pt_model(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(model(tf.constant(ids)).logits.numpy(), ref, atol=1e-4)


@pytest.mark.parametrize("num_beams", [1, 4])
def test_generation_matches_transformers_in_xla_and_eager(llama, num_beams):
    pt_model, model = llama
    ids, mask = left_padded_batch(np.random.default_rng(1), [3, 10, 7], vocab=128, pad=PAD)
    fresh_rope(pt_model)
    with torch.no_grad():
        reference = pt_model.generate(
            torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            max_new_tokens=NEW,
            do_sample=False,
            num_beams=num_beams,
            pad_token_id=PAD,
        ).numpy()
    for jit in (True, False):
        out = model.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=NEW,
            do_sample=False,
            num_beams=num_beams,
            jit_compile=jit,
        )
        np.testing.assert_array_equal(np.asarray(out), reference)


def test_unsupported_options_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"rope_scaling \(dynamic\) needs numbers for \['factor'\]"):
        xlagen.LlamaConfig(**TINY_LLAMA, rope_scaling={"rope_type": "dynamic"})
    with pytest.raises(ValueError, match="beta_fast"):
        xlagen.LlamaConfig(**TINY_LLAMA, rope_scaling={"rope_type": "yarn", "factor": 2.0, "beta_fast": "x"})
    with pytest.raises(ValueError, match="truncate"):
        xlagen.LlamaConfig(**TINY_LLAMA, rope_scaling={"rope_type": "yarn", "factor": 2.0, "truncate": 1})
    # Transformers 5's layout: rope_parameters
    transformers.LlamaConfig(
        **TINY_LLAMA,
        rope_scaling={"rope_type": "longrope", "short_factor": [1.0] * 4, "long_factor": [2.0] * 4},
    ).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'longrope' is not supported"):
        xlagen.AutoConfig.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="num_key_value_heads"):
        xlagen.LlamaConfig(**{**TINY_LLAMA, "num_key_value_heads": 3})


@pytest.fixture(scope="module")
def bf16_checkpoint(tmp_path_factory):
    """A Qwen3 checkpoint saved in bfloat16 (what these models ship as); the torch model in bfloat16."""
    path = tmp_path_factory.mktemp("llama_bf16")
    pt_model = write_llama(path, seed=5, family="qwen3", num_key_value_heads=2, head_dim=8)
    pt_model.to(torch.bfloat16).save_pretrained(path)
    return path, pt_model


def test_half_precision_checkpoint_runs_in_float32_by_default(bf16_checkpoint, tmp_path):
    path, pt_model = bf16_checkpoint
    ids, mask = left_padded_batch(np.random.default_rng(2), [4, 9], vocab=128, pad=PAD)
    positions = np.maximum(mask.cumsum(1) - 1, 0)
    reference = [copy.deepcopy(pt_model).float()]
    pt_model.to(torch.float16).save_pretrained(tmp_path)  # float16 files too
    reference.append(copy.deepcopy(pt_model).float())
    pt_model.to(torch.bfloat16)
    for directory, ref_model in zip((path, tmp_path), reference):
        model = xlagen.TFAutoModelForCausalLM.from_pretrained(directory)
        assert {v.dtype for v in model.weights} == {"float32"}
        with torch.no_grad():
            ref = ref_model(
                torch.tensor(ids), attention_mask=torch.tensor(mask), position_ids=torch.tensor(positions)
            ).logits.numpy()
        ours = model(tf.constant(ids), attention_mask=tf.constant(mask), position_ids=tf.constant(positions))
        assert np.abs(ours.logits.numpy() - ref)[mask.astype(bool)].max() <= 1e-4


def test_dtype_bfloat16_keeps_weights_in_bfloat16(bf16_checkpoint):
    path, pt_model = bf16_checkpoint
    for dtype in ("bfloat16", tf.bfloat16, "auto"):  # auto: the config's dtype (bfloat16 here)
        model = xlagen.TFAutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        assert {v.dtype for v in model.weights} == {"bfloat16"}
    ids, mask = left_padded_batch(np.random.default_rng(3), [4, 9], vocab=128, pad=PAD)
    positions = np.maximum(mask.cumsum(1) - 1, 0)
    with torch.no_grad():
        ref = pt_model(
            torch.tensor(ids), attention_mask=torch.tensor(mask), position_ids=torch.tensor(positions)
        ).logits.float()
    ours = model(tf.constant(ids), attention_mask=tf.constant(mask), position_ids=tf.constant(positions))
    assert ours.logits.dtype == tf.float32
    # bfloat16 rounding (8 bits of mantissa) in both, in different places: close, not equal
    assert np.abs(ours.logits.numpy() - ref.numpy())[mask.astype(bool)].max() <= 0.02
    out = np.asarray(model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False))
    assert out.shape == (2, 13)
    with pytest.raises(ValueError, match="dtype='float16' is not supported"):
        xlagen.TFAutoModelForCausalLM.from_pretrained(path, dtype="float16")
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(path, torch_dtype="float32")  # the old name
    assert {v.dtype for v in model.weights} == {"float32"}


def test_mistral_tf_model_h5_from_transformers_4_loads(tmp_path):
    """Transformers 4.57's TFMistralForCausalLM wrote tf_model.h5 (scripts/make_tf_h5_fixtures.py):
    xlagen loads it alone with the logits and greedy tokens of Transformers 5 on the same weights."""
    fixture = Path(__file__).resolve().parent.parent / "fixtures" / "tf_h5" / "mistral"
    for name in ("config.json", "tf_model.h5"):
        shutil.copy(fixture / name, tmp_path / name)
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(model).__name__ == "TFMistralForCausalLM"
    pt_model = transformers.MistralForCausalLM.from_pretrained(fixture).eval()
    ids, mask = left_padded_batch(np.random.default_rng(4), [7, 2, 11], vocab=128, pad=PAD)
    positions = np.maximum(mask.cumsum(1) - 1, 0)
    with torch.no_grad():
        ref = pt_model(
            torch.tensor(ids), attention_mask=torch.tensor(mask), position_ids=torch.tensor(positions)
        ).logits.numpy()
        tokens = pt_model.generate(
            torch.tensor(ids), attention_mask=torch.tensor(mask), max_new_tokens=8, do_sample=False
        ).numpy()
    ours = model(tf.constant(ids), attention_mask=tf.constant(mask), position_ids=tf.constant(positions))
    assert np.abs(ours.logits.numpy() - ref)[mask.astype(bool)].max() <= 1e-4
    out = model.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False)
    np.testing.assert_array_equal(np.asarray(out), tokens)


def test_dynamic_rope_in_server_slots_matches_generate_alone(tmp_path):
    """The server's slots run unrelated requests side by side: each row grows its dynamic NTK
    frequencies from its own length, so a request decodes as ``generate`` on it alone would."""
    from tests.generation.test_slots import drive, reference
    from xlagen.generation.slots import SlotEngine

    write_llama(tmp_path, seed=9, **VARIANTS["rope_dynamic"])
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path)
    engine = SlotEngine(model, slots=3, max_length=40, steps_per_call=3, prompt_buckets=(8, 16))
    rng = np.random.default_rng(5)
    jobs = [(rng.integers(3, 128, n).tolist(), {"max_new_tokens": 12}) for n in (3, 14, 9, 6)]
    for (prompt, options), tokens in zip(jobs, drive(engine, jobs, per_insert=1)):
        want = reference(model, prompt, options)
        assert tokens == want[: len(tokens)], prompt
