"""Probes of the slot engine (``xlagen.generation.slots``) on GPT-2 124M-shape random weights.

    .venv/bin/python -m benchmarks.slot_probe [--slots 8] [--rounds 2]

1. *In place*: ms per decode call for the same work (same window, same slots) with a cache of 256
   and of 1024 token slots per row. If a call copied the cache, the 1024 one would move 4x the
   bytes (GPT-2 124M, 8 slots: 302 MB vs 75 MB of keys/values).
2. *Steps per call*: ms per token at full slots for ``steps_per_call`` 1, 2, 4, 8 (what the
   server's default was chosen from), next to ``generate`` at the same batch (its while loop never
   returns to Python).
Systems alternate within each round; medians per round are printed, the machine drifts.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=32, help="tokens per measurement")
    args = parser.parse_args(argv)

    import xlagen
    from xlagen.generation.slots import SlotEngine, SlotRequest

    config = xlagen.GPT2Config(
        vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, eos_token_id=50256
    )
    model = xlagen.TFGPT2LMHeadModel(config)
    s = args.slots
    rng = np.random.default_rng(0)
    prompts = rng.integers(0, 50000, [s, 20]).tolist()
    active = np.ones(s, bool)

    def engine(length: int, k: int) -> SlotEngine:
        return SlotEngine(
            model,
            slots=s,
            max_length=length,
            steps_per_call=k,
            prompt_buckets=(32,),
            prefill_batch_sizes=(s,),
        )

    def per_token(eng: SlotEngine) -> float:
        eng.insert(
            [SlotRequest(i, prompts[i], {"max_new_tokens": 10_000, "ignore_eos": True}) for i in range(s)]
        )
        eng.step(active)
        start, n = time.perf_counter(), 0
        while n < args.tokens:
            n += int(eng.step(active).counts.max())
        return (time.perf_counter() - start) / n * 1000

    def generate_per_token() -> float:
        ids = np.asarray(prompts)

        def run(n):
            t = time.perf_counter()
            model.generate(ids, max_new_tokens=n, min_new_tokens=n)
            return time.perf_counter() - t

        return (run(args.tokens + 2) - run(2)) / args.tokens * 1000

    systems = {
        "cache 256 slots, k=4": engine(256, 4),
        "cache 1024 slots, k=4": engine(1024, 4),
        **{f"cache 256 slots, k={k}": engine(256, k) for k in (1, 2, 8)},
    }
    for eng in systems.values():  # compile
        per_token(eng)
    generate_per_token()
    for r in range(args.rounds):
        order = list(systems.items()) if r % 2 == 0 else list(reversed(systems.items()))
        row = {name: per_token(eng) for name, eng in order}
        row[f"generate batch {s}"] = generate_per_token()
        print(f"round {r + 1}: " + " | ".join(f"{k}: {v:.1f} ms/token" for k, v in row.items()), flush=True)


if __name__ == "__main__":
    main()
