"""Does TensorFlow's persistent XLA cache cut xlagen's first call, and when is the flag read?

    .venv/bin/python -m benchmarks.xla_cache_probe [--quick] [--model DIR] [--batch 1] [--new 128]

Each case is a fresh process that loads the model and times its first ``generate`` (trace +
compile + run), with ``TF_XLA_FLAGS=--tf_xla_persistent_cache_directory=DIR`` set:

* ``cold``               no flag;
* ``fill``               before ``import tensorflow``, empty DIR (compiles, writes the cache);
* ``warm``               before ``import tensorflow``, the DIR ``fill`` wrote;
* ``after-import``       in ``os.environ`` after ``import tensorflow``, before any compile, warm DIR;
* ``after-import-empty`` same, empty DIR: does TensorFlow write to it?
* ``after-load``         after the model loaded (eager ops ran), before ``generate``, empty DIR;
* ``after-graph``        after a first (tiny) non-XLA ``tf.function`` ran, empty DIR;
* ``after-compile``      after a first (tiny) XLA compile in the process, empty DIR.

Prints one line per case and writes benchmarks/results/tmp/xla_cache_probe.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, os, sys, time
case, cache_dir, model_dir, batch, new = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
flag = f"--tf_xla_persistent_cache_directory={cache_dir}"
if case in ("fill", "warm"):
    os.environ["TF_XLA_FLAGS"] = flag
import numpy as np
import tensorflow as tf
if case in ("after-import", "after-import-empty"):
    os.environ["TF_XLA_FLAGS"] = flag
if case == "after-compile":
    tf.function(lambda x: x * 2 + 1, jit_compile=True)(tf.ones([3]))
    os.environ["TF_XLA_FLAGS"] = flag
if case == "after-graph":
    tf.function(lambda x: x * 2 + 1)(tf.ones([3]))
    os.environ["TF_XLA_FLAGS"] = flag
import xlagen
model = xlagen.TFAutoModelForCausalLM.from_pretrained(model_dir)
if case == "after-load":  # eager ops (variable creation, weight assignment) ran: where a library hook sits
    os.environ["TF_XLA_FLAGS"] = flag
ids = np.random.default_rng(0).integers(10, model.config.vocab_size - 10, (batch, 32)).astype(np.int32)
t0 = time.perf_counter()
model.generate(ids, max_new_tokens=new, do_sample=False)
first = time.perf_counter() - t0
t0 = time.perf_counter()
model.generate(ids, max_new_tokens=new, do_sample=False)
warm = time.perf_counter() - t0
print("RESULT", json.dumps({"first_call_s": first, "second_call_s": warm,
                            "compilations": model.generation_stats()["compilations"]}))
"""


def _files(d: Path) -> int:
    return sum(1 for p in d.rglob("*") if p.is_file()) if d.exists() else 0


def main(argv: list[str]) -> None:
    import argparse

    from benchmarks.checkpoints import checkpoint_dir

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model", type=Path)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=1, help="run the warm-cache cases this many times")
    args = ap.parse_args(argv)
    model = args.model or checkpoint_dir("gpt2", args.quick)
    if not (model / "config.json").is_file():
        sys.exit(
            f"{model}: no checkpoint (python -m benchmarks.checkpoints{' --quick' if args.quick else ''})"
        )
    env = {k: v for k, v in os.environ.items() if k != "TF_XLA_FLAGS"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        filled = Path(tmp, "filled")
        cases = [
            ("cold", Path(tmp, "unused")),
            ("fill", filled),
            *[("warm", filled), ("after-import", filled)] * args.repeat,
            ("after-import-empty", Path(tmp, "empty1")),
            ("after-load", Path(tmp, "empty2")),
            ("after-graph", Path(tmp, "empty3")),
            ("after-compile", Path(tmp, "empty4")),
        ]
        for case, d in cases:
            before = _files(d)
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, case, str(d), str(model), str(args.batch), str(args.new)],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
            )
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(case, "failed:", proc.stderr[-1500:])
                continue
            rec = {
                "case": case,
                **json.loads(line[7:]),
                "process_s": time.perf_counter() - t0,
                "cache_files_before": before,
                "cache_files_after": _files(d),
                "load_avg": os.getloadavg()[0],
            }
            out.append(rec)
            print(
                f"{case:<20} first call {rec['first_call_s']:6.2f} s, second {rec['second_call_s']:6.2f} s, "
                f"cache files {before} -> {rec['cache_files_after']}, load {rec['load_avg']:.1f}",
                flush=True,
            )
    dest = REPO / "benchmarks" / "results" / "tmp" / "xla_cache_probe.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(
        json.dumps({"model": str(model), "batch": args.batch, "new": args.new, "cases": out}, indent=1)
    )


if __name__ == "__main__":
    main(sys.argv[1:])
