"""Llama configuration (same keys as Hugging Face's LlamaConfig)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from xlagen.configuration_utils import PretrainedConfig
from xlagen.models.activations import ACTIVATIONS

_LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


class LlamaConfig(PretrainedConfig):
    """Hyper-parameters of a Llama checkpoint; unsupported options raise ``ValueError``.

    Supported so far: default rotary embeddings (``rope_theta``), grouped-query attention
    (``num_key_value_heads``), explicit ``head_dim``, ``attention_bias``, ``mlp_bias``, tied or
    untied embeddings, ``rope_scaling`` types ``linear`` and ``llama3`` (others are refused).
    """

    model_type: ClassVar[str] = "llama"
    defaults: ClassVar[dict[str, Any]] = {
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": None,
        "head_dim": None,
        "hidden_act": "silu",
        "max_position_embeddings": 2048,
        "initializer_range": 0.02,
        "rms_norm_eps": 1e-6,
        "use_cache": True,
        "pad_token_id": None,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "tie_word_embeddings": False,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
    }

    def validate(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if (
            self.head_dim is None
            and isinstance(self.num_attention_heads, int)
            and self.num_attention_heads > 0
        ):
            self.head_dim = self.hidden_size // self.num_attention_heads
        name = type(self).__name__
        for key in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "max_position_embeddings",
        ):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name}.{key} must be a positive integer, got {value!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"{name}: num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(
                f"{name}.hidden_act={self.hidden_act!r} is not supported; choose one of {sorted(ACTIVATIONS)}"
            )
        # Transformers 5 writes `rope_parameters` (theta and type together); 4.x checkpoints have
        # top-level `rope_theta` and `rope_scaling`.
        params = getattr(self, "rope_parameters", None) or {}
        if not isinstance(params, dict):
            raise ValueError(f"{name}.rope_parameters must be a mapping, got {params!r}")
        if "rope_theta" in params:
            self.rope_theta = params["rope_theta"]
        scaling = self.rope_scaling or (params if params.get("rope_type", "default") != "default" else None)
        if scaling is not None and not isinstance(scaling, dict):
            raise ValueError(f"{name}.rope_scaling must be a mapping or null, got {scaling!r}")
        rope_type = None if not scaling else scaling.get("rope_type", scaling.get("type"))
        self._rope = dict(scaling or {}, rope_type=rope_type or "default")
        if rope_type in ("linear", "llama3"):
            need = ("factor",) if rope_type == "linear" else _LLAMA3_KEYS
            missing = [
                k
                for k in need
                if not isinstance(scaling.get(k), int | float) or isinstance(scaling.get(k), bool)
            ]
            if missing:
                raise ValueError(
                    f"{name}.rope_scaling ({rope_type}) needs numbers for {missing}, got {scaling!r}"
                )
        elif rope_type not in (None, "default"):
            raise ValueError(
                f"{name}.rope_scaling type {rope_type!r} is not supported yet (default, linear, llama3 are)"
            )
        if (
            isinstance(self.rope_theta, bool)
            or not isinstance(self.rope_theta, int | float)
            or self.rope_theta <= 0
        ):
            raise ValueError(f"{name}.rope_theta must be a positive number, got {self.rope_theta!r}")
        if self.pretraining_tp != 1:
            raise ValueError(f"{name}.pretraining_tp={self.pretraining_tp!r} is not supported (only 1)")
        for key in ("attention_bias", "mlp_bias", "tie_word_embeddings"):
            if getattr(self, key) is None:
                setattr(self, key, False)
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"{name}.{key} must be true or false, got {getattr(self, key)!r}")
        self.layer_windows()  # checks layer_types / sliding_window

    def rope_inv_freq(self) -> np.ndarray:
        """The rotary frequencies [head_dim / 2], float32 as Transformers computes them (default,
        ``linear``: divided by the factor, ``llama3``: long wavelengths divided, a smooth blend between)."""
        d = self.head_dim
        inv = (
            1.0 / (np.float32(self.rope_theta) ** (np.arange(0, d, 2, dtype=np.float32) / np.float32(d)))
        ).astype(np.float32)
        rope = getattr(self, "_rope", None) or {"rope_type": "default"}
        if rope["rope_type"] == "linear":
            return (inv / np.float32(rope["factor"])).astype(np.float32)
        if rope["rope_type"] == "llama3":
            factor, low, high = (
                np.float32(rope[k]) for k in ("factor", "low_freq_factor", "high_freq_factor")
            )
            old = np.float32(rope["original_max_position_embeddings"])
            wavelen = np.float32(2 * math.pi) / inv
            scaled = np.where(wavelen > old / low, inv / factor, inv)
            smooth = (old / wavelen - low) / (high - low)
            smoothed = (1 - smooth) * scaled / factor + smooth * scaled
            medium = ~(wavelen < old / high) & ~(wavelen > old / low)
            return np.where(medium, smoothed, scaled).astype(np.float32)
        return inv

    def layer_windows(self) -> list[int | None]:
        """Each layer's sliding attention window (None: full attention), from ``layer_types`` when
        the config has them (Transformers 5), else from the family's older keys."""
        n, name = self.num_hidden_layers, type(self).__name__
        window = getattr(self, "sliding_window", None)
        types = getattr(self, "layer_types", None)
        if types is None:
            if self.model_type == "mistral":
                types = ["sliding_attention" if window else "full_attention"] * n
            elif self.model_type in ("qwen2", "qwen3"):
                first = getattr(self, "max_window_layers", n)
                on = bool(getattr(self, "use_sliding_window", False))
                types = ["sliding_attention" if on and i >= first else "full_attention" for i in range(n)]
            else:
                types = ["full_attention"] * n
        if len(types) != n or any(t not in ("full_attention", "sliding_attention") for t in types):
            raise ValueError(
                f"{name}.layer_types must list 'full_attention' / 'sliding_attention' for each of the "
                f"{n} layers, got {types!r}"
            )
        if "sliding_attention" in types and (
            not isinstance(window, int) or isinstance(window, bool) or window <= 0
        ):
            raise ValueError(
                f"{name}.sliding_window must be a positive integer for sliding layers, got {window!r}"
            )
        return [window if t == "sliding_attention" else None for t in types]


class MistralConfig(LlamaConfig):
    """Mistral: Llama with a sliding attention window on every layer (``sliding_window``, null: none)."""

    model_type: ClassVar[str] = "mistral"
    defaults: ClassVar[dict[str, Any]] = {
        **LlamaConfig.defaults,
        "sliding_window": 4096,
        "rope_theta": 10000.0,
    }


class Qwen2Config(LlamaConfig):
    """Qwen2: Llama with q/k/v biases; sliding windows per layer (``layer_types``, or
    ``use_sliding_window`` from layer ``max_window_layers`` on)."""

    model_type: ClassVar[str] = "qwen2"
    defaults: ClassVar[dict[str, Any]] = {
        **LlamaConfig.defaults,
        "use_sliding_window": False,
        "sliding_window": 4096,
        "max_window_layers": 28,
        "layer_types": None,
    }


class Qwen3Config(Qwen2Config):
    """Qwen3: Qwen2's windows, RMSNorm on each head's queries and keys, biases per ``attention_bias``."""

    model_type: ClassVar[str] = "qwen3"
    defaults: ClassVar[dict[str, Any]] = {**Qwen2Config.defaults, "head_dim": 128}
