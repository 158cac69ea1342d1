"""Read an audio file as float32 mono samples at the rate a speech model expects.

Decoding is libsndfile's (through ``soundfile``): WAV (8/16/24/32-bit PCM and float), FLAC,
OGG Vorbis/Opus and MP3, among others. Resampling is soxr's high-quality polyphase resampler.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

SUPPORTED_HINT = "WAV (PCM 8/16/24/32-bit or float), FLAC, OGG (Vorbis/Opus), MP3, AIFF"


def _describe(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes of audio>"
    return str(getattr(source, "name", repr(source)))


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample float32 ``audio`` ([samples] or [samples, channels]) from ``orig_sr`` to ``target_sr`` Hz."""
    for name, rate in (("orig_sr", orig_sr), ("target_sr", target_sr)):
        if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool) or rate <= 0:
            raise ValueError(f"{name} must be a positive integer sample rate, got {rate!r}")
    if orig_sr == target_sr or audio.shape[0] == 0:
        return np.asarray(audio, np.float32)
    import soxr

    return np.asarray(
        soxr.resample(np.asarray(audio, np.float32), int(orig_sr), int(target_sr), quality="HQ"), np.float32
    )


def load_audio(
    path: str | os.PathLike | bytes | BinaryIO, sampling_rate: int = 16000, mono: bool = True
) -> np.ndarray:
    """Decode an audio file into float32 samples in [-1, 1] at ``sampling_rate`` Hz.

    Channels are averaged into one when ``mono`` (else the result is [samples, channels]). Any
    source rate is resampled. A missing, empty, corrupt or unsupported file raises an error that
    names it: ``FileNotFoundError`` or ``ValueError``.
    """
    import soundfile as sf

    name = _describe(path)
    source = path
    if isinstance(path, (str, os.PathLike)):
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"audio file {name!r} does not exist")
        if p.is_dir():
            raise ValueError(f"audio path {name!r} is a directory, not a file")
        if p.stat().st_size == 0:
            raise ValueError(f"audio file {name!r} is empty (0 bytes)")
        source = str(p)
    elif isinstance(path, (bytes, bytearray)):
        if not path:
            raise ValueError("audio data is empty (0 bytes)")
        source = io.BytesIO(bytes(path))
    try:
        data, rate = sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise ValueError(
            f"cannot decode audio file {name!r}: {e}. It may be corrupt, truncated or in a format "
            f"libsndfile does not read (supported: {SUPPORTED_HINT})"
        ) from None
    if data.shape[0] == 0:
        raise ValueError(f"audio file {name!r} holds no samples")
    if not np.isfinite(data).all():
        raise ValueError(f"audio file {name!r} holds NaN or infinite samples")
    if mono:
        data = data.mean(axis=1)
    return resample(data, int(rate), sampling_rate)
