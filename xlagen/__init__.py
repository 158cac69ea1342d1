"""xlagen: Transformer text generation in TensorFlow, compiled with XLA.

Drop-in for the TensorFlow side of Hugging Face Transformers 4.x on local checkpoints.
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from xlagen.configuration_utils import PretrainedConfig  # noqa: E402
from xlagen.generation import Buckets, GenerationConfig  # noqa: E402
from xlagen.models.auto import AutoConfig, TFAutoModelForCausalLM, TFAutoModelForSeq2SeqLM  # noqa: E402
from xlagen.models.gpt2.configuration import GPT2Config  # noqa: E402
from xlagen.models.gpt2.modeling import TFGPT2LMHeadModel  # noqa: E402


def __getattr__(name: str):
    # The tokenizer pulls in the `tokenizers` library only when asked for.
    if name in ("AutoTokenizer", "PreTrainedTokenizerFast"):
        from xlagen import tokenization

        return getattr(tokenization, name)
    raise AttributeError(f"module 'xlagen' has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = [
    "AutoConfig",
    "AutoTokenizer",
    "Buckets",
    "GPT2Config",
    "GenerationConfig",
    "PreTrainedTokenizerFast",
    "PretrainedConfig",
    "TFAutoModelForCausalLM",
    "TFAutoModelForSeq2SeqLM",
    "TFGPT2LMHeadModel",
]
