"""xlagen: Transformer text generation in TensorFlow, compiled with XLA.

Drop-in for the TensorFlow side of Hugging Face Transformers 4.x on local checkpoints.
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow's oneDNN CPU allocator serves large tensors from a BFC arena that never hands memory
# back. TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1 (malloc instead) saves ~90 MB of peak RSS in a GPT-2 124M
# generate process but made its batch-8 decode step ~6 % slower (47-50 vs 44.5-45 ms, alternating
# processes, benchmarks.step_probe): xlagen leaves TensorFlow's default; set it for less memory.

# Before any TensorFlow operation runs: TensorFlow reads its XLA flags once, at the first one.
from xlagen import compilation_cache as _compilation_cache  # noqa: E402

_compilation_cache.configure()

# TensorFlow prints its pre-logging-init lines (INFO included) while it loads: filtered (native_logs).
from xlagen.native_logs import quiet_native_logs as _quiet_native_logs  # noqa: E402

with _quiet_native_logs():
    import tensorflow as _tf  # noqa: E402, F401

from xlagen.configuration_utils import PretrainedConfig  # noqa: E402
from xlagen.generation import Buckets, GenerationConfig  # noqa: E402
from xlagen.models.auto import AutoConfig, TFAutoModelForCausalLM, TFAutoModelForSeq2SeqLM  # noqa: E402
from xlagen.models.bart.configuration import (  # noqa: E402
    BartConfig,
    BlenderbotConfig,
    BlenderbotSmallConfig,
    M2M100Config,
    MarianConfig,
    MBartConfig,
    PegasusConfig,
)
from xlagen.models.bart.modeling import (  # noqa: E402
    TFBartForConditionalGeneration,
    TFBlenderbotForConditionalGeneration,
    TFBlenderbotSmallForConditionalGeneration,
    TFM2M100ForConditionalGeneration,
    TFMarianMTModel,
    TFMBartForConditionalGeneration,
    TFPegasusForConditionalGeneration,
)
from xlagen.models.gpt2.configuration import GPT2Config  # noqa: E402
from xlagen.models.gpt2.modeling import TFGPT2LMHeadModel  # noqa: E402
from xlagen.models.llama.configuration import (  # noqa: E402
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
    Qwen3Config,
)
from xlagen.models.llama.modeling import (  # noqa: E402
    TFLlamaForCausalLM,
    TFMistralForCausalLM,
    TFQwen2ForCausalLM,
    TFQwen3ForCausalLM,
)
from xlagen.models.opt.configuration import OPTConfig  # noqa: E402
from xlagen.models.opt.modeling import TFOPTForCausalLM  # noqa: E402
from xlagen.models.t5.configuration import T5Config  # noqa: E402
from xlagen.models.t5.modeling import TFT5ForConditionalGeneration  # noqa: E402
from xlagen.models.whisper.configuration import WhisperConfig  # noqa: E402
from xlagen.models.whisper.modeling import TFWhisperForConditionalGeneration  # noqa: E402

_AUDIO_NAMES = (
    "AutoFeatureExtractor",
    "AutoProcessor",
    "WhisperFeatureExtractor",
    "WhisperProcessor",
    "cache_directory",
    "load_audio",
)


_TOKENIZER_NAMES = (
    "AutoTokenizer",
    "PreTrainedTokenizerFast",
    "LlamaTokenizer",
    "LlamaTokenizerFast",
    "MBart50Tokenizer",
    "MBart50TokenizerFast",
    "MBartTokenizer",
    "MBartTokenizerFast",
    "MarianTokenizer",
    "NllbTokenizer",
    "NllbTokenizerFast",
    "BlenderbotSmallTokenizer",
    "BlenderbotTokenizer",
    "BlenderbotTokenizerFast",
    "M2M100Tokenizer",
    "PegasusTokenizer",
    "PegasusTokenizerFast",
)


def __getattr__(name: str):
    # The tokenizer pulls in the `tokenizers` library only when asked for.
    if name in _TOKENIZER_NAMES:
        from xlagen import tokenization

        return getattr(tokenization, name)
    # Audio input (soundfile/soxr) is imported on first use too.
    if name in _AUDIO_NAMES:
        from xlagen import audio

        return getattr(audio, name)
    # Speech to text (Whisper): transcribe("audio.wav").text
    if name in ("transcribe", "WhisperPipeline", "TranscriptionResult"):
        from xlagen.models.whisper import transcribe as _transcribe

        return getattr(_transcribe, name)
    raise AttributeError(f"module 'xlagen' has no attribute {name!r}")


__version__ = "0.1.0"
cache_directory = _compilation_cache.cache_directory

__all__ = [
    "AutoConfig",
    "AutoFeatureExtractor",
    "AutoProcessor",
    "BartConfig",
    "BlenderbotConfig",
    "BlenderbotSmallConfig",
    "Buckets",
    "GPT2Config",
    "GenerationConfig",
    "LlamaConfig",
    "M2M100Config",
    "MBartConfig",
    "MarianConfig",
    "MistralConfig",
    "Qwen2Config",
    "Qwen3Config",
    "OPTConfig",
    "PegasusConfig",
    *_TOKENIZER_NAMES,  # AutoTokenizer, PreTrainedTokenizerFast and the family tokenizers
    "PretrainedConfig",
    "T5Config",
    "TFAutoModelForCausalLM",
    "TFAutoModelForSeq2SeqLM",
    "TFBartForConditionalGeneration",
    "TFBlenderbotForConditionalGeneration",
    "TFBlenderbotSmallForConditionalGeneration",
    "TFGPT2LMHeadModel",
    "TFLlamaForCausalLM",
    "TFM2M100ForConditionalGeneration",
    "TFMBartForConditionalGeneration",
    "TFMarianMTModel",
    "TFMistralForCausalLM",
    "TFQwen2ForCausalLM",
    "TFQwen3ForCausalLM",
    "TFOPTForCausalLM",
    "TFPegasusForConditionalGeneration",
    "TFT5ForConditionalGeneration",
    "TFWhisperForConditionalGeneration",
    "WhisperConfig",
    "WhisperFeatureExtractor",
    "TranscriptionResult",
    "WhisperPipeline",
    "WhisperProcessor",
    "cache_directory",
    "load_audio",
    "transcribe",
]
