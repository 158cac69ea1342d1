"""Audio decoding/resampling and Whisper log-mel features against Transformers' WhisperFeatureExtractor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf
import transformers

import xlagen
from xlagen.audio import (
    AutoProcessor,
    WhisperFeatureExtractor,
    WhisperProcessor,
    load_audio,
    log_mel_spectrogram,
    mel_filter_bank,
    resample,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "audio"
SHARED_STEREO = Path("/work/shared/data/speech/dev_03.wav")  # 44.1 kHz stereo, used when present


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return load_audio(FIXTURES / "dev_09.wav")


@pytest.fixture(scope="module")
def stereo_44k(tmp_path_factory, clip) -> Path:
    """A 44.1 kHz stereo 24-bit WAV made from a real clip (channels at different gains)."""
    path = tmp_path_factory.mktemp("audio") / "stereo_44k.wav"
    up = resample(clip, 16000, 44100)
    sf.write(path, np.stack([0.9 * up, 0.5 * up], axis=1), 44100, subtype="PCM_24")
    return path


def hf_features(audio, feature_size=80) -> np.ndarray:
    fe = transformers.WhisperFeatureExtractor(feature_size=feature_size)
    return fe(audio, sampling_rate=16000, return_tensors="np").input_features


def test_fixture_clips_decode(clip):
    assert clip.dtype == np.float32 and clip.ndim == 1
    assert len(clip) == sf.info(FIXTURES / "dev_09.wav").frames
    flac = load_audio(FIXTURES / "dev_07.flac")
    assert flac.dtype == np.float32 and 3.5 * 16000 < len(flac) < 4.5 * 16000
    assert 0.01 < np.abs(flac).max() <= 1.0


@pytest.mark.parametrize(
    ("fmt", "subtype", "ext", "tol"),
    [
        ("WAV", "PCM_16", "wav", 1e-4),
        ("WAV", "PCM_24", "wav", 1e-6),
        ("WAV", "PCM_32", "wav", 1e-6),
        ("WAV", "FLOAT", "wav", 0.0),
        ("FLAC", "PCM_16", "flac", 1e-4),
        ("OGG", "VORBIS", "ogg", None),
        ("MP3", "MPEG_LAYER_III", "mp3", None),
    ],
)
def test_formats(tmp_path, clip, fmt, subtype, ext, tol):
    path = tmp_path / f"clip.{ext}"
    sf.write(path, clip, 16000, format=fmt, subtype=subtype)
    got = load_audio(path)
    if tol is not None:
        assert got.shape == clip.shape
        assert np.abs(got - clip).max() <= tol
    else:  # lossy codecs: same length up to codec padding, and the same waveform shape
        assert abs(len(got) - len(clip)) < 2400
        n = min(len(got), len(clip))
        lag = int(np.argmax(np.correlate(got[:n][:8000], clip[:8000], "full"))) - 7999
        a, b = (got[lag:n], clip[: n - lag]) if lag >= 0 else (got[: n + lag], clip[-lag:n])
        assert np.corrcoef(a, b)[0, 1] > 0.9


def test_stereo_44k_is_mixed_down_and_resampled(stereo_44k, clip):
    got = load_audio(stereo_44k)
    assert got.ndim == 1 and abs(len(got) - len(clip)) <= 2
    n = min(len(got), len(clip))
    diff = got[:n] - 0.7 * clip[:n]  # mean of 0.9x and 0.5x; the round trip only dulls the band edge
    assert np.abs(diff).max() < 1e-2 and np.sqrt(np.mean(diff**2)) < 1e-3
    both = load_audio(stereo_44k, mono=False)
    assert both.shape[1] == 2


def test_resample_rates(clip):
    assert len(resample(clip, 16000, 8000)) == (len(clip) + 1) // 2
    with pytest.raises(ValueError, match="orig_sr must be a positive integer"):
        resample(clip, 0, 16000)


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        load_audio(missing)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.wav.*empty"):
        load_audio(empty)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 7)
    with pytest.raises(ValueError, match=r"cannot decode audio file .*corrupt.wav"):
        load_audio(corrupt)
    text = tmp_path / "notes.txt"
    text.write_text("this is not audio\n" * 20)
    with pytest.raises(ValueError, match=r"cannot decode audio file .*notes.txt"):
        load_audio(text)
    no_samples = tmp_path / "silent.wav"
    sf.write(no_samples, np.zeros([0], np.float32), 16000)
    with pytest.raises(ValueError, match=r"silent.wav.*no samples"):
        load_audio(no_samples)
    with pytest.raises(ValueError, match="is a directory"):
        load_audio(tmp_path)


def test_load_from_bytes(clip):
    got = load_audio((FIXTURES / "dev_09.wav").read_bytes())
    np.testing.assert_array_equal(got, clip)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_match_transformers(n_mels):
    ref = transformers.WhisperFeatureExtractor(feature_size=n_mels).mel_filters
    assert np.abs(mel_filter_bank(400, n_mels) - ref).max() < 1e-7


def test_features_match_transformers_on_real_clips(stereo_44k):
    clips = [load_audio(FIXTURES / "dev_07.flac"), load_audio(stereo_44k)]
    if SHARED_STEREO.is_file():
        clips.append(load_audio(SHARED_STEREO))
    fe = WhisperFeatureExtractor()
    for audio in clips:  # one at a time, as Transformers' reference runs per utterance
        got = fe(audio, sampling_rate=16000).input_features
        assert got.shape == (1, 80, 3000)
        assert np.abs(got - hf_features(audio)).max() <= 1e-3
    batch = fe(clips[:2], sampling_rate=16000, return_tensors="tf").input_features
    assert isinstance(batch, tf.Tensor)
    assert np.abs(batch.numpy() - hf_features(clips[:2])).max() <= 1e-3


def test_128_mels_and_long_audio_truncated(clip):
    long = np.concatenate([clip] * 9)  # > 30 s: cut to 30 s
    fe = WhisperFeatureExtractor(feature_size=128)
    got = fe(long, sampling_rate=16000).input_features
    assert got.shape == (1, 128, 3000)
    assert np.abs(got - hf_features(long, 128)).max() <= 1e-3


def test_features_inside_xla(clip):
    mel = mel_filter_bank(400, 80)
    run = tf.function(lambda w: log_mel_spectrogram(w, mel), jit_compile=True)
    got = run(tf.constant(clip[None, :]))
    assert np.abs(got.numpy() - hf_features(clip)).max() <= 1e-3


def test_feature_extractor_arguments(clip):
    fe = WhisperFeatureExtractor()
    with pytest.raises(ValueError, match="sampled at 44100 Hz"):
        fe(clip, sampling_rate=44100)
    with pytest.raises(ValueError, match="must be mono"):
        fe(np.zeros([2, 2, 100], np.float32))
    with pytest.raises(ValueError, match="return_tensors"):
        fe(clip, return_tensors="pt")
    out = fe([clip, clip[:16000]], sampling_rate=16000, return_attention_mask=True)
    ref = transformers.WhisperFeatureExtractor()(
        [clip, clip[:16000]], sampling_rate=16000, return_attention_mask=True, return_tensors="np"
    )
    np.testing.assert_array_equal(out.attention_mask, ref["attention_mask"])
    normed = fe(clip, sampling_rate=16000, do_normalize=True).input_features
    ref_normed = transformers.WhisperFeatureExtractor()(
        clip, sampling_rate=16000, do_normalize=True, return_tensors="np"
    ).input_features
    assert np.abs(normed - ref_normed).max() <= 1e-3


def test_processor_round_trip(tmp_path, clip):
    pt_model_dir = tmp_path / "model"
    from tests.models.test_whisper import write_whisper

    write_whisper(pt_model_dir)
    fe = WhisperFeatureExtractor()
    fe.save_pretrained(pt_model_dir)
    saved = json.loads((pt_model_dir / "preprocessor_config.json").read_text())
    assert saved["feature_extractor_type"] == "WhisperFeatureExtractor" and saved["feature_size"] == 80
    assert transformers.WhisperFeatureExtractor.from_pretrained(pt_model_dir).feature_size == 80
    (pt_model_dir / "tokenizer.json").write_bytes(_tiny_tokenizer_json())
    processor = AutoProcessor.from_pretrained(pt_model_dir)
    assert isinstance(processor, WhisperProcessor)
    assert processor(clip, sampling_rate=16000, return_tensors="tf").input_features.shape == (1, 80, 3000)
    assert processor.batch_decode([[0, 1, 2]], skip_special_tokens=True) == ["abc"]
    assert xlagen.WhisperProcessor is WhisperProcessor


def _tiny_tokenizer_json() -> bytes:
    from tokenizers import Tokenizer, models

    tok = Tokenizer(models.WordLevel({"a": 0, "b": 1, "c": 2, "[UNK]": 3}, unk_token="[UNK]"))
    from tokenizers import decoders

    tok.decoder = decoders.Fuse()
    return tok.to_str().encode()
