"""Auto classes: pick the model class from ``model_type`` in config.json, as Transformers does."""

from __future__ import annotations

import os
from typing import Any

from xlagen.configuration_utils import load_config_dict
from xlagen.loading.ctranslate2 import is_ctranslate2_dir
from xlagen.loading.hub import resolve_pretrained_dir
from xlagen.models.bart.configuration import (
    BartConfig,
    BlenderbotConfig,
    BlenderbotSmallConfig,
    M2M100Config,
    MarianConfig,
    MBartConfig,
    PegasusConfig,
)
from xlagen.models.bart.modeling import (
    TFBartForConditionalGeneration,
    TFBlenderbotForConditionalGeneration,
    TFBlenderbotSmallForConditionalGeneration,
    TFM2M100ForConditionalGeneration,
    TFMarianMTModel,
    TFMBartForConditionalGeneration,
    TFPegasusForConditionalGeneration,
)
from xlagen.models.gpt2.configuration import GPT2Config
from xlagen.models.gpt2.modeling import TFGPT2LMHeadModel
from xlagen.models.llama.configuration import LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config
from xlagen.models.llama.modeling import (
    TFLlamaForCausalLM,
    TFMistralForCausalLM,
    TFQwen2ForCausalLM,
    TFQwen3ForCausalLM,
)
from xlagen.models.opt.configuration import OPTConfig
from xlagen.models.opt.modeling import TFOPTForCausalLM
from xlagen.models.t5.configuration import T5Config
from xlagen.models.t5.modeling import TFT5ForConditionalGeneration
from xlagen.models.whisper.configuration import WhisperConfig
from xlagen.models.whisper.modeling import TFWhisperForConditionalGeneration

CONFIG_MAPPING = {
    "bart": BartConfig,
    "blenderbot": BlenderbotConfig,
    "blenderbot-small": BlenderbotSmallConfig,
    "m2m_100": M2M100Config,
    "marian": MarianConfig,
    "mbart": MBartConfig,
    "pegasus": PegasusConfig,
    "gpt2": GPT2Config,
    "llama": LlamaConfig,
    "mistral": MistralConfig,
    "qwen2": Qwen2Config,
    "qwen3": Qwen3Config,
    "opt": OPTConfig,
    "t5": T5Config,
    "whisper": WhisperConfig,
}
CAUSAL_LM_MAPPING = {
    "gpt2": TFGPT2LMHeadModel,
    "llama": TFLlamaForCausalLM,
    "mistral": TFMistralForCausalLM,
    "opt": TFOPTForCausalLM,
    "qwen2": TFQwen2ForCausalLM,
    "qwen3": TFQwen3ForCausalLM,
}
SEQ2SEQ_LM_MAPPING: dict[str, type] = {
    "bart": TFBartForConditionalGeneration,
    "blenderbot": TFBlenderbotForConditionalGeneration,
    "blenderbot-small": TFBlenderbotSmallForConditionalGeneration,
    "m2m_100": TFM2M100ForConditionalGeneration,
    "marian": TFMarianMTModel,
    "mbart": TFMBartForConditionalGeneration,
    "pegasus": TFPegasusForConditionalGeneration,
    "t5": TFT5ForConditionalGeneration,
    "whisper": TFWhisperForConditionalGeneration,
}


def _model_type(directory) -> str:
    if is_ctranslate2_dir(directory):
        return "whisper"  # CTranslate2 model.bin directories: Whisper is the one read so far
    config = load_config_dict(directory)
    model_type = config.get("model_type")
    if not model_type:
        raise ValueError(f"{directory}/config.json has no 'model_type'; cannot choose a model class")
    return model_type


class _AutoModel:
    mapping: dict[str, type] = {}
    task = ""

    def __init__(self) -> None:
        raise OSError(f"use {type(self).__name__}.from_pretrained(directory)")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any):
        directory = resolve_pretrained_dir(pretrained_model_name_or_path)
        model_type = _model_type(directory)
        if model_type not in cls.mapping:
            raise ValueError(
                f"model_type {model_type!r} ({directory}) is not supported by {cls.__name__}; "
                f"supported: {sorted(cls.mapping)}"
            )
        return cls.mapping[model_type].from_pretrained(directory, **kwargs)

    @classmethod
    def from_config(cls, config):
        model_type = getattr(config, "model_type", None)
        if model_type not in cls.mapping:
            raise ValueError(f"model_type {model_type!r} is not supported by {cls.__name__}")
        return cls.mapping[model_type](config)


class TFAutoModelForCausalLM(_AutoModel):
    """Decoder-only language models (GPT-2, ...)."""

    mapping = CAUSAL_LM_MAPPING


class TFAutoModelForSeq2SeqLM(_AutoModel):
    """Encoder-decoder language models."""

    mapping = SEQ2SEQ_LM_MAPPING


class AutoConfig:
    """Load the configuration class named by ``model_type``."""

    @staticmethod
    def from_pretrained(pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any):
        directory = resolve_pretrained_dir(pretrained_model_name_or_path)
        model_type = _model_type(directory)
        if model_type not in CONFIG_MAPPING:
            raise ValueError(
                f"model_type {model_type!r} is not supported; supported: {sorted(CONFIG_MAPPING)}"
            )
        if is_ctranslate2_dir(directory):  # the config is derived from model.bin, not read
            return CONFIG_MAPPING[model_type].from_pretrained(directory, **kwargs)
        return CONFIG_MAPPING[model_type].from_dict(load_config_dict(directory), **kwargs)
