"""Audio input for speech models: file decoding, resampling, Whisper log-mel features and processors."""

from xlagen.audio.feature_extraction import (
    BatchFeature,
    WhisperFeatureExtractor,
    log_mel_spectrogram,
    mel_filter_bank,
)
from xlagen.audio.loading import load_audio, resample
from xlagen.audio.processing import AutoFeatureExtractor, AutoProcessor, WhisperProcessor

__all__ = [
    "AutoFeatureExtractor",
    "AutoProcessor",
    "BatchFeature",
    "WhisperFeatureExtractor",
    "WhisperProcessor",
    "load_audio",
    "log_mel_spectrogram",
    "mel_filter_bank",
    "resample",
]
