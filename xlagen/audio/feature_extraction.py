"""Whisper's log-mel features with TensorFlow ops, compatible with Transformers' ``WhisperFeatureExtractor``.

``log_mel_spectrogram`` is plain TensorFlow (pad or cut to 30 s, reflect-padded STFT with a periodic
Hann window, power spectrum, Slaney mel filters, log10, 8-decade dynamic range per utterance,
``(x + 4) / 4``), so it also runs inside a ``tf.function`` or an XLA-compiled program, e.g. ahead of
the encoder. ``WhisperFeatureExtractor`` wraps it with Transformers' call signature.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

PREPROCESSOR_CONFIG = "preprocessor_config.json"


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear up to 1 kHz (3 mels per 200 Hz), logarithmic above."""
    hz = np.asarray(hz, np.float64)
    mel = 3.0 * hz / 200.0
    log_step = 27.0 / np.log(6.4)
    high = hz >= 1000.0
    return np.where(high, 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) * log_step, mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    hz = 200.0 * mel / 3.0
    log_step = np.log(6.4) / 27.0
    return np.where(mel >= 15.0, 1000.0 * np.exp(log_step * (mel - 15.0)), hz)


def mel_filter_bank(
    n_fft: int = 400, n_mels: int = 80, sampling_rate: int = 16000, f_min: float = 0.0, f_max: float = 8000.0
) -> np.ndarray:
    """Slaney-normalised triangular mel filters on the Slaney mel scale, [n_fft // 2 + 1, n_mels] float32.

    The same bank as Whisper's (librosa's ``mel(norm="slaney")``): each triangle spans two
    neighbouring centre frequencies and is scaled to unit area.
    """
    bins = np.linspace(0.0, sampling_rate // 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    widths = np.diff(edges)
    offsets = edges[None, :] - bins[:, None]  # [bins, n_mels + 2]
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= 2.0 / (edges[2:] - edges[:-2])[None, :]
    return weights.astype(np.float32)


def log_mel_spectrogram(
    waveforms: tf.Tensor,
    mel_filters: tf.Tensor | np.ndarray,
    n_fft: int = 400,
    hop_length: int = 160,
    n_samples: int | None = 480000,
) -> tf.Tensor:
    """Whisper log-mel features of ``waveforms`` [batch, samples] (or [samples]) -> [batch, n_mels, frames].

    With ``n_samples`` (30 s at 16 kHz by default) every waveform is zero-padded or cut to that
    length first, giving ``n_samples // hop_length`` frames (3000); with None the input length is
    kept. The dynamic-range floor (max - 8) is per utterance, as in Transformers.
    """
    x = tf.convert_to_tensor(waveforms, tf.float32)
    if x.shape.rank == 1:
        x = x[None, :]
    if x.shape.rank != 2:
        raise ValueError(f"waveforms must be [samples] or [batch, samples], got shape {x.shape}")
    if n_samples is not None:
        x = x[:, :n_samples]
        x = tf.pad(x, [[0, 0], [0, n_samples - tf.shape(x)[1]]])
        x = tf.ensure_shape(x, [x.shape[0], n_samples])
    half = n_fft // 2
    x = tf.pad(x, [[0, 0], [half, half]], mode="REFLECT")  # torch.stft(center=True) padding
    frames = tf.signal.frame(x, n_fft, hop_length)  # [B, frames + 1, n_fft]
    frames = frames * tf.signal.hann_window(n_fft, periodic=True)
    spectrum = tf.signal.rfft(frames, fft_length=[n_fft])[:, :-1]  # drop the last frame, as Whisper does
    power = tf.math.square(tf.math.real(spectrum)) + tf.math.square(tf.math.imag(spectrum))
    mel = tf.einsum("btf,fm->bmt", power, tf.convert_to_tensor(mel_filters, tf.float32))
    log_spec = tf.math.log(tf.maximum(mel, 1e-10)) / np.log(10.0).astype(np.float32)
    floor = tf.reduce_max(log_spec, axis=[1, 2], keepdims=True) - 8.0
    return (tf.maximum(log_spec, floor) + 4.0) / 4.0


class BatchFeature(dict):
    """Features by name, also reachable as attributes (``out.input_features``), as in Transformers."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _as_waveforms(raw_speech: Any) -> list[np.ndarray]:
    """One float32 array per utterance, from an array, a list of arrays/lists, or a 2-D batch."""
    if tf.is_tensor(raw_speech):
        raw_speech = raw_speech.numpy()
    if isinstance(raw_speech, np.ndarray):
        if raw_speech.ndim == 1:
            items = [raw_speech]
        elif raw_speech.ndim == 2:
            items = list(raw_speech)
        else:
            raise ValueError(
                f"audio must be mono: [samples] or a batch [batch, samples], got shape {raw_speech.shape}"
            )
    elif isinstance(raw_speech, (list, tuple)):
        if not raw_speech:
            raise ValueError("audio is an empty list")
        first = raw_speech[0]
        nested = isinstance(first, (np.ndarray, list, tuple)) or tf.is_tensor(first)
        items = (
            [np.asarray(r.numpy() if tf.is_tensor(r) else r) for r in raw_speech]
            if nested
            else [np.asarray(raw_speech)]
        )
    else:
        raise TypeError(f"audio must be a NumPy array or a list of them, got {type(raw_speech).__name__}")
    out = []
    for i, item in enumerate(items):
        if item.dtype == object or not (
            np.issubdtype(item.dtype, np.floating) or np.issubdtype(item.dtype, np.integer)
        ):
            raise TypeError(f"audio[{i}] must hold numbers, got dtype {item.dtype}")
        if item.ndim != 1:
            raise ValueError(
                f"audio[{i}] must be mono (1-D samples), got shape {item.shape}; mix channels down first"
            )
        out.append(item.astype(np.float32))
    return out


class WhisperFeatureExtractor:
    """Raw 16 kHz audio -> log-mel ``input_features`` [batch, feature_size, 3000], like Transformers'.

    Same arguments and defaults as ``transformers.WhisperFeatureExtractor``; the spectrogram is
    computed with TensorFlow (``extract(waveforms)`` is usable inside compiled functions).
    """

    model_input_names = ["input_features"]

    def __init__(
        self,
        feature_size: int = 80,
        sampling_rate: int = 16000,
        hop_length: int = 160,
        chunk_length: int = 30,
        n_fft: int = 400,
        padding_value: float = 0.0,
        dither: float = 0.0,
        return_attention_mask: bool = False,
        **kwargs: Any,
    ) -> None:
        for name, value in (
            ("feature_size", feature_size),
            ("sampling_rate", sampling_rate),
            ("hop_length", hop_length),
            ("chunk_length", chunk_length),
            ("n_fft", n_fft),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"WhisperFeatureExtractor.{name} must be a positive integer, got {value!r}")
        self.feature_size = feature_size
        self.sampling_rate = sampling_rate
        self.hop_length = hop_length
        self.chunk_length = chunk_length
        self.n_fft = n_fft
        self.padding_value = padding_value
        self.dither = float(dither)
        self.return_attention_mask = return_attention_mask
        self.n_samples = chunk_length * sampling_rate
        self.nb_max_frames = self.n_samples // hop_length
        self.mel_filters = mel_filter_bank(n_fft, feature_size, sampling_rate)
        ignored = {
            "feature_extractor_type",
            "processor_class",
            "n_samples",
            "nb_max_frames",
            "padding_side",
            "mel_filters",
        }
        self._extra = {k: v for k, v in kwargs.items() if k not in ignored}
        self._compiled = tf.function(self.extract, reduce_retracing=True)

    def extract(self, waveforms: tf.Tensor) -> tf.Tensor:
        """Features of ``waveforms`` [batch, samples] (padded or cut to ``chunk_length`` seconds) in TF ops."""
        return log_mel_spectrogram(waveforms, self.mel_filters, self.n_fft, self.hop_length, self.n_samples)

    def __call__(
        self,
        raw_speech: Any,
        truncation: bool = True,
        pad_to_multiple_of: int | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool | None = None,
        padding: str | bool | None = "max_length",
        max_length: int | None = None,
        sampling_rate: int | None = None,
        do_normalize: bool | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """Featurize one waveform or a batch; ``input_features`` is [batch, feature_size, frames].

        Only 30-second windows are produced (``padding="max_length"``, ``truncation=True``), what
        short-form transcription uses. ``return_tensors``: None or "np" (NumPy) or "tf".
        """
        kwargs.pop("device", None)
        if kwargs:
            raise TypeError(f"WhisperFeatureExtractor got unexpected arguments {sorted(kwargs)}")
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            raise ValueError(
                f"audio sampled at {sampling_rate} Hz, but this feature extractor expects {self.sampling_rate} Hz; "
                "resample first (xlagen.audio.load_audio / resample do that)"
            )
        if padding not in ("max_length", True, None) or not truncation or pad_to_multiple_of:
            raise ValueError(
                "only padding='max_length' with truncation=True (30-second windows) is supported so far"
            )
        if return_tensors not in (None, "np", "tf"):
            raise ValueError(f"return_tensors must be None, 'np' or 'tf' (got {return_tensors!r})")
        n_samples = max_length or self.n_samples
        waves = _as_waveforms(raw_speech)
        batch = np.full([len(waves), n_samples], self.padding_value, np.float32)
        lengths = []
        for row, wave in enumerate(waves):
            n = min(len(wave), n_samples)
            if do_normalize:
                part = wave[:n]
                wave = (wave - part.mean()) / np.sqrt(part.var() + 1e-7)
            batch[row, :n] = wave[:n]
            lengths.append(n)
        if self.dither:
            batch = batch + self.dither * np.random.default_rng().standard_normal(batch.shape).astype(
                np.float32
            )
        if n_samples == self.n_samples:
            features = self._compiled(tf.constant(batch))
        else:
            features = log_mel_spectrogram(batch, self.mel_filters, self.n_fft, self.hop_length, n_samples)
        out = BatchFeature(input_features=features if return_tensors == "tf" else features.numpy())
        want_mask = self.return_attention_mask if return_attention_mask is None else return_attention_mask
        if want_mask:
            samples = np.arange(n_samples)[None, :] < np.asarray(lengths)[:, None]
            mask = samples[:, :: self.hop_length].astype(np.int32)
            if n_samples % self.hop_length:
                mask = mask[:, :-1]
            out["attention_mask"] = tf.constant(mask) if return_tensors == "tf" else mask
        return out

    # -- save / load ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = {
            "chunk_length": self.chunk_length,
            "dither": self.dither,
            "feature_extractor_type": "WhisperFeatureExtractor",
            "feature_size": self.feature_size,
            "hop_length": self.hop_length,
            "n_fft": self.n_fft,
            "n_samples": self.n_samples,
            "nb_max_frames": self.nb_max_frames,
            "padding_side": "right",
            "padding_value": self.padding_value,
            "processor_class": "WhisperProcessor",
            "return_attention_mask": self.return_attention_mask,
            "sampling_rate": self.sampling_rate,
        }
        out.update(self._extra)
        return out

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / PREPROCESSOR_CONFIG).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> WhisperFeatureExtractor:
        """Read ``preprocessor_config.json``; without one, size the mel bank from the model itself
        (config.json's ``num_mel_bins``, or the CTranslate2 ``model.bin`` conv1 weight)."""
        from xlagen.loading.hub import resolve_pretrained_dir

        for unsupported in ("cache_dir", "revision", "token", "use_auth_token", "local_files_only"):
            kwargs.pop(unsupported, None)
        directory = resolve_pretrained_dir(pretrained_model_name_or_path)
        path = directory / PREPROCESSOR_CONFIG
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise OSError(f"{path} is not valid JSON: {e}") from None
            if not isinstance(data, dict):
                raise OSError(f"{path} must hold a JSON object")
            kind = data.get("feature_extractor_type")
            if kind not in (None, "WhisperFeatureExtractor"):
                raise ValueError(f"{path} describes a {kind}, not a WhisperFeatureExtractor")
        else:
            data = {"feature_size": _num_mel_bins(directory)}
        data.update(kwargs)
        return cls(**data)

    def __repr__(self) -> str:
        return f"WhisperFeatureExtractor {json.dumps(self.to_dict(), indent=2, sort_keys=True)}"


def _num_mel_bins(directory: Path) -> int:
    from xlagen.loading.ctranslate2 import is_ctranslate2_dir, read_ctranslate2_shapes

    if is_ctranslate2_dir(directory):
        return int(read_ctranslate2_shapes(directory)["encoder/conv1/weight"][1])
    config_path = directory / "config.json"
    if config_path.is_file():
        try:
            value = json.loads(config_path.read_text(encoding="utf-8")).get("num_mel_bins")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            value = None
        if isinstance(value, int) and value > 0:
            return value
    raise OSError(
        f"{directory} has no {PREPROCESSOR_CONFIG} and no Whisper config.json with num_mel_bins; "
        "cannot tell how many mel bins the model takes"
    )
