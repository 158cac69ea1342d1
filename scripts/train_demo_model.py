"""Train xlagen's demo model: a small GPT-2 on the King James Bible, with Keras fit + XLA.

The text comes from Debian's bible-kjv packages (public domain; `apt-get install bible-kjv`
provides the `bible` command that prints it), so nothing is downloaded at run time. The result
(tokenizer + fp16 safetensors, ~9 MB) goes to xlagen/assets/demo-gpt2-kjv, the CLI's default model.

    .venv/bin/python scripts/train_demo_model.py [--epochs 2] [--out xlagen/assets/demo-gpt2-kjv]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from safetensors.numpy import load_file, save_file
from tokenizers import ByteLevelBPETokenizer

import xlagen
from xlagen.tokenization import PreTrainedTokenizerFast

EOT = "<|endoftext|>"


def kjv_verses() -> list[str]:
    """Every verse of the KJV as plain text (the reference prefix such as 'Ge1:1 ' removed)."""
    try:
        out = subprocess.run(
            ["bible", "-f", "Gen 1:1-Rev 22:21"], capture_output=True, text=True, check=True
        ).stdout
    except FileNotFoundError:
        raise SystemExit("the `bible` command is missing: apt-get install bible-kjv") from None
    verses = [re.sub(r"^\S+?\d+:\d+\s+", "", line).strip() for line in out.splitlines()]
    return [v for v in verses if v]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("xlagen/assets/demo-gpt2-kjv"))
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)

    verses = kjv_verses()
    print(f"{len(verses)} verses, {sum(map(len, verses)) / 1e6:.1f} M characters")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(verses, vocab_size=args.vocab, min_frequency=2, special_tokens=[EOT])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token=EOT, eos_token=EOT, unk_token=EOT, model_max_length=256
    )
    eot = tokenizer.convert_tokens_to_ids(EOT)

    # One stream: verses separated by newlines, a chapter's worth of context per window.
    ids = np.asarray(tokenizer("\n".join(verses))["input_ids"], np.int32)
    n = (len(ids) - 1) // args.seq_len
    windows = ids[: n * args.seq_len].reshape(n, args.seq_len)
    print(f"{len(ids)} tokens -> {n} windows of {args.seq_len}")

    config = xlagen.GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=256,
        n_embd=256,
        n_layer=4,
        n_head=4,
        bos_token_id=eot,
        eos_token_id=eot,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = xlagen.TFGPT2LMHeadModel(config)
    steps = int(args.epochs * n / args.batch)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=steps, warmup_target=2e-3, warmup_steps=min(200, steps // 10), alpha=0.05
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.01, clipnorm=1.0), jit_compile=True
    )
    data = (
        tf.data.Dataset.from_tensor_slices(windows)
        .repeat()
        .shuffle(4096, seed=args.seed)
        .batch(args.batch, drop_remainder=True)
        .map(lambda w: ({"input_ids": w}, w))
    )
    start = time.time()
    epochs = 10
    model.fit(data, steps_per_epoch=max(1, steps // epochs), epochs=epochs, verbose=2)
    print(f"trained {steps} steps in {time.time() - start:.0f} s")

    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    weights = args.out / "model.safetensors"  # store half precision: half the size, same text
    save_file(
        {k: v.astype(np.float16) for k, v in load_file(weights).items()}, weights, metadata={"format": "pt"}
    )

    reloaded = xlagen.TFAutoModelForCausalLM.from_pretrained(args.out)
    prompt = tokenizer(["And God said"], return_tensors="tf")
    out = reloaded.generate(**prompt, max_new_tokens=40)
    print(tokenizer.decode(out[0], skip_special_tokens=True))


if __name__ == "__main__":
    main()
