"""Time to the first result from a fresh process: xlagen's CLI next to faster-whisper and `import tensorflow`.

    .venv/bin/python -m benchmarks.cold_start                    # 5 rounds, systems alternating
    .venv/bin/python -m benchmarks.cold_start --rounds 3 --beam-size 5
    .venv/bin/python -m benchmarks.cold_start --cold             # adds xlagen runs on an empty XLA cache

Each system is one command in a new process (what a user who transcribes one file per command
waits for), run ``--rounds`` times, the systems forward in one round and backward in the next; the
table gives each one's median wall time and peak RSS (``wait4``'s ``ru_maxrss`` of that child):

* ``import-tensorflow``: ``python -c "import tensorflow"``, the floor of any TensorFlow program;
* ``xlagen-generate``: ``xlagen generate "And God said"`` on the bundled 4.2M-parameter model;
* ``xlagen-transcribe-1`` / ``fw-1``: one clip (``examples/sample.wav``, 3.9 s), tiny.en, greedy;
* ``xlagen-transcribe-2`` / ``fw-2``: two clips in one command: the second file's own time (from
  ``--timing``; faster-whisper's script prints the same) is the per-file cost once loaded;
* ``--cold``: ``xlagen-*-cold``, the same commands with a new, empty persistent XLA cache each time.

xlagen's warm runs share one persistent cache under ``$XLAGEN_BENCH_HOME/cold-start-cache``, filled
by an untimed first run. Writes ``benchmarks/results/cold_start.json`` and ``cold_start.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.workloads import BENCH_HOME, VENVS

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
CLIPS = (REPO / "examples" / "sample.wav", Path("/work/shared/data/speech/dev_00.wav"))
_FILE_TIME = re.compile(r"^(?P<file>.+?): (?:[\d.]+ s of audio in )?(?P<s>[\d.]+) s\b", re.M)


def run_once(cmd: list[str], env: dict[str, str]) -> dict:
    """Run ``cmd`` in a new process: wall seconds, peak RSS (MiB), per-file times, output."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (peak RSS)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text_out, text_err = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{text_err[-2000:]}")
    return {
        "wall_s": wall,
        "peak_rss_mib": usage.ru_maxrss / 1024.0,
        "file_s": [float(m.group("s")) for m in _FILE_TIME.finditer(text_err)],
        "stdout": text_out.strip(),
        "stderr_lines": len([line for line in text_err.splitlines() if line.strip()]),
    }


def plan(args: argparse.Namespace) -> dict[str, tuple[list[str], dict[str, str]]]:
    py = sys.executable
    xlagen = str(Path(py).with_name("xlagen"))
    fw = VENVS / "fw" / "bin" / "python"
    env = dict(os.environ, XLAGEN_XLA_CACHE=str(args.cache))
    env.pop("TF_XLA_FLAGS", None)
    beam = ["--beam-size", str(args.beam_size)]
    clips = [str(c) for c in args.clips]
    systems: dict[str, tuple[list[str], dict[str, str]]] = {
        "import-tensorflow": ([py, "-c", "import tensorflow"], env),
        "xlagen-generate": ([xlagen, "generate", "And God said"], env),
        "xlagen-transcribe-1": ([xlagen, "transcribe", clips[0], "--timing", *beam], env),
        "xlagen-transcribe-2": ([xlagen, "transcribe", *clips[:2], "--timing", *beam], env),
    }
    if fw.is_file():
        script = str(REPO / "benchmarks" / "runners" / "fw_cli.py")
        systems["fw-1"] = ([str(fw), script, clips[0], *beam], env)
        systems["fw-2"] = ([str(fw), script, *clips[:2], *beam], env)
    else:
        print(f"no faster-whisper venv at {fw} (bash benchmarks/setup_peers.sh fw): skipped", file=sys.stderr)
    if args.cold:
        systems["xlagen-generate-cold"] = (systems["xlagen-generate"][0], {})
        systems["xlagen-transcribe-1-cold"] = (systems["xlagen-transcribe-1"][0], {})
    return systems


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict]:
    out = {}
    for name, records in runs.items():
        walls = [r["wall_s"] for r in records]
        second = [r["file_s"][1] for r in records if len(r["file_s"]) > 1]
        first = [r["file_s"][0] for r in records if r["file_s"]]
        out[name] = {
            "wall_s": statistics.median(walls),
            "wall_all": walls,
            "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in records),
            "first_file_s": statistics.median(first) if first else None,
            "second_file_s": statistics.median(second) if second else None,
            "stderr_lines": max(r["stderr_lines"] for r in records),
            "text": records[-1]["stdout"][:200],
        }
    return out


def ratios(s: dict[str, dict]) -> dict[str, float]:
    def r(a: str, b: str, field: str = "wall_s") -> float | None:
        if a in s and b in s and s[a].get(field) and s[b].get(field):
            return s[a][field] / s[b][field]
        return None

    found = {
        "transcribe 1 file / fw (wall)": r("xlagen-transcribe-1", "fw-1"),
        "transcribe 2nd file / fw 2nd file": r("xlagen-transcribe-2", "fw-2", "second_file_s"),
        "generate / import tensorflow (wall)": r("xlagen-generate", "import-tensorflow"),
        "transcribe 1 file / import tensorflow (wall)": r("xlagen-transcribe-1", "import-tensorflow"),
        "transcribe peak RSS / fw": r("xlagen-transcribe-1", "fw-1", "peak_rss_mib"),
        "cold transcribe / warm transcribe": r("xlagen-transcribe-1-cold", "xlagen-transcribe-1"),
        "cold generate / warm generate": r("xlagen-generate-cold", "xlagen-generate"),
    }
    return {k: round(v, 3) for k, v in found.items() if v is not None}


def markdown(summary: dict[str, dict], found: dict[str, float], meta: dict) -> str:
    lines = [
        f"Cold start, fresh process per command ({meta['rounds']} rounds, systems alternating, "
        f"beam {meta['beam_size']}, load {meta['load_before']:.2f} -> {meta['load_after']:.2f})",
        "",
        "| command | wall s (median) | 2nd file s | peak RSS MiB | stderr lines |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, v in summary.items():
        second = f"{v['second_file_s']:.2f}" if v["second_file_s"] else ""
        lines.append(
            f"| {name} | {v['wall_s']:.2f} | {second} | {v['peak_rss_mib']:.0f} | {v['stderr_lines']} |"
        )
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in found.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--beam-size", type=int, default=1)
    parser.add_argument("--cold", action="store_true", help="also xlagen on an empty XLA cache each run")
    parser.add_argument("--clips", nargs=2, type=Path, default=list(CLIPS))
    parser.add_argument("--cache", type=Path, default=BENCH_HOME / "cold-start-cache")
    parser.add_argument("--out", type=Path, default=RESULTS / "cold_start.json")
    args = parser.parse_args()
    systems = plan(args)
    # fill the warm cache (and the trace store) once, untimed
    for name in ("xlagen-generate", "xlagen-transcribe-2"):
        run_once(*systems[name])
    runs: dict[str, list[dict]] = {name: [] for name in systems}
    load_before = os.getloadavg()[0]
    for round_ in range(args.rounds):
        order = list(systems) if round_ % 2 == 0 else list(reversed(systems))
        for name in order:
            cmd, env = systems[name]
            if name.endswith("-cold"):
                scratch = Path(tempfile.mkdtemp(prefix="xlagen-cold-"))
                env = dict(systems["xlagen-generate"][1], XLAGEN_XLA_CACHE=str(scratch))
                try:
                    runs[name].append(run_once(cmd, env))
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)
            else:
                runs[name].append(run_once(cmd, env))
            print(f"round {round_ + 1} {name}: {runs[name][-1]['wall_s']:.2f} s", file=sys.stderr, flush=True)
    summary = summarise(runs)
    found = ratios(summary)
    meta = {
        "rounds": args.rounds,
        "beam_size": args.beam_size,
        "clips": [str(c) for c in args.clips],
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "summary": summary, "ratios": found}, indent=2) + "\n")
    table = markdown(summary, found, meta)
    args.out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
