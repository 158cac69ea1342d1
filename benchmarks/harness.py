"""Timing harness shared by every runner (standard library + NumPy only: it runs in each peer's venv).

A runner is started as ``python -m benchmarks.runners.<family> SPEC.json OUT.json``, in its own
process (so peak RSS is that system's alone). It builds a ``call(max_new_tokens)`` closure for its
workload and hands it to :func:`measure_generation`, which returns the record written to OUT.json.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any


def peak_rss_mib() -> float:
    """This process's peak resident set size, in MiB.

    ``/proc/self/status`` VmHWM is the peak of this program's own address space. ``ru_maxrss`` is
    not: Linux carries the parent's RSS at fork over the exec, so every runner would report at least
    the orchestrator's size. It is the fallback off Linux (where it is in KiB too, except macOS)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def repeat(fn: Callable[[], Any], runs: int, min_runs: int, budget_s: float) -> tuple[list[float], Any]:
    """Warm runs of ``fn``: ``runs`` of them, or fewer (never under ``min_runs``) past ``budget_s``."""
    times: list[float] = []
    out = None
    while len(times) < runs:
        dt, out = _timed(fn)
        times.append(dt)
        if len(times) >= min_runs and sum(times) > budget_s:
            break
    return times, out


def cpu_load() -> float:
    """1-minute load average (other processes on the machine skew timings)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def measure_generation(
    call: Callable[[int], int],
    spec: dict[str, Any],
    *,
    prefill: bool = True,
) -> dict[str, Any]:
    """Time ``call(max_new_tokens) -> tokens generated per row`` for the spec's workload.

    * first call (trace + compile, or first-run warm-up) at the full length, timed on its own;
    * ``runs`` warm runs at the full length: the median gives tokens/s and ms per generated token;
    * when ``prefill``, the same at ``max_new_tokens=2`` (prefill and one decode step; 1 breaks
      Transformers 4.x TF's XLA generate): decode step = (full - short) / (new_tokens - 2), the
      cost of one step alone, prefill and per-call overhead removed.
    """
    w = spec["workload"]
    new = int(w["new_tokens"])
    rows = int(w["batch"])
    runs, min_runs, budget = int(spec["runs"]), int(spec["min_runs"]), float(spec["budget_s"])
    load_before = cpu_load()
    first_s, produced = _timed(lambda: call(new))
    times, produced_warm = repeat(lambda: call(new), runs, min_runs, budget)
    median = statistics.median(times)
    rec: dict[str, Any] = {
        "first_call_s": first_s,
        "warm_s": times,
        "median_s": median,
        "new_tokens": new,
        "tokens_generated": int(produced_warm),
        "tokens_per_s": rows * new / median,
        "ms_per_token": 1000.0 * median / new,
    }
    if produced_warm != new:
        rec["warning"] = f"generated {produced_warm} tokens per row, expected {new} (stopped early?)"
    short = 2
    if prefill and new > short:
        pre_first, _ = _timed(lambda: call(short))
        pre_times, _ = repeat(lambda: call(short), max(min_runs, 3), min_runs, budget / 4)
        pre = statistics.median(pre_times)
        rec.update(
            short_new_tokens=short,
            short_first_call_s=pre_first,
            short_s=pre,
            ms_per_step=1000.0 * max(median - pre, 0.0) / (new - short),
        )
    rec["load_avg_1m"] = [load_before, cpu_load()]
    return rec


def measure_transcription(
    transcribe: Callable[[], tuple[str, int]], spec: dict[str, Any], audio_seconds: float
) -> dict[str, Any]:
    """Time ``transcribe() -> (text, tokens)`` end to end (features, encoder, decoding, detokenizing)."""
    runs, min_runs, budget = int(spec["runs"]), int(spec["min_runs"]), float(spec["budget_s"])
    load_before = cpu_load()
    first_s, _ = _timed(transcribe)
    times, (text, tokens) = repeat(transcribe, runs, min_runs, budget)
    median = statistics.median(times)
    return {
        "first_call_s": first_s,
        "warm_s": times,
        "median_s": median,
        "audio_s": audio_seconds,
        "tokens_generated": int(tokens),
        "tokens_per_s": tokens / median,
        "realtime_factor": audio_seconds / median,
        "text": text,
        "load_avg_1m": [load_before, cpu_load()],
    }


def versions(*modules: str) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in modules:
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "?")
        except Exception as e:  # noqa: BLE001 - report, do not fail
            out[name] = f"unavailable ({type(e).__name__})"
    return out


def main(run: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Runner entry point: read SPEC.json, run, write OUT.json (with the error when it failed)."""
    spec_path, out_path = sys.argv[1], sys.argv[2]
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    result: dict[str, Any] = {"system": spec["system"], "workload": spec["workload"]["name"]}
    t0 = time.perf_counter()
    try:
        result.update(run(spec))
        result["ok"] = True
    except Exception as e:  # noqa: BLE001 - a failing system is a result, not a crash
        result["ok"] = False
        result["error"] = f"{type(e).__name__}: {e}"
        result["traceback"] = traceback.format_exc()[-4000:]
    result["peak_rss_mib"] = peak_rss_mib()
    result["process_s"] = time.perf_counter() - t0
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, default=str)
