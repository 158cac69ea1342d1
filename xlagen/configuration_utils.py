"""Model configuration: a typed view of a checkpoint's config.json that round-trips unknown keys."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

from xlagen.loading.hub import resolve_pretrained_dir

CONFIG_NAME = "config.json"


class PretrainedConfig:
    """Base configuration; subclasses declare ``model_type`` and ``defaults``.

    Keys of config.json that xlagen does not use are kept, so ``save_pretrained`` writes a file
    Hugging Face Transformers loads back unchanged.
    """

    model_type: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    attribute_map: ClassVar[dict[str, str]] = {}

    def __init__(self, **kwargs: Any) -> None:
        values = {
            "bos_token_id": None,
            "eos_token_id": None,
            "pad_token_id": None,
            "decoder_start_token_id": None,
            "tie_word_embeddings": True,
            "is_encoder_decoder": False,
        }
        values.update(self.defaults)
        for alias, name in self.attribute_map.items():
            if alias in kwargs:
                kwargs.setdefault(name, kwargs.pop(alias))
        values.update(kwargs)
        values.pop("model_type", None)
        for key, value in values.items():
            setattr(self, key, value)
        self.validate()

    def __getattr__(self, name: str) -> Any:
        mapped = type(self).attribute_map.get(name)
        if mapped is not None:
            return getattr(self, mapped)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def validate(self) -> None:
        """Raise ``ValueError`` for options this implementation cannot honour."""

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        out["model_type"] = self.model_type
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PretrainedConfig) and self.to_dict() == other.to_dict()

    @classmethod
    def from_dict(cls, config: dict[str, Any], **overrides: Any) -> PretrainedConfig:
        values = dict(config)
        values.update(overrides)
        model_type = values.get("model_type")
        if cls.model_type and model_type and model_type != cls.model_type:
            raise ValueError(
                f"config has model_type={model_type!r} but {cls.__name__} expects {cls.model_type!r}"
            )
        return cls(**values)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> PretrainedConfig:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise OSError(f"no {CONFIG_NAME} found at {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise OSError(f"{path} is not a valid JSON config file: {e}") from None
        if not isinstance(data, dict):
            raise OSError(f"{path} must hold a JSON object")
        return cls.from_dict(data)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **overrides: Any) -> PretrainedConfig:
        """Load ``config.json`` from a local directory (or local HF cache snapshot)."""
        directory = resolve_pretrained_dir(name_or_path)
        config = cls.from_json_file(directory / CONFIG_NAME)
        for key, value in overrides.items():
            setattr(config, key, value)
        if overrides:
            config.validate()
        return config

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_NAME).write_text(self.to_json_string(), encoding="utf-8")


def load_config_dict(directory: Path) -> dict[str, Any]:
    """Read config.json as a dict, with a clear error when it is missing or malformed."""
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise OSError(f"{directory} has no {CONFIG_NAME}; is it a model directory?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise OSError(f"{path} is not a valid JSON config file: {e}") from None
    if not isinstance(data, dict):
        raise OSError(f"{path} must hold a JSON object")
    return data
