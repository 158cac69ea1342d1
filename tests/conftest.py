"""Shared fixtures: tiny random-weight checkpoints written by Hugging Face Transformers (PyTorch)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import ByteLevelBPETokenizer  # noqa: E402

transformers.logging.set_verbosity_error()
torch.set_num_threads(1)

TINY_GPT2 = dict(
    vocab_size=128, n_positions=96, n_embd=32, n_layer=2, n_head=4, bos_token_id=1, eos_token_id=2
)


def write_gpt2(path, seed: int = 0, **overrides):
    """Save a random GPT-2 (PyTorch) to ``path``; return the eval-mode torch model."""
    config = transformers.GPT2Config(**{**TINY_GPT2, **overrides})
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(config).eval()
    perturb_norms_and_biases(model, "ln_")
    model.save_pretrained(path)
    return model


def perturb_norms_and_biases(model, norm_marker: str, scale: float = 0.1, extra=None) -> None:
    """Random init leaves biases and layer norms at 0/1: add noise so loading bugs show.

    Parameters whose name holds ``norm_marker`` or ends in ``bias`` get N(0, scale) added;
    ``extra(name, parameter)`` may change any other parameter in place."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or norm_marker in name:
                p.add_(torch.randn_like(p) * scale)
            elif extra is not None:
                extra(name, p)


TEXT = [
    "TensorFlow is an open source platform for machine learning.",
    "XLA compiles TensorFlow graphs into fast kernels for the CPU and the GPU.",
    "Generation with a static cache runs one while loop.",
] * 20


def write_gpt2_with_tokenizer(path, **overrides):
    """A byte-level BPE tokenizer trained on ``TEXT`` (eos ``<|endoftext|>``) and a random GPT-2 over
    its vocabulary, both saved to ``path``; returns (Transformers tokenizer, eval-mode torch model)."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TEXT, vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"])
    hf_tok = transformers.GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>")
    hf_tok.save_pretrained(path)
    eot = hf_tok.convert_tokens_to_ids("<|endoftext|>")
    return hf_tok, write_gpt2(path, vocab_size=len(hf_tok), bos_token_id=eot, eos_token_id=eot, **overrides)


@pytest.fixture(scope="session")
def gpt2_tokenizer_checkpoint(tmp_path_factory):
    """A GPT-2 checkpoint whose tokenizer has no </s> (like GPT-2's own), written by Transformers."""
    path = tmp_path_factory.mktemp("gpt2_with_tokenizer")
    _, pt_model = write_gpt2_with_tokenizer(path)
    return path, pt_model


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2_tiny")
    write_gpt2(path)
    return path


@pytest.fixture(scope="session")
def gpt2_torch(gpt2_dir):
    return transformers.GPT2LMHeadModel.from_pretrained(gpt2_dir).eval()


@pytest.fixture(scope="session")
def gpt2_model(gpt2_dir):
    import xlagen

    return xlagen.TFAutoModelForCausalLM.from_pretrained(gpt2_dir)


def left_padded_batch(rng: np.random.Generator, lengths, vocab: int, width: int | None = None, pad: int = 0):
    """A left-padded batch of random prompts with the given real lengths."""
    width = width or max(lengths)
    ids = np.full([len(lengths), width], pad, np.int64)
    mask = np.zeros([len(lengths), width], np.int64)
    for row, n in enumerate(lengths):
        ids[row, width - n :] = rng.integers(3, vocab, n)
        mask[row, width - n :] = 1
    return ids, mask


@pytest.fixture
def rng():
    return np.random.default_rng(0)
