"""T5 configuration (same keys as Hugging Face's T5Config; covers T5, T5 v1.1, Flan-T5, mT5-style files)."""

from __future__ import annotations

from typing import Any, ClassVar

from xlagen.configuration_utils import PretrainedConfig
from xlagen.models.activations import ACTIVATIONS


class T5Config(PretrainedConfig):
    """Hyper-parameters of a T5 checkpoint; unsupported options raise ``ValueError``.

    Derived values follow Transformers: ``dense_act_fn`` / ``is_gated_act`` come from
    ``feed_forward_proj`` (``"gated-gelu"`` means gated ``gelu_new``), ``num_decoder_layers`` defaults to
    ``num_layers``, and ``scale_decoder_outputs`` (multiply the decoder output by ``d_model**-0.5``
    before the LM head, original T5 only) defaults to ``tie_word_embeddings``, which is how
    Transformers 4.x told T5 from T5 v1.1 (Transformers 5 writes the flag explicitly).
    """

    model_type: ClassVar[str] = "t5"
    attribute_map: ClassVar[dict[str, str]] = {
        "hidden_size": "d_model",
        "num_attention_heads": "num_heads",
        "num_hidden_layers": "num_layers",
        "head_dim": "d_kv",
    }
    defaults: ClassVar[dict[str, Any]] = {
        "vocab_size": 32128,
        "d_model": 512,
        "d_kv": 64,
        "d_ff": 2048,
        "num_layers": 6,
        "num_decoder_layers": None,
        "num_heads": 8,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "dropout_rate": 0.1,
        "layer_norm_epsilon": 1e-6,
        "initializer_factor": 1.0,
        "feed_forward_proj": "relu",
        "is_encoder_decoder": True,
        "use_cache": True,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "classifier_dropout": 0.0,
    }

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("scale_decoder_outputs") is None:
            kwargs["scale_decoder_outputs"] = kwargs.get("tie_word_embeddings", True) is not False
        super().__init__(**kwargs)

    def validate(self) -> None:
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_layers
        for name in (
            "vocab_size",
            "d_model",
            "d_kv",
            "d_ff",
            "num_layers",
            "num_decoder_layers",
            "num_heads",
            "relative_attention_num_buckets",
            "relative_attention_max_distance",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"T5Config.{name} must be a positive integer, got {value!r}")
        if self.relative_attention_num_buckets < 4:
            raise ValueError(
                "T5Config.relative_attention_num_buckets must be >= 4 (half are exact distances, half "
                f"logarithmic, per direction), got {self.relative_attention_num_buckets}"
            )
        if self.relative_attention_max_distance <= self.relative_attention_num_buckets // 2:
            raise ValueError(
                f"T5Config.relative_attention_max_distance ({self.relative_attention_max_distance}) must exceed "
                f"relative_attention_num_buckets // 2 ({self.relative_attention_num_buckets // 2})"
            )
        proj = self.feed_forward_proj
        parts = proj.split("-") if isinstance(proj, str) else []
        if not parts or len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
            raise ValueError(
                f"T5Config.feed_forward_proj={proj!r} is not valid: use '{{ACT}}' or 'gated-{{ACT}}', "
                "e.g. 'relu' or 'gated-gelu'"
            )
        act = "gelu_new" if proj == "gated-gelu" else parts[-1]  # Transformers' backward-compatible alias
        if act not in ACTIVATIONS:
            raise ValueError(
                f"T5Config.feed_forward_proj={proj!r}: activation {act!r} is not supported; "
                f"choose one of {sorted(ACTIVATIONS)}"
            )
        self.dense_act_fn = act
        self.is_gated_act = len(parts) == 2
        if self.is_encoder_decoder is not True:
            raise ValueError(
                "T5Config.is_encoder_decoder must be true for TFT5ForConditionalGeneration "
                f"(encoder-only / decoder-only T5 is not supported), got {self.is_encoder_decoder!r}"
            )
        if not isinstance(self.scale_decoder_outputs, bool):
            raise ValueError(
                f"T5Config.scale_decoder_outputs must be true or false, got {self.scale_decoder_outputs!r}"
            )
        if not self.layer_norm_epsilon or self.layer_norm_epsilon <= 0:
            raise ValueError(f"T5Config.layer_norm_epsilon must be > 0, got {self.layer_norm_epsilon!r}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"T5Config.dropout_rate must be in [0, 1), got {self.dropout_rate!r}")

    @property
    def inner_dim(self) -> int:
        """Width of the attention projections (``num_heads * d_kv``; need not equal ``d_model``)."""
        return self.num_heads * self.d_kv
