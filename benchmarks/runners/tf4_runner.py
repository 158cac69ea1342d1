"""Transformers 4.57 TensorFlow models (tf-keras): eager ``generate`` and the seed's XLA recipe,
``tf.function(model.generate, jit_compile=True)``. Needs TF_USE_LEGACY_KERAS=1 (set by run.py)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from benchmarks import harness
from benchmarks.workloads import SEQ2SEQ, generated_length, prompt_ids

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def run(spec: dict) -> dict:
    import tensorflow as tf
    import transformers as tr

    w = spec["workload"]
    meta = json.loads((Path(spec["checkpoint"]) / "meta.json").read_text())
    seq2seq = w["model"] in SEQ2SEQ
    cls = tr.TFAutoModelForSeq2SeqLM if seq2seq else tr.TFAutoModelForCausalLM
    t0 = time.perf_counter()
    model = cls.from_pretrained(spec["checkpoint"], from_pt=True)
    load_s = time.perf_counter() - t0
    generate = model.generate
    if spec["variant"] == "xla":
        generate = tf.function(model.generate, jit_compile=True)
    length = w["encoder_len"] if seq2seq else w["prompt_len"]
    ids = tf.constant(prompt_ids(w["batch"], length, meta["vocab_size"]))
    mask = tf.ones_like(ids)
    skip = 1 if seq2seq else length

    def call(n: int) -> int:
        out = generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=n, num_beams=w["num_beams"], do_sample=False
        )
        return generated_length(out.numpy()[:, skip:], meta["eos_token_ids"])

    rec = harness.measure_generation(call, spec)
    rec.update(load_s=load_s, versions=harness.versions("transformers", "tensorflow", "tf_keras"))
    return rec


if __name__ == "__main__":
    harness.main(run)
