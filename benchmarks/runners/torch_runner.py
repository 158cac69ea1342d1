"""Transformers 5 + PyTorch 2.13 (CPU): ``generate`` with the default dynamic cache, a static cache,
and a static cache with ``torch.compile`` (Transformers compiles the forward itself when given a
``CompileConfig``; on CPU only when asked to, through ``_compile_all_devices``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from benchmarks import harness
from benchmarks.workloads import SEQ2SEQ, generated_length, prompt_ids


def run(spec: dict) -> dict:
    import torch
    import transformers as tr

    w = spec["workload"]
    meta = json.loads((Path(spec["checkpoint"]) / "meta.json").read_text())
    seq2seq = w["model"] in SEQ2SEQ
    cls = tr.AutoModelForSeq2SeqLM if seq2seq else tr.AutoModelForCausalLM
    t0 = time.perf_counter()
    model = cls.from_pretrained(spec["checkpoint"], dtype=torch.float32).eval()
    load_s = time.perf_counter() - t0
    options: dict = {}
    if spec["variant"] in ("static", "static-compile"):
        options["cache_implementation"] = "static"
    if spec["variant"] == "static-compile":
        compile_config = tr.CompileConfig(mode="default")
        compile_config._compile_all_devices = True
        options["compile_config"] = compile_config
    else:
        options["disable_compile"] = True
    length = w["encoder_len"] if seq2seq else w["prompt_len"]
    ids = torch.from_numpy(prompt_ids(w["batch"], length, meta["vocab_size"]).astype(np.int64))
    mask = torch.ones_like(ids)
    skip = 1 if seq2seq else length

    def call(n: int) -> int:
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=n,
                num_beams=w["num_beams"],
                do_sample=False,
                **options,
            )
        return generated_length(out.numpy()[:, skip:], meta["eos_token_ids"])

    rec = harness.measure_generation(call, spec)
    rec.update(
        load_s=load_s,
        torch_threads=torch.get_num_threads(),
        versions=harness.versions("transformers", "torch"),
    )
    return rec


if __name__ == "__main__":
    harness.main(run)
