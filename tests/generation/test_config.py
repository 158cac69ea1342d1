"""GenerationConfig: loaded from generation_config.json, overridable per call, validated up front."""

from __future__ import annotations

import json

import numpy as np
import pytest

import xlagen
from xlagen import GenerationConfig


def test_generation_config_json_is_the_default(tmp_path, gpt2_torch, gpt2_model):
    gpt2_torch.save_pretrained(tmp_path)
    (tmp_path / "generation_config.json").write_text(
        json.dumps({"max_new_tokens": 7, "eos_token_id": None, "no_repeat_ngram_size": 2, "pad_token_id": 0})
    )
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path)
    assert model.generation_config.max_new_tokens == 7
    ids = np.array([[5, 6, 7]])
    assert model.generate(ids).shape == (1, 10)
    assert model.generate(ids, max_new_tokens=3).shape == (1, 6)  # per-call override
    own = GenerationConfig(max_new_tokens=2, eos_token_id=None)
    assert model.generate(ids, generation_config=own).shape == (1, 5)
    model.save_pretrained(tmp_path / "saved")
    assert GenerationConfig.from_pretrained(tmp_path / "saved").max_new_tokens == 7


def test_unknown_option_and_bad_json_are_named(tmp_path, gpt2_model):
    with pytest.raises(ValueError, match="num_beam"):
        gpt2_model.generate(np.array([[5]]), num_beam=2)
    (tmp_path / "generation_config.json").write_text("{not json")
    with pytest.raises(OSError, match="generation_config.json"):
        GenerationConfig.from_pretrained(tmp_path)


def test_warmup_precompiles_buckets(gpt2_dir):
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(gpt2_dir)
    model.warmup(batch_sizes=(1, 3), prompt_lengths=(10,), max_new_tokens=8)
    assert model.generation_stats()["compilations"] == 2
    model.generate(np.array([[5, 6, 7, 8]]), max_new_tokens=5)  # batch 1, prompt bucket 16, new bucket 16
    model.generate(np.ones([4, 12], np.int64), max_new_tokens=8)  # batch bucket 4 == warmed-up 3
    assert model.generation_stats()["compilations"] == 2
