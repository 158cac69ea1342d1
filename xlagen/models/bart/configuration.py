"""Configurations of the BART family: BART, mBART, Marian, Pegasus, Blenderbot, BlenderbotSmall, M2M100/NLLB.

They share one architecture (``xlagen.models.bart.modeling``); what differs between them is data,
set by the class (``layout``) and read from config.json (the rest):

* ``normalize_before``: pre-layernorm blocks with a final layer norm per stack (mBART, Pegasus,
  Blenderbot, M2M100) or post-layernorm blocks (BART, Marian, BlenderbotSmall);
* ``layernorm_embedding``: a layer norm on the embeddings (BART, mBART, BlenderbotSmall, which
  normalises the decoder's token embeddings before adding positions);
* ``positions``: ``"learned"`` (a table, BART/mBART reading it at an offset of 2),
  ``"sinusoidal"`` (Marian/Pegasus: fixed sines then cosines) or ``"fairseq"`` (M2M100/NLLB: fixed,
  counted from the padding index, padding tokens get a zero vector);
* ``scale_embedding`` (times ``sqrt(d_model)``), ``activation_function``, ``final_logits_bias``,
  tied or untied embeddings and, for Marian, a separate decoder vocabulary.
"""

from __future__ import annotations

from typing import Any, ClassVar

from xlagen.configuration_utils import PretrainedConfig
from xlagen.models.activations import ACTIVATIONS

_COMMON: dict[str, Any] = {
    "is_encoder_decoder": True,
    "vocab_size": 50265,
    "max_position_embeddings": 1024,
    "encoder_layers": 12,
    "encoder_ffn_dim": 4096,
    "encoder_attention_heads": 16,
    "decoder_layers": 12,
    "decoder_ffn_dim": 4096,
    "decoder_attention_heads": 16,
    "encoder_layerdrop": 0.0,
    "decoder_layerdrop": 0.0,
    "activation_function": "gelu",
    "d_model": 1024,
    "dropout": 0.1,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "init_std": 0.02,
    "scale_embedding": False,
    "use_cache": True,
    "tie_word_embeddings": True,
}


class BartConfig(PretrainedConfig):
    """Hyper-parameters of a BART checkpoint (Transformers' names and defaults); unsupported options
    raise ``ValueError``. Subclasses change the defaults and the class-level ``layout``."""

    model_type: ClassVar[str] = "bart"
    attribute_map: ClassVar[dict[str, str]] = {
        "hidden_size": "d_model",
        "num_attention_heads": "encoder_attention_heads",
        "num_hidden_layers": "encoder_layers",
    }
    defaults: ClassVar[dict[str, Any]] = {
        **_COMMON,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "decoder_start_token_id": 2,
        "forced_eos_token_id": 2,
    }
    # What the architecture does for this model type: fixed by the class, never read from config.json
    # (old fairseq-converted files carry keys such as ``normalize_before`` that Transformers ignores).
    layout: ClassVar[dict[str, Any]] = {
        "normalize_before": False,
        "layernorm_embedding": True,
        "positions": "learned",
        "position_offset": 2,
        "final_logits_bias": True,
        "embed_norm_before_positions": False,  # BlenderbotSmall's decoder
    }

    @property
    def target_vocab_size(self) -> int:
        """Rows of the decoder embedding and the LM head (Marian may have its own decoder vocabulary)."""
        return self.vocab_size

    def validate(self) -> None:
        name = type(self).__name__
        for key in (
            "vocab_size",
            "d_model",
            "max_position_embeddings",
            "encoder_layers",
            "decoder_layers",
            "encoder_ffn_dim",
            "decoder_ffn_dim",
            "encoder_attention_heads",
            "decoder_attention_heads",
        ):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name}.{key} must be a positive integer, got {value!r}")
        for key in ("encoder_attention_heads", "decoder_attention_heads"):
            if self.d_model % getattr(self, key):
                raise ValueError(
                    f"{name}.d_model ({self.d_model}) must be divisible by {key} ({getattr(self, key)})"
                )
        if self.activation_function not in ACTIVATIONS:
            raise ValueError(
                f"{name}.activation_function={self.activation_function!r} is not supported; "
                f"choose one of {sorted(ACTIVATIONS)}"
            )
        if self.is_encoder_decoder is not True:
            raise ValueError(
                f"{name}.is_encoder_decoder must be true (the decoder-only ForCausalLM variants are not "
                f"supported), got {self.is_encoder_decoder!r}"
            )
        for key in ("dropout", "attention_dropout", "activation_dropout"):
            value = getattr(self, key)
            if value is None or not 0.0 <= value < 1.0:
                raise ValueError(f"{name}.{key} must be in [0, 1), got {value!r}")
        if self.layout["positions"] == "fairseq" and not isinstance(self.pad_token_id, int):
            raise ValueError(f"{name}.pad_token_id must be set: positions are counted from it")


class MBartConfig(BartConfig):
    """mBART / mBART-50: pre-layernorm, an embedding layer norm and a final layer norm per stack."""

    model_type: ClassVar[str] = "mbart"
    defaults: ClassVar[dict[str, Any]] = {
        **_COMMON,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "forced_eos_token_id": 2,
    }
    layout: ClassVar[dict[str, Any]] = {**BartConfig.layout, "normalize_before": True}


class MarianConfig(BartConfig):
    """Marian (opus-mt): post-layernorm, fixed sinusoidal positions, decoding starts from the pad token;
    ``share_encoder_decoder_embeddings: false`` gives the decoder its own ``decoder_vocab_size`` table."""

    model_type: ClassVar[str] = "marian"
    defaults: ClassVar[dict[str, Any]] = {
        **_COMMON,
        "vocab_size": 58101,
        "decoder_vocab_size": None,
        "pad_token_id": 58100,
        "eos_token_id": 0,
        "decoder_start_token_id": 58100,
        "forced_eos_token_id": 0,
        "share_encoder_decoder_embeddings": True,
    }
    layout: ClassVar[dict[str, Any]] = {
        **BartConfig.layout,
        "layernorm_embedding": False,
        "positions": "sinusoidal",
        "position_offset": 0,
    }

    def validate(self) -> None:
        if self.decoder_vocab_size is None:
            self.decoder_vocab_size = self.vocab_size
        super().validate()
        if self.share_encoder_decoder_embeddings and self.decoder_vocab_size != self.vocab_size:
            raise ValueError(
                f"MarianConfig.decoder_vocab_size ({self.decoder_vocab_size}) differs from vocab_size "
                f"({self.vocab_size}) but share_encoder_decoder_embeddings is true"
            )

    @property
    def target_vocab_size(self) -> int:
        return self.vocab_size if self.share_encoder_decoder_embeddings else self.decoder_vocab_size


class PegasusConfig(BartConfig):
    """Pegasus: pre-layernorm with final layer norms, fixed sinusoidal positions, no embedding norm."""

    model_type: ClassVar[str] = "pegasus"
    defaults: ClassVar[dict[str, Any]] = {
        **_COMMON,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
        "forced_eos_token_id": 1,
    }
    layout: ClassVar[dict[str, Any]] = {
        **BartConfig.layout,
        "normalize_before": True,
        "layernorm_embedding": False,
        "positions": "sinusoidal",
        "position_offset": 0,
    }


class BlenderbotConfig(BartConfig):
    """Blenderbot: pre-layernorm with final layer norms, learned positions without an offset."""

    model_type: ClassVar[str] = "blenderbot"
    defaults: ClassVar[dict[str, Any]] = {
        **_COMMON,
        "vocab_size": 8008,
        "max_position_embeddings": 128,
        "encoder_layers": 2,
        "encoder_ffn_dim": 10240,
        "encoder_attention_heads": 32,
        "decoder_layers": 24,
        "decoder_ffn_dim": 10240,
        "decoder_attention_heads": 32,
        "d_model": 2560,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "decoder_start_token_id": 1,
        "encoder_no_repeat_ngram_size": 3,
        "forced_eos_token_id": 2,
    }
    layout: ClassVar[dict[str, Any]] = {
        **BartConfig.layout,
        "normalize_before": True,
        "layernorm_embedding": False,
        "position_offset": 0,
    }


class BlenderbotSmallConfig(BartConfig):
    """BlenderbotSmall: post-layernorm, learned positions without an offset, an embedding layer norm
    (in the decoder applied to the token embeddings before the positions are added)."""

    model_type: ClassVar[str] = "blenderbot-small"
    defaults: ClassVar[dict[str, Any]] = {
        **_COMMON,
        "max_position_embeddings": 512,
        "encoder_layers": 8,
        "encoder_ffn_dim": 2048,
        "decoder_layers": 8,
        "decoder_ffn_dim": 2048,
        "d_model": 512,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "decoder_start_token_id": 1,
        "forced_eos_token_id": 2,
    }
    layout: ClassVar[dict[str, Any]] = {
        **BartConfig.layout,
        "position_offset": 0,
        "embed_norm_before_positions": True,
    }


class M2M100Config(BartConfig):
    """M2M100 and NLLB (model_type ``m2m_100``): pre-layernorm with final layer norms, fairseq sinusoidal
    positions, scaled embeddings, ReLU, no final logits bias."""

    model_type: ClassVar[str] = "m2m_100"
    defaults: ClassVar[dict[str, Any]] = {
        **_COMMON,
        "vocab_size": 128112,
        "activation_function": "relu",
        "encoder_layerdrop": 0.05,
        "decoder_layerdrop": 0.05,
        "attention_dropout": 0.1,
        "scale_embedding": True,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "decoder_start_token_id": 2,
    }
    layout: ClassVar[dict[str, Any]] = {
        **BartConfig.layout,
        "normalize_before": True,
        "layernorm_embedding": False,
        "positions": "fairseq",
        "position_offset": 2,
        "final_logits_bias": False,
    }
