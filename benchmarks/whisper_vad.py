"""Voice activity detection (issue #16): speech separated by long, noisy silences, transcribed with VAD
off and on, and the batched VAD mode next to faster-whisper's ``BatchedInferencePipeline``.

    .venv/bin/python benchmarks/whisper_vad.py --faster-whisper ~/.cache/xlagen-bench/venvs/fw/bin/python

The long-silence recording: the 12 short clips of the speech set, each after 15-20 s of low noise
(seeded; Gaussian, standard deviation 0.003, also under the speech), ~4.5 minutes. Rows: xlagen's
sequential recipe with VAD off and on (greedy, timestamps, temperature fallback), faster-whisper's
``WhisperModel`` likewise (``condition_on_previous_text=False``), then the batched modes (batch 8,
greedy, timestamps): xlagen with and without VAD and faster-whisper's ``BatchedInferencePipeline``
(VAD, its default; ``without_timestamps=False``) on the long-silence recording and on dev_long.wav,
then both without timestamps ("no ts", the pipeline's default: one segment per chunk). Times are warm (each
configuration runs once before it is timed: XLA compiles are not counted), audio seconds per wall
second. "segments in silence": segments that overlap no clip; "silence covered": seconds of segments
outside the clips (a segment spanning a 15 s pause counts 15 s).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SAMPLING_RATE = 16000


def long_silence_audio(
    clips: list[np.ndarray],
    gaps: list[float],
    noise: float = 0.003,
    seed: int = 0,
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """``clips`` (16 kHz samples) with ``gaps[i]`` seconds of Gaussian noise (standard deviation
    ``noise``, seeded) before clip i and ``gaps[-1]`` after the last: the audio and each clip's
    (start, end) in seconds. Noise is added under the clips too, so that only the level changes."""
    assert len(gaps) == len(clips) + 1
    parts, spans, position = [], [], 0
    for gap, clip in zip(gaps, [*clips, None]):
        position += int(round(gap * SAMPLING_RATE))
        parts.append(np.zeros(int(round(gap * SAMPLING_RATE)), np.float32))
        if clip is not None:
            spans.append((position / SAMPLING_RATE, (position + len(clip)) / SAMPLING_RATE))
            parts.append(np.asarray(clip, np.float32))
            position += len(clip)
    audio = np.concatenate(parts)
    audio += np.random.default_rng(seed).normal(0.0, noise, len(audio)).astype(np.float32)
    return audio, spans


def fixture_audio() -> tuple[np.ndarray, list[tuple[float, float]], list[str]]:
    """The tests' recording (~50 s): the two fixture clips, dev_07, dev_09, dev_07, after 2, 18 and
    15 s of noise, 3 s at the end; with the clips' spans and file names."""
    from xlagen.audio import load_audio

    folder = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "audio"
    names = ["dev_07.flac", "dev_09.wav", "dev_07.flac"]
    audio, spans = long_silence_audio([load_audio(folder / n) for n in names], [2.0, 18.0, 15.0, 3.0])
    return audio, spans, names


def silence_stats(segments: list[tuple[float, float]], spans: list[tuple[float, float]]) -> tuple[int, float]:
    """(segments overlapping no speech span, seconds of segment time outside the speech spans)."""
    empty, outside = 0, 0.0
    for start, end in segments:
        inside = sum(max(0.0, min(end, b) - max(start, a)) for a, b in spans)
        empty += inside == 0
        outside += max(0.0, end - start - inside)
    return empty, outside


_FASTER_WHISPER = """
import json, sys, time
import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel
model_dir, jobs = sys.argv[1], json.loads(sys.argv[2])
model = WhisperModel(model_dir, device="cpu", compute_type="float32", cpu_threads=2)
batched = BatchedInferencePipeline(model)
out = []
for job in jobs:
    audio = np.load(job["audio"])
    runner = batched if job.get("batch_size") else model
    options = dict(language="en", beam_size=1, **job["options"])
    if job.get("batch_size"):
        options["batch_size"] = job["batch_size"]
    for attempt in range(job.get("runs", 1)):
        start = time.perf_counter()
        segments, info = runner.transcribe(audio, **options)
        segments = [(s.start, s.end, s.text) for s in segments]
        seconds = time.perf_counter() - start
    out.append({"segments": segments, "seconds": seconds, "duration": info.duration})
print(json.dumps(out))
"""


def run_faster_whisper(python: str, model_dir: str, jobs: list[dict]) -> list[dict]:
    """faster-whisper 1.2.x in another interpreter: per job (``audio``: a .npy file, ``options``,
    ``batch_size`` for the batched pipeline, ``runs``), its segments and the last run's seconds."""
    args = [python, "-c", _FASTER_WHISPER, model_dir, json.dumps(jobs)]
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


FW_SEQUENTIAL = {"vad_filter": True, "condition_on_previous_text": False}
FW_BATCHED = {"without_timestamps": False}  # VAD on: the batched pipeline's default


def speech_set_audio(seed: int = 0) -> tuple[np.ndarray, list[tuple[float, float]], str]:
    """The 12 short clips of the speech set after 15-20 s of noise each: audio, spans, transcript."""
    from benchmarks.whisper_wer import DATA, manifest
    from xlagen.audio import load_audio

    refs = manifest(DATA)
    names = sorted(n for n in refs if n != "dev_long.wav")
    gaps = np.random.default_rng(seed).uniform(15.0, 20.0, len(names) + 1).round(2).tolist()
    audio, spans = long_silence_audio([load_audio(DATA / n) for n in names], gaps, seed=seed)
    return audio, spans, " ".join(refs[n] for n in names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="Whisper directory (default: the bundled tiny.en)")
    parser.add_argument(
        "--faster-whisper", metavar="PYTHON", help="also run faster-whisper in this interpreter"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)

    from benchmarks.whisper_wer import DATA, manifest, wer
    from xlagen.models.whisper.transcribe import WhisperPipeline, default_model_path

    model_dir = str(args.model or default_model_path())
    audio, spans, truth = speech_set_audio()
    long_audio = None
    from xlagen.audio import load_audio

    long_audio = load_audio(DATA / "dev_long.wav")
    long_truth = manifest(DATA)["dev_long.wav"]
    inputs = {"silences": (audio, spans, truth), "dev_long": (long_audio, None, long_truth)}
    import os

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"long-silence audio: {len(audio) / 16000:.1f} s, {len(spans)} clips, "
          f"{sum(b - a for a, b in spans):.1f} s of speech")  # fmt: skip
    pipeline = WhisperPipeline(args.model)
    rows = []

    def row(system: str, mode: str, name: str, segments, seconds: float, text: str) -> None:
        data, spans, reference = inputs[name]
        duration = len(data) / 16000
        entry = {"system": system, "mode": mode, "audio": name, "seconds": round(seconds, 2),
                 "speed": round(duration / seconds, 1), "wer": round(100 * wer([reference], [text]), 1),
                 "segments": len(segments)}  # fmt: skip
        line = (f"{system:15s} {mode:22s} {name:9s} {duration:6.1f} s audio in {seconds:6.2f} s "
                f"({entry['speed']:5.1f} audio s / s)  WER {entry['wer']:5.1f}%  {len(segments):3d} segments")  # fmt: skip
        if spans is not None:
            empty, outside = silence_stats([(a, b) for a, b, _ in segments], spans)
            entry.update(segments_in_silence=empty, silence_covered_s=round(outside, 1))
            line += f"  in silence {empty}, silence covered {outside:6.1f} s"
            said = [t.strip() for a, b, t in segments if not any(min(b, e) > max(a, s) for s, e in spans)]
            if said:
                entry["said_in_silence"] = said
                line += f"\n{'':40s}said in silence: {' | '.join(said[:6])}" + (
                    " ..." if len(said) > 6 else ""
                )
        rows.append(entry)
        print(line, flush=True)

    configs = [
        ("sequential", "silences", {}),
        ("sequential + VAD", "silences", {"vad_filter": True}),
        (f"batch {args.batch_size}", "silences", {"batch_size": args.batch_size}),
        (f"batch {args.batch_size} + VAD", "silences", {"batch_size": args.batch_size, "vad_filter": True}),
        (f"batch {args.batch_size}", "dev_long", {"batch_size": args.batch_size}),
        (f"batch {args.batch_size} + VAD", "dev_long", {"batch_size": args.batch_size, "vad_filter": True}),
        (f"batch {args.batch_size} + VAD, no ts", "silences", {"batch_size": args.batch_size, "vad_filter": True,
         "timestamps": False}),
        (f"batch {args.batch_size} + VAD, no ts", "dev_long", {"batch_size": args.batch_size, "vad_filter": True,
         "timestamps": False}),
    ]  # fmt: skip
    for mode, name, options in configs:
        pipeline.transcribe(inputs[name][0], **options)  # compiles
        start = time.perf_counter()
        result = pipeline.transcribe(inputs[name][0], **options)
        seconds = time.perf_counter() - start
        row("xlagen", mode, name, [(s.start, s.end, s.text) for s in result.segments], seconds, result.text)
    if args.faster_whisper:
        with tempfile.TemporaryDirectory() as tmp:
            for name, (data, _, _) in inputs.items():
                np.save(f"{tmp}/{name}.npy", data)
            jobs = [
                ("sequential", "silences", {"audio": f"{tmp}/silences.npy", "options": {"vad_filter": False,
                 "condition_on_previous_text": False}}),
                ("sequential + VAD", "silences", {"audio": f"{tmp}/silences.npy", "options": FW_SEQUENTIAL}),
                (f"batch {args.batch_size} + VAD", "silences", {"audio": f"{tmp}/silences.npy",
                 "options": FW_BATCHED, "batch_size": args.batch_size}),
                (f"batch {args.batch_size} + VAD", "dev_long", {"audio": f"{tmp}/dev_long.npy",
                 "options": FW_BATCHED, "batch_size": args.batch_size}),
                (f"batch {args.batch_size} + VAD, no ts", "silences", {"audio": f"{tmp}/silences.npy",
                 "options": {}, "batch_size": args.batch_size}),
                (f"batch {args.batch_size} + VAD, no ts", "dev_long", {"audio": f"{tmp}/dev_long.npy",
                 "options": {}, "batch_size": args.batch_size}),
            ]  # fmt: skip
            for job in jobs:
                job[2]["runs"] = 2
            results = run_faster_whisper(args.faster_whisper, model_dir, [j for _, _, j in jobs])
        for (mode, name, _), out in zip(jobs, results):
            text = "".join(t for _, _, t in out["segments"])
            row("faster-whisper", mode, name, out["segments"], out["seconds"], text)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
