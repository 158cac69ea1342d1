"""GenerationConfig: generation options with Transformers' names and defaults, validated up front."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

GENERATION_CONFIG_NAME = "generation_config.json"

# name -> default (Transformers' defaults)
_DEFAULTS: dict[str, Any] = {
    "max_length": 20,
    "max_new_tokens": None,
    "min_length": 0,
    "min_new_tokens": None,
    "early_stopping": False,
    "do_sample": False,
    "num_beams": 1,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "num_return_sequences": 1,
    "output_scores": False,
    "output_logits": False,
    "return_dict_in_generate": False,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "length_penalty": 1.0,
    "use_cache": True,
    "pad_token_id": None,
    "bos_token_id": None,
    "eos_token_id": None,
    "decoder_start_token_id": None,
}

# Options accepted for compatibility that do not change what generate() computes here.
_IGNORED = {
    "use_cache",
    "output_attentions",
    "output_hidden_states",
    "transformers_version",
    "_from_model_config",
}


class GenerationConfig:
    """Options of ``generate``; unknown names raise, and ``validate`` checks every value."""

    def __init__(self, **kwargs: Any) -> None:
        for key, value in _DEFAULTS.items():
            setattr(self, key, copy.deepcopy(value))
        self._extra: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key in _DEFAULTS:
                setattr(self, key, value)
            else:
                self._extra[key] = value  # kept for save/load round trips (e.g. Whisper's fields)

    @classmethod
    def from_model_config(cls, config: Any) -> GenerationConfig:
        """The generation options a model config carries: its special tokens and, as in Transformers,
        any generation option an older config.json holds (BART's ``no_repeat_ngram_size``, Marian's
        ``bad_words_ids``, ``num_beams`` ...), used when there is no generation_config.json."""
        data = config.to_dict() if hasattr(config, "to_dict") else dict(vars(config))
        keys = [k for k in _DEFAULTS if k not in _IGNORED]
        return cls(**{k: data[k] for k in keys if data.get(k) is not None})

    @classmethod
    def from_pretrained_dir(cls, directory: Path, model_config: Any = None) -> GenerationConfig:
        path = Path(directory) / GENERATION_CONFIG_NAME
        if not path.is_file():
            return cls.from_model_config(model_config) if model_config is not None else cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise OSError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise OSError(f"{path} must hold a JSON object")
        return cls(**data)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike) -> GenerationConfig:
        from xlagen.loading.hub import resolve_pretrained_dir

        return cls.from_pretrained_dir(resolve_pretrained_dir(name_or_path))

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in _DEFAULTS if getattr(self, k) != _DEFAULTS[k]}
        out.update({k: v for k, v in self._extra.items() if k not in _IGNORED})
        return out

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / GENERATION_CONFIG_NAME).write_text(
            json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8"
        )

    def update(self, **kwargs: Any) -> GenerationConfig:
        """Return a copy with ``kwargs`` applied; an unknown option raises ``ValueError``."""
        new = copy.deepcopy(self)
        unknown = [k for k in kwargs if k not in _DEFAULTS and k not in _IGNORED]
        if unknown:
            raise ValueError(
                f"generate() got unknown or unsupported argument(s) {sorted(unknown)}; "
                "see xlagen.GenerationConfig for the options"
            )
        for key, value in kwargs.items():
            if key in _DEFAULTS:
                setattr(new, key, value)
        return new

    def __repr__(self) -> str:
        return f"GenerationConfig({self.to_dict()})"

    @property
    def eos_token_ids(self) -> list[int]:
        eos = self.eos_token_id
        if eos is None:
            return []
        return [eos] if isinstance(eos, int) else list(eos)
