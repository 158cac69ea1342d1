"""How close is xlagen's decode step to the cost of its weight products alone?

    .venv/bin/python -m benchmarks.step_probe [--model gpt2] [--batch 1] [--model-dir DIR] [--rounds 5]

In one process, alternating, it times

* the probe: only the decode step's weight products (for GPT-2 124M: 12 layers x [QKV 768->2304,
  attention out 768->768, MLP in 768->3072, MLP out 3072->768] + the LM head 768->50257: 49
  products; OPT-125m 73, T5-small's decoder 49), weights stored ``[out, in]`` as the models hold
  them, ``x @ W.T`` at ``--batch`` rows,
  chained (each product's input is the previous one's output) in one XLA-compiled
  ``tf.while_loop`` of ``--passes`` passes: ms per pass (``--bias``: with a bias add after each
  layer product, as the models have);
* xlagen's ``generate`` (greedy, the suite's prompt) on the suite's random checkpoint (written by
  ``benchmarks.checkpoints`` when missing): ms per decode step = (time at ``--new-tokens`` -
  time at 2 new tokens) / (new tokens - 2), as ``harness.measure_generation`` computes it,

and prints the medians and their ratio. The difference is what the step spends besides reading
weights: attention, the cache update, layer norms, the token choice, the loop's bookkeeping.
Set ``XLAGEN_XLA_CACHE=0`` when comparing XLA flags (the persistent cache does not key on them).
On a machine shared with other work the probe swings most (its products use every core): compare
rounds, not runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

# Per model: (d_model, [(out, in) of one layer's products, in order], layers, (vocab, d) LM head).
# A product whose output is wider than the next one's input (GPT-2's fused QKV) is summed in chunks.
PRODUCTS = {
    "gpt2": (768, [(2304, 768), (768, 768), (3072, 768), (768, 3072)], 12, (50257, 768)),
    "opt": (768, [(768, 768)] * 4 + [(3072, 768), (768, 3072)], 12, (50272, 768)),
    # T5-small's decoder: self q, k, v, o; cross q, o (cross keys/values are cached); wi, wo.
    "t5": (512, [(512, 512)] * 6 + [(2048, 512), (512, 2048)], 6, (32128, 512)),
}


def build_probe(
    model: str, batch: int, passes: int, bias: bool = False, split: int = 1, barrier: bool = False
):
    """A function ``run() -> seconds per pass`` for the weight products of ``model`` alone.

    ``bias`` adds a bias to each layer product, as the models do (at one row XLA CPU then fuses
    the add into the matrix-vector product and emits it itself instead of calling Eigen);
    ``barrier`` puts an XLA optimization barrier between product and add (no fusion);
    ``split`` stores each layer weight as that many row blocks (separate variables, independent
    products whose outputs are concatenated)."""
    import numpy as np
    import tensorflow as tf
    from tensorflow.compiler.tf2xla.python.xla import optimization_barrier

    d, layer, layers, head = PRODUCTS[model]
    rng = np.random.default_rng(0)

    def weight(out_dim, in_dim):  # scaled so activations neither vanish nor blow up over passes
        w = rng.standard_normal((out_dim, in_dim), dtype=np.float32) / np.float32(np.sqrt(in_dim))
        return tf.Variable(w, trainable=False)

    shapes = [(o, i) for _ in range(layers) for o, i in layer]
    chain = [[weight(o // split, i) for _ in range(split)] for o, i in shapes]
    biases = [tf.Variable(tf.zeros([o]) + 0.01, trainable=False) if bias else None for o, _ in shapes]
    lm_head = weight(*head)
    x0 = tf.constant(rng.standard_normal((batch, d), dtype=np.float32))

    @tf.function(jit_compile=True, autograph=False)
    def run_passes(x):
        def body(i, x):
            h = x
            for n, (blocks, b) in enumerate(zip(chain, biases)):
                parts = [tf.matmul(h, w, transpose_b=True) for w in blocks]
                h = parts[0] if split == 1 else tf.concat(parts, axis=1)
                if b is not None:
                    h = (optimization_barrier(h)[0] if barrier else h) + b
                want = shapes[n + 1][1] if n + 1 < len(shapes) else d
                if h.shape[1] != want:  # fused QKV: fold the chunks (every output stays live)
                    h = tf.reduce_sum(tf.reshape(h, [batch, -1, want]), axis=1)
            logits = tf.matmul(h, lm_head, transpose_b=True)
            return i + 1, h + 1e-3 * tf.reduce_max(logits, axis=-1, keepdims=True)

        return tf.while_loop(lambda i, x: i < passes, body, (tf.constant(0), x))[1]

    def run() -> float:
        t0 = time.perf_counter()
        run_passes(x0).numpy()
        return (time.perf_counter() - t0) / passes

    run()  # compile
    return run


def build_generate(model: str, batch: int, model_dir: Path | None):
    """``call(new_tokens) -> (seconds, tokens generated per row, ids)`` for xlagen's greedy generate."""
    import numpy as np

    import xlagen
    from benchmarks.checkpoints import checkpoint_dir, make
    from benchmarks.workloads import generated_length, prompt_ids, workloads

    path = model_dir or checkpoint_dir(model, quick=False)
    if not (path / "meta.json").is_file():
        path = make(model, quick=False)
    meta = json.loads((path / "meta.json").read_text())
    w = next(w for w in workloads(quick=False) if w["model"] == model)
    seq2seq = model == "t5"
    cls = xlagen.TFAutoModelForSeq2SeqLM if seq2seq else xlagen.TFAutoModelForCausalLM
    net = cls.from_pretrained(str(path))
    ids = prompt_ids(batch, w["encoder_len"] if seq2seq else w["prompt_len"], meta["vocab_size"])
    mask = np.ones_like(ids)
    skip = 1 if seq2seq else ids.shape[1]

    def call(n: int):
        t0 = time.perf_counter()
        out = np.asarray(net.generate(ids, attention_mask=mask, max_new_tokens=n, do_sample=False))
        dt = time.perf_counter() - t0
        return dt, generated_length(out[:, skip:], meta["eos_token_ids"]), out

    return call, w["new_tokens"]


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="gpt2", choices=sorted(PRODUCTS))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--model-dir", type=Path, default=None, help="checkpoint (default: the suite's)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating probe / generate rounds")
    ap.add_argument("--passes", type=int, default=50, help="probe passes per timing")
    ap.add_argument("--new-tokens", type=int, default=0, help="default: the suite's (128)")
    ap.add_argument("--bias", action="store_true", help="probe: a bias add after each layer product")
    ap.add_argument("--tokens-out", default=None, help="write the generated ids here (.npy)")
    args = ap.parse_args(argv)

    from benchmarks.harness import cpu_load

    print(f"load {cpu_load():.1f}  XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}", flush=True)
    probe = build_probe(args.model, args.batch, args.passes, bias=args.bias)
    call, suite_new = build_generate(args.model, args.batch, args.model_dir)
    new = args.new_tokens or suite_new
    for n in (new, 2):  # trace and compile both lengths' programs
        call(n)
    probe_s, long_s, short_s = [], [], []
    out = None
    for r in range(args.rounds):
        probe_s.append(probe())
        dt, produced, out = call(new)
        if produced != new:
            print(f"warning: generated {produced} tokens per row, expected {new}")
        long_s.append(dt)
        short_s.append(call(2)[0])
        step = (long_s[-1] - short_s[-1]) / (new - 2)
        print(
            f"round {r}: probe {1e3 * probe_s[-1]:6.2f} ms/pass  step {1e3 * step:6.2f} ms  "
            f"ratio {step / probe_s[-1]:.3f}",
            flush=True,
        )
    p = statistics.median(probe_s)
    s = (statistics.median(long_s) - statistics.median(short_s)) / (new - 2)
    best_s = (min(long_s) - min(short_s)) / (new - 2)
    print(
        f"{args.model} batch {args.batch}: probe {1e3 * p:.2f} ms/pass, decode step {1e3 * s:.2f} ms "
        f"(medians of {args.rounds}), step/probe {s / p:.3f}; fastest: probe {1e3 * min(probe_s):.2f}, "
        f"step {1e3 * best_s:.2f}, {best_s / min(probe_s):.3f}  load {cpu_load():.1f}"
    )
    if args.tokens_out:
        import numpy as np

        np.save(args.tokens_out, out)


if __name__ == "__main__":
    main(sys.argv[1:])
