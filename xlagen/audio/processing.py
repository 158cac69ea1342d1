"""``WhisperProcessor``: the feature extractor and the tokenizer behind one object, as in Transformers."""

from __future__ import annotations

import json
import os
from typing import Any

from xlagen.audio.feature_extraction import PREPROCESSOR_CONFIG, BatchFeature, WhisperFeatureExtractor


class WhisperProcessor:
    """Audio -> ``input_features`` (``WhisperFeatureExtractor``); token ids <-> text (the tokenizer).

    ``processor(audio, sampling_rate=16000, return_tensors="tf").input_features`` and
    ``processor.batch_decode(ids, skip_special_tokens=True)`` work as in Transformers.
    """

    attributes = ["feature_extractor", "tokenizer"]

    def __init__(self, feature_extractor: WhisperFeatureExtractor, tokenizer: Any) -> None:
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> WhisperProcessor:
        """Load both parts from a model directory (Transformers or CTranslate2 layout)."""
        from xlagen.tokenization import AutoTokenizer

        feature_extractor = WhisperFeatureExtractor.from_pretrained(pretrained_model_name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs)
        return cls(feature_extractor, tokenizer)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        self.feature_extractor.save_pretrained(save_directory)
        self.tokenizer.save_pretrained(save_directory)

    def __call__(
        self,
        audio: Any = None,
        sampling_rate: int | None = None,
        text: Any = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Features of ``audio`` and/or token ids of ``text`` (as ``labels`` when both are given)."""
        if audio is None and text is None:
            raise ValueError("pass audio (raw waveforms) and/or text")
        if audio is None:
            return self.tokenizer(text, return_tensors=return_tensors, **kwargs)
        inputs = self.feature_extractor(
            audio, sampling_rate=sampling_rate, return_tensors=return_tensors, **kwargs
        )
        if text is not None:
            inputs["labels"] = self.tokenizer(text, return_tensors=return_tensors)["input_ids"]
        return inputs

    def batch_decode(self, sequences: Any, *args: Any, **kwargs: Any) -> list[Any]:
        """Decode each sequence (``decode``'s options, timestamps included)."""
        if kwargs.get("output_offsets") or kwargs.get("decode_with_timestamps"):
            rows = sequences.numpy() if hasattr(sequences, "numpy") else sequences
            return [self.decode(row, *args, **kwargs) for row in rows]
        return self.tokenizer.batch_decode(sequences, *args, **kwargs)

    def decode(
        self,
        token_ids: Any,
        skip_special_tokens: bool = False,
        output_offsets: bool = False,
        decode_with_timestamps: bool = False,
        time_offset: float = 0.0,
        **kwargs: Any,
    ) -> Any:
        """Text of ``token_ids``, as Transformers' ``WhisperTokenizer.decode``: ``decode_with_timestamps``
        writes timestamp tokens as ``<|1.08|>``; ``output_offsets`` returns ``{"text", "offsets":
        [{"text", "timestamp": (start, end)}]}``. Works with tokenizer files that stop before the
        timestamp tokens (CTranslate2's, OpenAI's): their ids follow ``<|notimestamps|>``."""
        from xlagen.models.whisper.decoding import decode_with_timestamps as with_stamps
        from xlagen.models.whisper.decoding import flat_ids, timestamp_begin_of, timestamp_offsets

        if not (output_offsets or decode_with_timestamps):
            return self.tokenizer.decode(token_ids, skip_special_tokens=skip_special_tokens, **kwargs)
        if decode_with_timestamps:
            text = with_stamps(self.tokenizer, token_ids, skip_special_tokens, time_offset)
        else:
            begin = timestamp_begin_of(self.tokenizer)
            ids = [int(t) for t in flat_ids(token_ids) if int(t) < begin]
            text = self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens, **kwargs)
        if not output_offsets:
            return text
        return {"text": text, "offsets": timestamp_offsets(self.tokenizer, token_ids, time_offset)}

    @property
    def model_input_names(self) -> list[str]:
        return list(self.feature_extractor.model_input_names)

    def __repr__(self) -> str:
        return f"WhisperProcessor(feature_extractor={self.feature_extractor!r}, tokenizer={self.tokenizer!r})"


def _is_whisper_dir(directory) -> bool:
    from xlagen.loading.ctranslate2 import is_ctranslate2_dir

    if is_ctranslate2_dir(directory):
        return True
    for name, key, value in (
        (PREPROCESSOR_CONFIG, "feature_extractor_type", "WhisperFeatureExtractor"),
        ("config.json", "model_type", "whisper"),
    ):
        path = directory / name
        if path.is_file():
            try:
                if json.loads(path.read_text(encoding="utf-8")).get(key) == value:
                    return True
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                pass
    return False


class AutoProcessor:
    """Pick the processor for a model directory (Whisper only so far)."""

    def __init__(self) -> None:
        raise OSError("use AutoProcessor.from_pretrained(directory)")

    @staticmethod
    def from_pretrained(pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> WhisperProcessor:
        from xlagen.loading.hub import resolve_pretrained_dir

        directory = resolve_pretrained_dir(pretrained_model_name_or_path)
        if not _is_whisper_dir(directory):
            raise ValueError(
                f"{directory}: no processor for this model (xlagen has processors for Whisper only)"
            )
        return WhisperProcessor.from_pretrained(directory, **kwargs)


class AutoFeatureExtractor:
    """Pick the feature extractor for a model directory (Whisper only so far)."""

    def __init__(self) -> None:
        raise OSError("use AutoFeatureExtractor.from_pretrained(directory)")

    @staticmethod
    def from_pretrained(
        pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> WhisperFeatureExtractor:
        from xlagen.loading.hub import resolve_pretrained_dir

        directory = resolve_pretrained_dir(pretrained_model_name_or_path)
        if not _is_whisper_dir(directory):
            raise ValueError(f"{directory}: no feature extractor for this model (Whisper only so far)")
        return WhisperFeatureExtractor.from_pretrained(directory, **kwargs)


__all__ = ["AutoFeatureExtractor", "AutoProcessor", "BatchFeature", "WhisperProcessor"]
