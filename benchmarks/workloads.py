"""Workloads and systems of the suite (plain data: imported by the orchestrator and by every runner)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

BENCH_HOME = Path(os.environ.get("XLAGEN_BENCH_HOME", Path.home() / ".cache" / "xlagen-bench"))
VENVS = BENCH_HOME / "venvs"
CHECKPOINTS = BENCH_HOME / "checkpoints"
SPEECH_DIR = Path(os.environ.get("XLAGEN_BENCH_SPEECH", "/work/shared/data/speech"))

# Model shapes, as Transformers configs (random weights; see checkpoints.py).
MODEL_CONFIGS = {
    "gpt2": {  # GPT-2 small, 124 M parameters
        "full": dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12),
        "quick": dict(
            vocab_size=1024,
            n_positions=128,
            n_embd=64,
            n_layer=2,
            n_head=4,
            bos_token_id=1023,
            eos_token_id=1023,
        ),
    },
    "opt": {  # OPT-125m
        "full": dict(
            vocab_size=50272,
            hidden_size=768,
            num_hidden_layers=12,
            ffn_dim=3072,
            num_attention_heads=12,
            max_position_embeddings=2048,
            word_embed_proj_dim=768,
        ),
        "quick": dict(
            vocab_size=1024,
            hidden_size=64,
            num_hidden_layers=2,
            ffn_dim=256,
            num_attention_heads=4,
            max_position_embeddings=128,
            word_embed_proj_dim=64,
        ),
    },
    "t5": {  # T5-small, 60 M parameters
        "full": dict(
            vocab_size=32128,
            d_model=512,
            d_kv=64,
            d_ff=2048,
            num_layers=6,
            num_decoder_layers=6,
            num_heads=8,
            feed_forward_proj="relu",
            tie_word_embeddings=True,
        ),
        "quick": dict(
            vocab_size=1024,
            d_model=64,
            d_kv=16,
            d_ff=256,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=4,
            feed_forward_proj="relu",
            tie_word_embeddings=True,
        ),
    },
    "llama": {  # SmolLM2-135M's shape: grouped-query attention (9 query / 3 KV heads), tied embeddings
        "full": dict(
            vocab_size=49152,
            hidden_size=576,
            intermediate_size=1536,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            max_position_embeddings=8192,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
            tie_word_embeddings=True,
            bos_token_id=1,
            eos_token_id=2,
        ),
        "quick": dict(
            vocab_size=1024,
            hidden_size=64,
            intermediate_size=192,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
            tie_word_embeddings=True,
            bos_token_id=1,
            eos_token_id=2,
        ),
    },
    # Helsinki-NLP/opus-mt-en-de's shape (74 M): post-LN BART family, static sinusoidal positions,
    # embeddings scaled by sqrt(d_model) and shared by encoder, decoder and LM head; the decoder
    # starts from the pad token. No forced EOS at max length (the checkpoint has one; off here so
    # every system runs the same steps with no extra logits processor).
    "marian": {
        "full": dict(
            vocab_size=58101,
            d_model=512,
            encoder_layers=6,
            decoder_layers=6,
            encoder_attention_heads=8,
            decoder_attention_heads=8,
            encoder_ffn_dim=2048,
            decoder_ffn_dim=2048,
            activation_function="swish",
            max_position_embeddings=512,
            scale_embedding=True,
            share_encoder_decoder_embeddings=True,
            tie_word_embeddings=True,
            pad_token_id=58100,
            decoder_start_token_id=58100,
            eos_token_id=0,
            forced_eos_token_id=None,
        ),
        "quick": dict(
            vocab_size=1024,
            d_model=64,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=256,
            decoder_ffn_dim=256,
            activation_function="swish",
            max_position_embeddings=128,
            scale_embedding=True,
            share_encoder_decoder_embeddings=True,
            tie_word_embeddings=True,
            pad_token_id=1023,
            decoder_start_token_id=1023,
            eos_token_id=0,
            forced_eos_token_id=None,
        ),
    },
}

# Encoder-decoder models: the prompt is the encoder's input, the decoder starts from its start token.
SEQ2SEQ = ("t5", "marian")


def workloads(quick: bool) -> list[dict]:
    """Every workload: name, model, batch, prompt (decoder prompt; encoder input for T5), new tokens, beams."""
    p, n, e = (8, 16, 16) if quick else (32, 128, 64)
    batches = (1, 4) if quick else (1, 8, 32)
    out = []
    for model in ("gpt2", "opt", "t5"):
        for b in batches:
            w = dict(name=f"{model}-b{b}", model=model, batch=b, prompt_len=p, new_tokens=n, num_beams=1)
            if model in SEQ2SEQ:
                w.update(prompt_len=1, encoder_len=e)  # decoder starts from the start token
            out.append(w)
    out.append(dict(name="gpt2-beam4-b1", model="gpt2", batch=1, prompt_len=p, new_tokens=n, num_beams=4))
    # Issue #15's rows: batch 1 and 8 only.
    for model in ("llama", "marian"):
        for b in batches[:2]:
            w = dict(name=f"{model}-b{b}", model=model, batch=b, prompt_len=p, new_tokens=n, num_beams=1)
            if model in SEQ2SEQ:
                w.update(prompt_len=1, encoder_len=e)
            out.append(w)
    for seconds in (10,) if quick else (10, 60):
        for beams in (1,) if quick else (1, 5):
            mode = "greedy" if beams == 1 else f"beam{beams}"
            out.append(
                dict(
                    name=f"whisper-{seconds}s-{mode}",
                    model="whisper",
                    batch=1,
                    seconds=seconds,
                    num_beams=beams,
                    max_new_tokens=128,
                )
            )
    return out


# system name -> (venv: "main" or a folder under VENVS, runner module, variant, models it runs)
SYSTEMS = {
    "xlagen-xla": ("main", "xlagen_runner", "xla", ("gpt2", "opt", "t5", "llama", "marian", "whisper")),
    "xlagen-eager": ("main", "xlagen_runner", "eager", ("gpt2", "opt", "t5", "llama", "marian", "whisper")),
    "tf4-xla": ("tf4", "tf4_runner", "xla", ("gpt2", "opt", "t5", "marian")),  # 4.57 has no TF Llama
    "tf4-eager": ("tf4", "tf4_runner", "eager", ("gpt2", "opt", "t5", "marian")),
    "kerashub-xla": ("kerashub", "kerashub_runner", "xla", ("gpt2", "opt", "llama")),  # no Marian there
    "kerashub-graph": ("kerashub", "kerashub_runner", "graph", ("gpt2", "opt", "llama")),
    "torch-dynamic": ("pt", "torch_runner", "dynamic", ("gpt2", "opt", "t5", "llama", "marian")),
    "torch-static": ("pt", "torch_runner", "static", ("gpt2", "opt", "t5", "llama", "marian")),
    "torch-static-compile": (
        "pt",
        "torch_runner",
        "static-compile",
        ("gpt2", "opt", "t5", "llama", "marian"),
    ),
    "fw-float32": ("fw", "fw_runner", "float32", ("whisper",)),
    "fw-int8": ("fw", "fw_runner", "int8", ("whisper",)),
}

SYSTEM_LABELS = {
    "xlagen-xla": "xlagen (XLA)",
    "xlagen-eager": "xlagen (eager)",
    "tf4-xla": "Transformers 4.57 TF, tf.function(generate, jit_compile=True)",
    "tf4-eager": "Transformers 4.57 TF, eager generate",
    "kerashub-xla": "keras-hub 0.32, compile(jit_compile=True)",
    "kerashub-graph": "keras-hub 0.32, default compile (tf.function, no XLA on CPU)",
    "torch-dynamic": "Transformers 5 PyTorch, dynamic cache",
    "torch-static": "Transformers 5 PyTorch, static cache",
    "torch-static-compile": "Transformers 5 PyTorch, static cache + torch.compile",
    "fw-float32": "faster-whisper 1.2.1 float32",
    "fw-int8": "faster-whisper 1.2.1 int8",
}


def prompt_ids(batch: int, length: int, vocab_size: int, seed: int = 0) -> np.ndarray:
    """The same prompt for every system: ids away from both ends of the vocabulary, where the
    special tokens of GPT-2 (50256), OPT (1, 2), T5 (0, 1), Llama (1, 2) and Marian (0, pad 58100) live."""
    rng = np.random.default_rng(seed)
    return rng.integers(10, vocab_size - 10, size=(batch, length)).astype(np.int32)


def generated_length(new_tokens: np.ndarray, eos_ids) -> int:
    """Tokens generated in the shortest row before the first EOS (the whole width when none)."""
    new_tokens = np.asarray(new_tokens)
    if new_tokens.ndim == 1:
        new_tokens = new_tokens[None]
    width = new_tokens.shape[1]
    hits = np.isin(new_tokens, np.asarray(list(eos_ids) or [-1]))
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, width)
    return int(first.min()) if first.size else 0
