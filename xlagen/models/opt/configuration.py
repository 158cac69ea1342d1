"""OPT configuration (same keys as Hugging Face's OPTConfig)."""

from __future__ import annotations

from typing import Any, ClassVar

from xlagen.configuration_utils import PretrainedConfig
from xlagen.models.activations import ACTIVATIONS


class OPTConfig(PretrainedConfig):
    """Hyper-parameters of an OPT checkpoint; unsupported options raise ``ValueError``.

    ``word_embed_proj_dim`` defaults to ``hidden_size`` (as in Transformers); when it differs (OPT-350m),
    token embeddings are projected in and the final hidden states projected out, without bias.
    """

    model_type: ClassVar[str] = "opt"
    defaults: ClassVar[dict[str, Any]] = {
        "vocab_size": 50272,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "ffn_dim": 3072,
        "max_position_embeddings": 2048,
        "do_layer_norm_before": True,
        "_remove_final_layer_norm": False,
        "word_embed_proj_dim": None,
        "dropout": 0.1,
        "attention_dropout": 0.0,
        "num_attention_heads": 12,
        "activation_function": "relu",
        "layerdrop": 0.0,
        "init_std": 0.02,
        "use_cache": True,
        "pad_token_id": 1,
        "bos_token_id": 2,
        "eos_token_id": 2,
        "enable_bias": True,
        "layer_norm_elementwise_affine": True,
        "tie_word_embeddings": True,
    }

    def validate(self) -> None:
        if self.word_embed_proj_dim is None:  # Transformers resolves it the same way at construction
            self.word_embed_proj_dim = self.hidden_size
        for name in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "ffn_dim",
            "max_position_embeddings",
            "num_attention_heads",
            "word_embed_proj_dim",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"OPTConfig.{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"OPTConfig: hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.activation_function not in ACTIVATIONS:
            raise ValueError(
                f"OPTConfig.activation_function={self.activation_function!r} is not supported; "
                f"choose one of {sorted(ACTIVATIONS)}"
            )
        for name in ("dropout", "attention_dropout", "layerdrop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"OPTConfig.{name} must be a probability in [0, 1), got {value!r}")
        for name in (
            "do_layer_norm_before",
            "_remove_final_layer_norm",
            "enable_bias",
            "layer_norm_elementwise_affine",
            "tie_word_embeddings",
        ):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"OPTConfig.{name} must be true or false, got {value!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def has_final_layer_norm(self) -> bool:
        """Transformers keeps the decoder's final layer norm only for pre-norm models not marked otherwise."""
        return self.do_layer_norm_before and not self._remove_final_layer_norm

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        # The base drops private attributes; this one is a real config.json key Transformers reads back.
        out["_remove_final_layer_norm"] = self._remove_final_layer_norm
        return out
