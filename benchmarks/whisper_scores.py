"""Whisper's fallback scores next to faster-whisper's on the speech set (same weights, same audio).

    .venv/bin/python -m benchmarks.whisper_scores [--beam-size 1 5] [--log-prob-threshold -1 -0.45]

For every file and setting both systems transcribe with the default recipe (temperature fallback,
condition_on_previous_text=False, language en, no VAD); per segment decoded at temperature 0 it
reports the largest ``avg_logprob`` and ``no_speech_prob`` differences, and per segment whether the
two made the same fallback decision (decoded at temperature 0 or not). faster-whisper runs in this
interpreter (the test extra installs it). Not a timing benchmark: load does not matter.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DATA = Path("/work/shared/data/speech")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--beam-size", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--log-prob-threshold", type=float, nargs="+", default=[-1.0, -0.45])
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args(argv)
    from faster_whisper import WhisperModel

    from xlagen.audio import load_audio
    from xlagen.models.whisper.transcribe import default_model_path, get_pipeline

    path = str(default_model_path())
    reference = WhisperModel(path, device="cpu", compute_type="float32", cpu_threads=2)
    pipeline = get_pipeline()
    files = sorted(p for p in args.data.iterdir() if p.suffix in (".wav", ".flac"))
    lines = [
        "| beam | log_prob_threshold | files | segments (fw / xlagen) | same text | at T=0 | max abs avg_logprob diff | max abs no_speech_prob diff | same fallback decision |",
        "|--:|--:|--:|---|--:|--:|--:|--:|--:|",
    ]
    for beam in args.beam_size:
        for threshold in args.log_prob_threshold:
            counts = [0, 0, 0, 0, 0]  # fw segments, ours, same text, at T=0 in both, same decision
            lp_diff = ns_diff = 0.0
            for file in files:
                audio = load_audio(file)
                theirs, _ = reference.transcribe(audio, language="en", beam_size=beam, vad_filter=False,
                                                 condition_on_previous_text=False, log_prob_threshold=threshold)  # fmt: skip
                theirs = list(theirs)
                ours = pipeline.transcribe(audio, beam_size=beam, log_prob_threshold=threshold).segments
                counts[0] += len(theirs)
                counts[1] += len(ours)
                for a, b in zip(theirs, ours):
                    counts[2] += a.text.strip() == b.text.strip()
                    counts[4] += (a.temperature > 0) == (b.temperature > 0)
                    if a.temperature == 0 and b.temperature == 0:
                        counts[3] += 1
                        lp_diff = max(lp_diff, abs(a.avg_logprob - b.avg_logprob))
                    ns_diff = max(ns_diff, abs(a.no_speech_prob - b.no_speech_prob))
            lines.append(
                f"| {beam} | {threshold} | {len(files)} | {counts[0]} / {counts[1]} | {counts[2]} | {counts[3]} | "
                f"{lp_diff:.4f} | {ns_diff:.4f} | {counts[4]} / {min(counts[0], counts[1])} |"
            )
            print(lines[-1], flush=True)
    table = "\n".join(lines) + "\n"
    if args.out is not None:
        args.out.write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
