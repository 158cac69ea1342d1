"""Whisper configuration (same keys as Hugging Face's WhisperConfig)."""

from __future__ import annotations

from typing import Any, ClassVar

from xlagen.configuration_utils import PretrainedConfig
from xlagen.models.activations import ACTIVATIONS


class WhisperConfig(PretrainedConfig):
    """Hyper-parameters of a Whisper checkpoint (any size, 80- or 128-mel); bad values raise ``ValueError``."""

    model_type: ClassVar[str] = "whisper"
    attribute_map: ClassVar[dict[str, str]] = {
        "num_key_value_heads": "encoder_attention_heads",
        "num_attention_heads": "encoder_attention_heads",
        "hidden_size": "d_model",
        "num_hidden_layers": "encoder_layers",
    }
    defaults: ClassVar[dict[str, Any]] = {
        "vocab_size": 51865,
        "num_mel_bins": 80,
        "encoder_layers": 4,
        "encoder_attention_heads": 6,
        "decoder_layers": 4,
        "decoder_attention_heads": 6,
        "decoder_ffn_dim": 1536,
        "encoder_ffn_dim": 1536,
        "encoder_layerdrop": 0.0,
        "decoder_layerdrop": 0.0,
        "decoder_start_token_id": 50257,
        "use_cache": True,
        "is_encoder_decoder": True,
        "activation_function": "gelu",
        "d_model": 384,
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
        "init_std": 0.02,
        "scale_embedding": False,  # read by neither Transformers' Whisper nor this one
        "max_source_positions": 1500,
        "max_target_positions": 448,
        "pad_token_id": 50256,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
        "suppress_tokens": None,
        "begin_suppress_tokens": [220, 50256],
        "tie_word_embeddings": True,
    }

    def validate(self) -> None:
        for name in (
            "vocab_size",
            "num_mel_bins",
            "encoder_layers",
            "encoder_attention_heads",
            "decoder_layers",
            "decoder_attention_heads",
            "decoder_ffn_dim",
            "encoder_ffn_dim",
            "d_model",
            "max_source_positions",
            "max_target_positions",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"WhisperConfig.{name} must be a positive integer, got {value!r}")
        for name in ("encoder_attention_heads", "decoder_attention_heads"):
            if self.d_model % getattr(self, name):
                raise ValueError(
                    f"WhisperConfig: d_model ({self.d_model}) must be divisible by {name} ({getattr(self, name)})"
                )
        if self.activation_function not in ACTIVATIONS:
            raise ValueError(
                f"WhisperConfig.activation_function={self.activation_function!r} is not supported; "
                f"choose one of {sorted(ACTIVATIONS)}"
            )
        if not self.is_encoder_decoder:
            raise ValueError("WhisperConfig.is_encoder_decoder must be True (Whisper is an encoder-decoder)")
        if getattr(self, "use_weighted_layer_sum", False):
            raise ValueError(
                "WhisperConfig.use_weighted_layer_sum=True (audio classification) is not supported"
            )

    @classmethod
    def from_pretrained(cls, name_or_path, **overrides: Any) -> WhisperConfig:
        """Read config.json, or derive the config of a CTranslate2 Whisper directory from its model.bin."""
        from xlagen.loading.ctranslate2 import is_ctranslate2_dir, read_ctranslate2_header
        from xlagen.loading.hub import resolve_pretrained_dir
        from xlagen.models.whisper.ctranslate2 import whisper_config_from_ctranslate2

        directory = resolve_pretrained_dir(name_or_path)
        if is_ctranslate2_dir(directory):
            config, _ = whisper_config_from_ctranslate2(
                directory, read_ctranslate2_header(directory), **overrides
            )
            return config
        return super().from_pretrained(directory, **overrides)

    @property
    def num_frames(self) -> int:
        """Mel frames the encoder takes: two per encoder position (conv2 has stride 2), 3000 for 30 s."""
        return 2 * self.max_source_positions
