"""Word error rate of xlagen's Whisper transcription, next to faster-whisper's on the same audio.

    .venv/bin/python benchmarks/whisper_wer.py                      # greedy + beam 5, short clips + long file
    .venv/bin/python benchmarks/whisper_wer.py --beam-size 1 --files short
    .venv/bin/python benchmarks/whisper_wer.py --faster-whisper /tmp/venv-fw/bin/python   # refresh the reference
    .venv/bin/python benchmarks/whisper_wer.py --beam-size 1 --no-fallback --word-timestamps [PYTHON]

WER is corpus-level (word edits over reference words, all clips together) after lower-casing and
removing punctuation; numbers are left as written ("40" vs "forty" counts as an error), as the
reference figures in the data set's README were computed. ``--normalize-numbers`` also prints the
WER with number words spelled out (0-99). faster-whisper's transcripts come from
``--reference`` (JSON: {"<beam>/<file>[/no-condition]": text}); ``--faster-whisper PYTHON`` runs
faster-whisper 1.2.x in that interpreter (float32, language en, no VAD, default options otherwise,
and for dev_long.wav also condition_on_previous_text=False) to write it.

``--word-timestamps [PYTHON]`` also aligns words and compares their times with faster-whisper's, run
on the same files and options in PYTHON (default: this interpreter): mean absolute start/end
difference and the fraction of words whose start and end are both within 0.1 s (over the files
where both give the same words).

xlagen's default does not condition on previous text; the long file is compared with faster-whisper
under the same setting (the data set README's long-file figures, 12.1% / 9.5%, are faster-whisper's
with condition_on_previous_text=False; with its default, True, it scores 16.0% / 12.1%).
"""

from __future__ import annotations

import argparse
import json
import string
import subprocess
import sys
import time
from pathlib import Path

DATA = Path("/work/shared/data/speech")
REFERENCE = Path(__file__).resolve().parent / "whisper_wer_faster_whisper.json"

_PUNCT = str.maketrans({c: " " for c in string.punctuation if c != "'"} | {"'": None})
_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen \
seventeen eighteen nineteen".split()
)
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def normalize(text: str, numbers: bool = False) -> list[str]:
    """Lower case, punctuation removed (apostrophes dropped, other marks become spaces), split into words.
    With ``numbers``, 0-99 written as digits become words ("40" -> "forty")."""
    words = text.lower().translate(_PUNCT).split()
    if not numbers:
        return words
    out = []
    for w in words:
        if w.isdigit() and int(w) < 100:
            n = int(w)
            out.extend([_ONES[n]] if n < 20 else [_TENS[n // 10 - 2]] + ([_ONES[n % 10]] if n % 10 else []))
        else:
            out.append(w)
    return out


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions, insertions, deletions)."""
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        prev, row[0] = row[:], i
        for j, other in enumerate(hyp, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (word != other))
    return row[len(hyp)]


def wer(refs: list[str], hyps: list[str], numbers: bool = False) -> float:
    """Corpus WER: total word edits over total reference words."""
    edits = sum(edit_distance(normalize(r, numbers), normalize(h, numbers)) for r, h in zip(refs, hyps))
    return edits / max(1, sum(len(normalize(r, numbers)) for r in refs))


def manifest(data: Path = DATA) -> dict[str, str]:
    return {e["audio"]: e["text"] for e in json.loads((data / "manifest.json").read_text())}


_FASTER_WHISPER = """
import json, sys
from faster_whisper import WhisperModel
model_dir, data, beams, names = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
model = WhisperModel(model_dir, device="cpu", compute_type="float32", cpu_threads=2)
out = {}
for beam in beams:
    for name in names:
        for condition in (True, False) if name == "dev_long.wav" else (True,):
            segments, _ = model.transcribe(f"{data}/{name}", language="en", beam_size=beam, vad_filter=False,
                                           condition_on_previous_text=condition)
            out[f"{beam}/{name}" + ("" if condition else "/no-condition")] = "".join(s.text for s in segments)
print(json.dumps(out))
"""


_FASTER_WHISPER_WORDS = """
import json, sys
from faster_whisper import WhisperModel
model_dir, data, names, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
model = WhisperModel(model_dir, device="cpu", compute_type="float32", cpu_threads=2)
out = {}
for name in names:
    segments, _ = model.transcribe(f"{data}/{name}", language="en", vad_filter=False, word_timestamps=True,
                                   **options)
    out[name] = [[w.word, w.start, w.end] for s in segments for w in s.words]
print(json.dumps(out))
"""


def word_timing_errors(ours: dict[str, list], theirs: dict[str, list]) -> str:
    """Word start/end differences to faster-whisper over the files where both found the same words."""
    starts, ends, same = [], [], 0
    for name, words in ours.items():
        other = theirs.get(name)
        if other is None or [w[0] for w in words] != [w[0] for w in other]:
            continue
        same += 1
        starts += [abs(a[1] - b[1]) for a, b in zip(words, other)]
        ends += [abs(a[2] - b[2]) for a, b in zip(words, other)]
    if not starts:
        return f"word timestamps: no file with faster-whisper's words (0/{len(ours)})"
    within = sum(a <= 0.1 + 1e-9 and b <= 0.1 + 1e-9 for a, b in zip(starts, ends)) / len(starts)
    return (
        f"word timestamps vs faster-whisper ({same}/{len(ours)} files with the same words, {len(starts)} words): "
        f"mean |start diff| {sum(starts) / len(starts):.3f} s, mean |end diff| {sum(ends) / len(ends):.3f} s, "
        f"{100 * within:.1f}% within 0.1 s"
    )


def run_faster_whisper(python: str, model_dir: str, beams: list[int], names: list[str]) -> dict[str, str]:
    """faster-whisper's transcripts, run in another interpreter (it is no dependency of xlagen)."""
    args = [python, "-c", _FASTER_WHISPER, model_dir, str(DATA), json.dumps(beams), json.dumps(names)]
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="Whisper directory (default: the bundled tiny.en)")
    parser.add_argument("--beam-size", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--files", choices=["short", "long", "all"], default="all")
    parser.add_argument("--reference", type=Path, default=REFERENCE, help="faster-whisper transcripts (JSON)")
    parser.add_argument("--faster-whisper", metavar="PYTHON", help="run faster-whisper with this interpreter")
    parser.add_argument("--no-timestamps", action="store_true", help="decode with <|notimestamps|>")
    parser.add_argument("--no-fallback", action="store_true", help="temperature 0 only")
    parser.add_argument(
        "--condition",
        action="store_true",
        help="condition each window on the previous text (faster-whisper's default)",
    )
    parser.add_argument("--batch-size", type=int, default=1, help="> 1: chunked batched mode")
    parser.add_argument(
        "--normalize-numbers", action="store_true", help="also report WER with numbers spelled out"
    )
    parser.add_argument("--show", action="store_true", help="print every transcript")
    parser.add_argument(
        "--word-timestamps", nargs="?", const=sys.executable, metavar="PYTHON",
        help="also compare word times with faster-whisper's (run in PYTHON, default this interpreter)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    from xlagen.models.whisper.transcribe import WhisperPipeline, default_model_path

    refs = manifest()
    short = sorted(n for n in refs if n != "dev_long.wav")
    groups = {"short": short, "long": ["dev_long.wav"]}
    if args.files != "all":
        groups = {args.files: groups[args.files]}
    model_dir = str(args.model or default_model_path())
    reference: dict[str, str] = {}
    if args.faster_whisper:
        names = [n for g in groups.values() for n in g]
        reference = run_faster_whisper(args.faster_whisper, model_dir, args.beam_size, names)
        args.reference.write_text(json.dumps(reference, indent=1) + "\n")
    elif args.reference.is_file():
        reference = json.loads(args.reference.read_text())

    pipeline = WhisperPipeline(args.model)
    options = dict(
        timestamps=not args.no_timestamps,
        condition_on_previous_text=args.condition,
        batch_size=args.batch_size,
        word_timestamps=bool(args.word_timestamps),
    )
    if args.no_fallback:
        options["temperature"] = 0.0
    print(f"model: {model_dir}\noptions: {options}")

    def key(beam: int, name: str) -> str:  # faster-whisper's transcript under the same options
        suffix = "/no-condition" if not args.condition and name == "dev_long.wav" else ""
        return f"{beam}/{name}{suffix}"

    for beam in args.beam_size:
        for group, names in groups.items():
            hyps, seconds, audio, words = [], 0.0, 0.0, {}
            for name in names:
                start = time.perf_counter()
                result = pipeline.transcribe(DATA / name, beam_size=beam, **options)
                seconds += time.perf_counter() - start
                audio += result.duration
                hyps.append(result.text)
                if args.word_timestamps:
                    words[name] = [[w.word, w.start, w.end] for s in result.segments for w in s.words or ()]
                if args.show:
                    fw = reference.get(key(beam, name), "")
                    same = "=" if normalize(fw) == normalize(result.text) else "!"
                    print(f"  {name} {same} {result.text.strip()!r}\n  {' ' * len(name)} fw {fw.strip()!r}")
            truth = [refs[n] for n in names]
            line = f"beam {beam} {group:5s} ({len(names)} files, {audio:.0f} s audio): xlagen WER {100 * wer(truth, hyps):.1f}%"
            fw_hyps = [reference.get(key(beam, n)) for n in names]
            if all(h is not None for h in fw_hyps):
                agree = sum(normalize(a) == normalize(b) for a, b in zip(hyps, fw_hyps))
                line += f" | faster-whisper {100 * wer(truth, fw_hyps):.1f}% | word-for-word agreement {agree}/{len(names)}"
            if args.normalize_numbers:
                line += f" | numbers spelled out: xlagen {100 * wer(truth, hyps, True):.1f}%"
                if all(h is not None for h in fw_hyps):
                    line += f", faster-whisper {100 * wer(truth, fw_hyps, True):.1f}%"
            print(line + f" | {seconds:.1f} s (compiles included)", flush=True)
            if args.word_timestamps:
                fw_options = dict(
                    beam_size=beam, condition_on_previous_text=args.condition,
                    without_timestamps=args.no_timestamps, **({"temperature": 0.0} if args.no_fallback else {}),
                )  # fmt: skip
                command = [args.word_timestamps, "-c", _FASTER_WHISPER_WORDS, model_dir, str(DATA)]
                command += [json.dumps(names), json.dumps(fw_options)]
                run = subprocess.run(command, check=True, capture_output=True, text=True)
                print("  " + word_timing_errors(words, json.loads(run.stdout)), flush=True)
    print(f"compiled programs: {pipeline.model.generation_stats()['compilations']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
