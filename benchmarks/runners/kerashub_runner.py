"""keras-hub 0.32 (Keras 3, TensorFlow backend): ``GPT2CausalLM`` / ``OPTCausalLM`` / ``LlamaCausalLM``
``.generate``, compiled as keras-hub does it: ``tf.function(generate_step, jit_compile=model.jit_compile)``. Keras resolves
``compile(jit_compile="auto")`` to False on a machine without accelerators, so variant "graph" is
what a user gets by default on CPU and variant "xla" passes ``jit_compile=True``.

keras-hub loads its own preset format only, so the model is built from a preset-free backbone
config of the same shape with random weights; no preprocessor: ``generate`` takes token ids padded
to prompt + new tokens with a padding mask over the prompt, and ``stop_token_ids=None`` runs every step.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from benchmarks import harness
from benchmarks.workloads import prompt_ids

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def build(model: str, cfg: dict):
    import keras_hub

    if model == "gpt2":
        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=cfg["vocab_size"],
            num_layers=cfg["n_layer"],
            num_heads=cfg["n_head"],
            hidden_dim=cfg["n_embd"],
            intermediate_dim=4 * cfg["n_embd"],
            max_sequence_length=cfg["n_positions"],
        )
        return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    if model == "opt":
        backbone = keras_hub.models.OPTBackbone(
            vocabulary_size=cfg["vocab_size"],
            num_layers=cfg["num_hidden_layers"],
            num_heads=cfg["num_attention_heads"],
            hidden_dim=cfg["hidden_size"],
            intermediate_dim=cfg["ffn_dim"],
            max_sequence_length=cfg["max_position_embeddings"],
        )
        return keras_hub.models.OPTCausalLM(backbone=backbone, preprocessor=None)
    if model == "llama":
        rope = cfg.get("rope_parameters") or {}  # Transformers 5; 4.x wrote a top-level rope_theta
        backbone = keras_hub.models.LlamaBackbone(
            vocabulary_size=cfg["vocab_size"],
            num_layers=cfg["num_hidden_layers"],
            num_query_heads=cfg["num_attention_heads"],
            num_key_value_heads=cfg["num_key_value_heads"],
            hidden_dim=cfg["hidden_size"],
            intermediate_dim=cfg["intermediate_size"],
            rope_max_wavelength=rope.get("rope_theta", cfg.get("rope_theta", 10000.0)),
            layer_norm_epsilon=cfg["rms_norm_eps"],
            tie_word_embeddings=cfg["tie_word_embeddings"],
        )
        return keras_hub.models.LlamaCausalLM(backbone=backbone, preprocessor=None)
    raise ValueError(f"keras-hub runner has no {model}")


def run(spec: dict) -> dict:
    import keras_hub

    w = spec["workload"]
    ckpt = Path(spec["checkpoint"])
    meta = json.loads((ckpt / "meta.json").read_text())
    cfg = json.loads((ckpt / "config.json").read_text())
    t0 = time.perf_counter()
    lm = build(w["model"], cfg)
    beams = int(w["num_beams"])
    sampler = keras_hub.samplers.BeamSampler(num_beams=beams) if beams > 1 else "greedy"
    lm.compile(sampler=sampler, jit_compile=spec["variant"] == "xla" or "auto")
    load_s = time.perf_counter() - t0
    p = w["prompt_len"]
    ids = prompt_ids(w["batch"], p, meta["vocab_size"])

    def call(n: int) -> int:
        token_ids = np.zeros([w["batch"], p + n], np.int32)
        token_ids[:, :p] = ids
        padding_mask = np.zeros([w["batch"], p + n], bool)
        padding_mask[:, :p] = True
        out = lm.generate({"token_ids": token_ids, "padding_mask": padding_mask}, stop_token_ids=None)
        return int(np.asarray(out["token_ids"]).shape[1]) - p

    rec = harness.measure_generation(call, spec)
    rec.update(
        load_s=load_s,
        jit_compile=bool(getattr(lm, "jit_compile", None)),
        parameters=int(lm.count_params()),
        versions=harness.versions("keras_hub", "keras", "tensorflow"),
    )
    return rec


if __name__ == "__main__":
    harness.main(run)
