"""How fast does XLA CPU run the decode step's matrix products, by batch size?

    .venv/bin/python -m benchmarks.dot_probe [--rows 1,8,32] [--threads 1] [--xla-flags "--xla_cpu_use_xnnpack=true"]

For each GPT-2-small weight shape (QKV 768x2304, MLP 768x3072 and 3072x768, LM head 50257x768 used
transposed) and each row count M, times ``[M, K] @ W`` in NumPy, in TensorFlow eager, and inside
one XLA-compiled function, over enough distinct copies of W (128 MiB) that they stream from
memory as a model's layers do rather than from the last-level cache, and prints the effective weight read bandwidth (W bytes / time) and GFLOP/s. At small M
a decode step is bound by reading W, so the bandwidth should stay near NumPy's matrix-vector
figure whatever M is; where it falls, batching costs more per step than it should.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

SHAPES = {  # name: (K, N, transpose_b)
    "qkv 768x2304": (768, 2304, False),
    "mlp_in 768x3072": (768, 3072, False),
    "mlp_out 3072x768": (3072, 768, False),
    "lm_head 50257x768 (transposed)": (768, 50257, True),
}
COPIES_BYTES = 128 * 2**20  # > the 32 MiB L3 of these machines


def _best(fn, runs=7) -> tuple[float, float]:
    fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts), statistics.median(ts)


def probe(rows: list[int], threads: int = 0) -> list[dict]:
    import numpy as np
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)

    out = []
    rng = np.random.default_rng(0)
    for name, (k, n, tb) in SHAPES.items():
        one = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        # Enough distinct copies to overflow the last-level cache, as a model's 12 layers do.
        copies = max(1, -(-COPIES_BYTES // one.nbytes))
        ws = [one * (1 + 1e-3 * c) for c in range(copies)]
        wts = [tf.constant(w) for w in ws]
        wbytes = one.nbytes

        @tf.function(jit_compile=True)
        def xla_pass(x, wts=wts, tb=tb):
            acc = tf.zeros([x.shape[0], 1])
            for c, w in enumerate(wts):  # unrolled: one product per weight copy
                acc += tf.matmul(x + c * 1e-6, w, transpose_b=tb)[:, :1]
            return acc

        def np_pass(x, ws=ws, tb=tb):
            for w in ws:
                _ = x @ w.T if tb else x @ w

        def eager_pass(xt, wts=wts, tb=tb):
            for w in wts:
                _ = tf.matmul(xt, w, transpose_b=tb).numpy()

        for m in rows:
            x = rng.standard_normal((m, k), dtype=np.float32)
            xt = tf.constant(x)
            t_np, _ = _best(lambda x=x, f=np_pass: f(x))
            t_eager, _ = _best(lambda xt=xt, f=eager_pass: f(xt))
            t_xla, _ = _best(lambda xt=xt, f=xla_pass: f(xt).numpy())
            flops = 2 * m * k * n
            rec = {"shape": name, "rows": m, "weight_mib": wbytes / 2**20, "copies": copies}
            for label, t in (("numpy", t_np), ("tf_eager", t_eager), ("xla", t_xla)):
                t /= copies
                rec[f"{label}_ms"] = 1000 * t
                rec[f"{label}_gb_s"] = wbytes / t / 1e9
                rec[f"{label}_gflop_s"] = flops / t / 1e9
            out.append(rec)
            print(
                f"{name:<32} M={m:<3} numpy {rec['numpy_ms']:7.3f} ms ({rec['numpy_gb_s']:5.1f} GB/s)  "
                f"tf eager {rec['tf_eager_ms']:7.3f} ms ({rec['tf_eager_gb_s']:5.1f} GB/s)  "
                f"xla {rec['xla_ms']:7.3f} ms ({rec['xla_gb_s']:5.1f} GB/s, {rec['xla_gflop_s']:5.1f} GFLOP/s)",
                flush=True,
            )
    return out


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="1,8,32")
    ap.add_argument("--xla-flags", default=None, help="XLA_FLAGS for this run (set before TensorFlow loads)")
    ap.add_argument("--threads", type=int, default=0, help="TensorFlow intra-op threads (0: default)")
    ap.add_argument("--json", default=None, help="write the records here")
    args = ap.parse_args(argv)
    if args.xla_flags is not None:
        os.environ["XLA_FLAGS"] = args.xla_flags
    print(
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}  threads {args.threads or 'default'}  "
        f"load {os.getloadavg()[0]:.1f}"
    )
    recs = probe([int(r) for r in args.rows.split(",")], args.threads)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"xla_flags": os.environ.get("XLA_FLAGS", ""), "records": recs}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
