"""Llama configuration (same keys as Hugging Face's LlamaConfig)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from xlagen.configuration_utils import PretrainedConfig
from xlagen.models.activations import ACTIVATIONS

# The numbers each rope_scaling type needs (Transformers 5's modeling_rope_utils).
_ROPE_NUMBERS = {
    "linear": ("factor",),
    "dynamic": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
    "yarn": ("factor", "original_max_position_embeddings"),
}
_YARN_OPTIONAL = ("attention_factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


class LlamaConfig(PretrainedConfig):
    """Hyper-parameters of a Llama checkpoint; unsupported options raise ``ValueError``.

    Supported so far: default rotary embeddings (``rope_theta``), grouped-query attention
    (``num_key_value_heads``), explicit ``head_dim``, ``attention_bias``, ``mlp_bias``, tied or
    untied embeddings, ``rope_scaling`` types ``linear``, ``llama3``, ``yarn`` and ``dynamic``
    (others, e.g. ``longrope``, are refused).
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
        if rope_type in _ROPE_NUMBERS:
            rope = self._rope
            if rope_type == "yarn":
                # Transformers 5: a top-level original_max_position_embeddings wins, then the
                # scaling's own, then max_position_embeddings; a null factor is their ratio.
                top = getattr(self, "original_max_position_embeddings", None)
                rope["original_max_position_embeddings"] = (
                    top or rope.get("original_max_position_embeddings") or self.max_position_embeddings
                )
                if rope.get("factor") is None and _is_number(rope["original_max_position_embeddings"]):
                    rope["factor"] = self.max_position_embeddings / rope["original_max_position_embeddings"]
            missing = [k for k in _ROPE_NUMBERS[rope_type] if not _is_number(rope.get(k))]
            if rope_type == "yarn":
                missing += [k for k in _YARN_OPTIONAL if rope.get(k) is not None and not _is_number(rope[k])]
                if not isinstance(rope.get("truncate", True), bool):
                    missing.append("truncate (true or false)")
            if missing:
                raise ValueError(
                    f"{name}.rope_scaling ({rope_type}) needs numbers for {missing}, got {scaling!r}"
                )
            if rope.get("partial_rotary_factor", 1.0) != 1.0:
                raise ValueError(
                    f"{name}.rope_scaling partial_rotary_factor={rope['partial_rotary_factor']!r} is not "
                    "supported (Llama rotates the whole head)"
                )
        elif rope_type not in (None, "default"):
            raise ValueError(
                f"{name}.rope_scaling type {rope_type!r} is not supported yet "
                "(default, linear, llama3, dynamic, yarn are)"
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
        """The rotary frequencies [head_dim / 2], float32 as Transformers 5 computes them (default,
        ``linear``: divided by the factor, ``llama3``: long wavelengths divided, a smooth blend
        between, ``yarn``: interpolated/extrapolated per dimension, ``dynamic``: the unscaled
        frequencies, used while the sequence fits ``max_position_embeddings``)."""
        d = self.head_dim
        exponents = np.arange(0, d, 2, dtype=np.float32) / np.float32(d)
        inv = (1.0 / (np.float32(self.rope_theta) ** exponents)).astype(np.float32)
        rope = getattr(self, "_rope", None) or {"rope_type": "default"}
        if rope["rope_type"] == "linear":
            return (inv / np.float32(rope["factor"])).astype(np.float32)
        if rope["rope_type"] == "dynamic":
            # _compute_dynamic_ntk_parameters at seq_len = max_position_embeddings, base in float64
            factor, n = rope["factor"], self.max_position_embeddings
            base = self.rope_theta * ((factor * n / n) - (factor - 1)) ** (d / (d - 2))
            return (1.0 / (np.float32(base) ** exponents)).astype(np.float32)
        if rope["rope_type"] == "yarn":
            return self._yarn_inv_freq(exponents)
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

    def _yarn_inv_freq(self, exponents: np.ndarray) -> np.ndarray:
        """YaRN (Transformers' ``_compute_yarn_parameters``): dimensions rotating more than
        ``beta_fast`` times over the original context keep their frequency, fewer than
        ``beta_slow`` are divided by the factor, a linear ramp between."""
        rope, d, base = self._rope, self.head_dim, self.rope_theta
        original = rope["original_max_position_embeddings"]
        beta_fast, beta_slow = rope.get("beta_fast") or 32, rope.get("beta_slow") or 1

        def correction_dim(rotations: float) -> float:
            return (d * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

        low, high = correction_dim(beta_fast), correction_dim(beta_slow)
        if rope.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, d - 1)
        if low == high:
            high += 0.001  # Transformers' guard against a zero-width ramp
        ramp = (np.arange(d // 2, dtype=np.float32) - np.float32(low)) / np.float32(high - low)
        extrapolation = np.float32(1) - np.clip(ramp, 0, 1).astype(np.float32)
        pos_freqs = (np.float32(base) ** exponents).astype(np.float32)
        interpolation = (1.0 / (np.float32(rope["factor"]) * pos_freqs)).astype(np.float32)
        extrapolated = (1.0 / pos_freqs).astype(np.float32)
        return (interpolation * (1 - extrapolation) + extrapolated * extrapolation).astype(np.float32)

    def rope_attention_scaling(self) -> float:
        """The factor Transformers multiplies cos and sin by: YaRN's ``attention_factor`` (given,
        or from ``mscale`` / ``mscale_all_dim`` / the factor), 1 for every other type."""
        rope = getattr(self, "_rope", None) or {"rope_type": "default"}
        if rope["rope_type"] != "yarn":
            return 1.0
        if rope.get("attention_factor") is not None:
            return float(rope["attention_factor"])
        factor, mscale, mscale_all_dim = rope["factor"], rope.get("mscale"), rope.get("mscale_all_dim")
        if mscale and mscale_all_dim:
            return float(_yarn_mscale(factor, mscale) / _yarn_mscale(factor, mscale_all_dim))
        return _yarn_mscale(factor)

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
