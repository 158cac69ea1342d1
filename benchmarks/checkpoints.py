"""Random-weight checkpoints of the benchmark shapes, written once by Transformers (PyTorch).

    python -m benchmarks.checkpoints [--quick] [DIR]    # needs transformers + torch (the 'pt' peer venv)

Every system loads the same files (keras-hub excepted: it builds the same shapes from a config).
Speed does not depend on the weights, but generation must not stop early: the embedding row of
each EOS token is zeroed, so with a tied, bias-free LM head its logit is exactly 0 while the
largest of the other ~50k random logits is positive: greedy and beam search never pick it, in any
system, with no extra logits processor. ``meta.json`` records the EOS ids, the vocabulary size and
the bytes of weights one decode step reads (for the memory-bandwidth floor).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.workloads import CHECKPOINTS, MODEL_CONFIGS


def checkpoint_dir(model: str, quick: bool, root: Path = CHECKPOINTS) -> Path:
    return root / f"{model}-{'quick' if quick else 'full'}"


def decode_weight_bytes(tensors: dict, model: str, tied: bool = True) -> int:
    """Bytes of weights a decode step streams: everything the decoder uses once per step.

    Position tables are read one row per step (left out); a tied embedding counts once (it is the
    LM head); the T5 / Marian / Whisper encoder runs once per input (left out). As for T5, the
    decoder's cross-attention key / value projections count (T5's always did), though a cache
    applies them once per input. ``tensors`` maps names to arrays (or anything with ``nbytes``)."""
    total = 0
    for name, t in tensors.items():
        if model in ("gpt2", "opt", "marian") and ("wpe" in name or "embed_positions" in name):
            continue
        if model == "t5" and (name.startswith("encoder.") or "relative_attention_bias" in name):
            continue
        if model == "marian" and name.startswith("model.encoder."):
            continue
        if tied and name == "lm_head.weight":
            continue  # the same matrix as the token embedding
        total += int(t.nbytes)
    return total


def make(model: str, quick: bool, root: Path = CHECKPOINTS) -> Path:
    import torch
    import transformers as tr
    from safetensors.numpy import load_file

    out = checkpoint_dir(model, quick, root)
    if (out / "meta.json").is_file():
        return out
    torch.manual_seed(0)
    cfg = MODEL_CONFIGS[model]["quick" if quick else "full"]
    if model == "gpt2":
        config = tr.GPT2Config(**cfg)
        net = tr.GPT2LMHeadModel(config)
        emb, eos = net.transformer.wte.weight, [config.eos_token_id]
    elif model == "opt":
        config = tr.OPTConfig(**cfg)
        net = tr.OPTForCausalLM(config)
        emb, eos = net.model.decoder.embed_tokens.weight, [config.eos_token_id]
    elif model == "t5":
        config = tr.T5Config(**cfg, decoder_start_token_id=0, eos_token_id=1, pad_token_id=0)
        net = tr.T5ForConditionalGeneration(config)
        emb, eos = net.shared.weight, [config.eos_token_id]
    elif model == "llama":
        config = tr.LlamaConfig(**cfg)
        net = tr.LlamaForCausalLM(config)
        emb, eos = net.model.embed_tokens.weight, [config.eos_token_id]
    elif model == "marian":
        config = tr.MarianConfig(**cfg)
        net = tr.MarianMTModel(config)
        emb, eos = net.model.shared.weight, [config.eos_token_id]
    else:
        raise ValueError(model)
    with torch.no_grad():
        for i in eos:
            emb[i].zero_()
    net.eval()
    out.mkdir(parents=True, exist_ok=True)
    net.save_pretrained(out)
    tensors = load_file(str(out / "model.safetensors"))
    meta = {
        "model": model,
        "shape": "quick" if quick else "full",
        "vocab_size": config.vocab_size,
        "eos_token_ids": eos,
        "parameters": int(sum(p.numel() for p in net.parameters())),
        "decode_weight_bytes": decode_weight_bytes(tensors, model, config.tie_word_embeddings),
        "transformers": tr.__version__,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return out


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    rest = [a for a in argv if not a.startswith("--")]
    root = Path(rest[0]) if rest else CHECKPOINTS
    for model in MODEL_CONFIGS:
        path = make(model, quick, root)
        meta = json.loads((path / "meta.json").read_text())
        print(
            f"{path}: {meta['parameters'] / 1e6:.1f} M parameters, "
            f"{meta['decode_weight_bytes'] / 1e6:.0f} MB read per decode step"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
