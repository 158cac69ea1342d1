"""A later process reuses the traced programs of an earlier one (xlagen.generation.programs' trace
store), and gets the same tokens; a damaged entry or XLAGEN_TRACE_STORE=0 means tracing again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, numpy as np, keras, xlagen
keras.utils.set_random_seed(int(__import__("os").environ["SEED"]))
model = xlagen.TFGPT2LMHeadModel(xlagen.GPT2Config(n_embd=16, n_layer=2, n_head=2, n_positions=64, vocab_size=50))
greedy = model.generate(np.array([[1, 2, 3]]), max_new_tokens=5, do_sample=False)
sampled = model.generate(np.array([[4, 5], [6, 7]]), max_new_tokens=4, do_sample=True, top_k=5, seed=[1, 2])
stats = model.generation_stats()
print(json.dumps({"tokens": [np.asarray(greedy).tolist(), np.asarray(sampled).tolist()],
                  "traced": stats["traced"], "loaded": stats["loaded_traces"], "compilations": stats["compilations"]}))
"""


def run_child(cache: Path, seed: int = 0, code: str = CHILD, **env_updates: str) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_XLA_FLAGS", "XLAGEN_TRACE_STORE")}
    env.update(XLAGEN_XLA_CACHE=str(cache), SEED=str(seed), **env_updates)
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=root
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def xla_entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.glob("xla_compile_cache*") if p.is_file())


def test_a_later_process_loads_the_traces_and_the_compiled_programs(tmp_path):
    cache = tmp_path / "xla"
    first, _ = run_child(cache)
    assert first["traced"] == 2 and first["loaded"] == 0 and first["compilations"] == 2
    traces = sorted((cache / "traces").glob("*.trace"))
    assert len(traces) == 2
    compiled = xla_entries(cache)
    assert len(compiled) == 2
    # other weights (the store holds graphs, not weights), same config: the stored traces serve it
    second, _ = run_child(cache, seed=1)
    assert second["traced"] == 0 and second["loaded"] == 2 and second["compilations"] == 2
    assert xla_entries(cache) == compiled, "the compiled programs should come from the XLA cache"
    third, _ = run_child(cache, seed=1, XLAGEN_TRACE_STORE="0")
    assert third["traced"] == 2 and third["loaded"] == 0
    assert third["tokens"] == second["tokens"]  # the loaded programs compute what tracing computes
    assert second["tokens"] != first["tokens"]


def test_a_damaged_entry_is_traced_again(tmp_path):
    cache = tmp_path / "xla"
    first, _ = run_child(cache)
    for path in (cache / "traces").glob("*.trace"):
        path.write_bytes(path.read_bytes()[:100])
    again, _ = run_child(cache)
    assert again["traced"] == 2 and again["loaded"] == 0
    assert again["tokens"] == first["tokens"]
    third, _ = run_child(cache)  # rewritten by the second process
    assert third["loaded"] == 2 and third["tokens"] == first["tokens"]


ENGINE_CHILD = r"""
import json, numpy as np, keras, xlagen
from xlagen.generation.slots import SlotEngine, SlotRequest
keras.utils.set_random_seed(0)
model = xlagen.TFGPT2LMHeadModel(xlagen.GPT2Config(n_embd=16, n_layer=2, n_head=2, n_positions=64, vocab_size=50))
engine = SlotEngine(model, slots=2, max_length=32, prompt_buckets=(8,), prefill_batch_sizes=(1,), steps_per_call=2)
first = engine.insert([SlotRequest(1, [5, 6, 7], {"max_new_tokens": 6, "do_sample": True, "seed": 3})])
tokens = [first.tokens.tolist()]
for _ in range(3):
    tokens.append(engine.step(np.array([False, True])).tokens.tolist())
p = engine._programs
print(json.dumps({"tokens": tokens, "traced": p.traced, "loaded": p.loaded}))
"""


def test_the_slot_engine_reuses_its_traces(tmp_path):
    cache = tmp_path / "xla"
    first, _ = run_child(cache, code=ENGINE_CHILD)
    assert first["traced"] == 2 and first["loaded"] == 0
    second, _ = run_child(cache, code=ENGINE_CHILD)
    assert second["traced"] == 0 and second["loaded"] == 2
    assert second["tokens"] == first["tokens"]


def test_a_program_called_inside_a_callers_tf_function_traces_into_it():
    import numpy as np
    import tensorflow as tf

    from xlagen.generation.programs import ProgramCache

    cache = ProgramCache()
    program = cache.get("double", lambda x: x * 2)

    @tf.function
    def outer(x):
        return program(x) + 1

    assert np.asarray(outer(tf.constant([1.0, 2.0]))).tolist() == [3.0, 5.0]
    assert np.asarray(program(np.array([1.0, 2.0], np.float32))).tolist() == [2.0, 4.0]
