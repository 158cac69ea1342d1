"""This machine's memory read bandwidth and GEMM throughput, measured with NumPy.

    python -m benchmarks.bandwidth [--quick]

Read bandwidth: a float32 matrix-vector product over a matrix far larger than the caches (what a
batch-1 decode step does with every weight matrix); each product reads the matrix once. GEMM: a
large square float32 matrix product (the compute ceiling for large batches).
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np


def _times(fn, runs: int) -> tuple[float, float]:
    """(best, median) seconds of ``runs`` calls after a warm-up. The best is what the hardware can
    do; the median shows how much other load there was."""
    fn()  # warm-up: page in, pick kernels
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def read_bandwidth(mib: int = 512, runs: int = 15) -> dict:
    n = 8192
    rows = max(1, mib * 2**20 // (n * 4))
    a = np.random.default_rng(0).standard_normal((rows, n), dtype=np.float32)
    x = np.ones(n, np.float32)
    best, median = _times(lambda: a @ x, runs)
    return {
        "matrix_mib": a.nbytes / 2**20,
        "best_s": best,
        "median_s": median,
        "gb_per_s": a.nbytes / best / 1e9,
        "gb_per_s_median": a.nbytes / median / 1e9,
    }


def gemm_gflops(n: int = 2048, runs: int = 5) -> dict:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    best, median = _times(lambda: a @ b, runs)
    return {"n": n, "best_s": best, "median_s": median, "gflop_per_s": 2 * n**3 / best / 1e9}


def measure(quick: bool = False) -> dict:
    bw = read_bandwidth(128 if quick else 512, 5 if quick else 15)
    mm = gemm_gflops(1024 if quick else 2048, 3 if quick else 5)
    return {"read_gb_per_s": bw["gb_per_s"], "gemm_gflop_per_s": mm["gflop_per_s"], "read": bw, "gemm": mm}


if __name__ == "__main__":
    print(json.dumps(measure("--quick" in sys.argv), indent=1))
