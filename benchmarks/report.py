"""Turn results.json into the README's Markdown table and a PNG chart.

    python -m benchmarks.report benchmarks/results/results.json    # rewrite table.md and chart.png

The chart needs matplotlib: from the current interpreter, else from the 'pt' peer venv (which
setup_peers.sh installs with it).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from benchmarks.workloads import SYSTEM_LABELS, SYSTEMS, VENVS

OURS = "xlagen-xla"
PEERS_EXCLUDED = ("xlagen-xla", "xlagen-eager")


def wer(hyp: str, ref: str) -> float:
    """Word error rate after lower-casing and dropping punctuation."""

    def words(s: str) -> list[str]:
        return re.sub(r"[^a-z0-9' ]+", " ", s.lower()).split()

    h, r = words(hyp), words(ref)
    d = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, d[0] = d[0], i
        for j, hw in enumerate(h, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (rw != hw))
    return d[len(h)] / max(len(r), 1)


def enrich(doc: dict) -> None:
    """Add floors and ratios: step time / memory floor, tokens/s vs the fastest peer, first-call ratios."""
    bw = max(doc["bandwidth"]["start"]["read_gb_per_s"], doc["bandwidth"]["end"]["read_gb_per_s"])
    doc["floor_gb_per_s"] = bw
    by_w: dict[str, list[dict]] = {}
    for r in doc["results"]:
        by_w.setdefault(r["workload"], []).append(r)
    wl = {w["name"]: w for w in doc["workloads"]}
    derived = (
        "floor_ms_per_step",
        "fastest_peer",
        "xlagen_speedup_vs_fastest_peer",
        "xlagen_vs_tf4_eager",
        "xlagen_first_call_vs_tf4_xla",
    )
    for w in wl.values():  # recomputed from the results: none may outlive a dropped record
        for key in derived:
            w.pop(key, None)
    for name, rs in by_w.items():
        w = wl[name]
        m = doc["models"].get(w["model"], {})
        floor_ms = None
        if m.get("decode_weight_bytes"):
            floor_ms = 1000.0 * m["decode_weight_bytes"] / (bw * 1e9)
            w["floor_ms_per_step"] = floor_ms
        ok = [r for r in rs if r.get("ok")]
        for r in ok:
            if floor_ms and r.get("ms_per_step") is not None:
                r["step_x_floor"] = r["ms_per_step"] / floor_ms
            if "text" in r and r.get("reference"):
                r["wer"] = wer(r["text"], r["reference"])
        peers = [r for r in ok if r["system"] not in PEERS_EXCLUDED]
        ours = next((r for r in ok if r["system"] == OURS), None)
        if not peers or ours is None:
            continue
        if w["model"] == "whisper":  # end-to-end time: lower is better
            best = min(peers, key=lambda r: r["median_s"])
            w["fastest_peer"] = best["system"]
            w["xlagen_speedup_vs_fastest_peer"] = best["median_s"] / ours["median_s"]
        else:
            best = max(peers, key=lambda r: r["tokens_per_s"])
            w["fastest_peer"] = best["system"]
            w["xlagen_speedup_vs_fastest_peer"] = ours["tokens_per_s"] / best["tokens_per_s"]
            for key, sysname in (("xlagen_vs_tf4_eager", "tf4-eager"),):
                other = next((r for r in ok if r["system"] == sysname), None)
                if other:
                    w[key] = ours["tokens_per_s"] / other["tokens_per_s"]
            seed = next((r for r in ok if r["system"] == "tf4-xla"), None)
            if seed:
                w["xlagen_first_call_vs_tf4_xla"] = ours["first_call_s"] / seed["first_call_s"]


def _f(x, fmt: str = ".1f") -> str:
    return "" if x is None else format(x, fmt)


def _label(r: dict) -> str:
    """A result's system as the table names it (xlagen XLA in bold)."""
    label = SYSTEM_LABELS.get(r["system"], r["system"])
    return f"**{label}**" if r["system"] == OURS else label


def _why(r: dict) -> str:
    """Why a result has no numbers: skipped, or the first line of its error."""
    return r.get("skipped") or r.get("error", "failed").splitlines()[0][:80]


def _settings_text(doc: dict) -> str:
    def one(st: dict) -> str:
        text = f"{st['runs']} warm runs (at least {st['min_runs']} past {st['budget_s']:.0f} s)"
        if st.get("rounds", 1) > 1:
            text += f" in {st['rounds']} alternating rounds (systems in opposite orders; the median round kept, of two the faster)"
        return text

    parts = doc.get("parts")
    if not parts:
        return f"Median of {one(doc['settings'])}"
    texts = [one(p["settings"]) for p in parts]
    if len(set(texts)) == 1:
        return f"Median of {texts[0]}" + (
            f" in each of the run's {len(parts)} parts" if len(parts) > 1 else ""
        )
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(texts, 1):
        groups.setdefault(text, []).append(i)
    return "Median of " + "; ".join(
        f"{text} in part{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}"
        for text, ids in groups.items()
    )


def persistent_cache_line(pc: dict | None) -> str | None:
    """The ratio line of ``--cache-check``: the warm fresh process against the one that filled the
    cache. The filling process starts with an empty cache, so it is the cold reference, measured
    minutes (not an hour) from the warm one: this machine's speed drifts within the hour."""
    if not (pc and pc.get("warm", {}).get("ok") and pc.get("fill", {}).get("ok")):
        return None
    fill, warm = pc["fill"], pc["warm"]
    text = (
        f"- {pc['workload']}: xlagen XLA first call with a persistent XLA cache: "
        f"{fill['first_call_s']:.1f} s filling it (cold), {warm['first_call_s']:.1f} s in the next "
        f"fresh process ({warm['first_call_s'] / fill['first_call_s']:.2f}×)"
    )
    # The first call also generates: what compiling costs is the excess over a warm call.
    over_cold = fill["first_call_s"] - fill["median_s"]
    over_warm = warm["first_call_s"] - warm["median_s"]
    if over_cold > 0:
        text += (
            f"; excess over a warm call (trace + compile): {over_warm:.1f} s vs {over_cold:.1f} s "
            f"cold ({over_warm / over_cold:.2f}×)"
        )
    return text


def markdown(doc: dict) -> str:
    m = doc["machine"]
    bw = doc["bandwidth"]
    lines = [
        f"Machine: {m.get('cpu', '?')}, {m.get('cpus')} cores ({', '.join(m.get('simd', []))}), "
        f"{m.get('memory_gib', '?')} GiB; {doc['started']}"
        + (" — **quick mode (tiny shapes): not a benchmark**" if doc.get("quick") else "")
        + (
            " — **incomplete: the run stopped (or is still running) before its end**"
            if doc.get("complete") is False
            else ""
        ),
        (
            f"Memory read bandwidth (NumPy matrix-vector, best of runs): {bw['start']['read_gb_per_s']:.1f} GB/s before, "
            f"{bw['end']['read_gb_per_s']:.1f} GB/s after; "
            if "parts" not in doc
            else f"Memory read bandwidth (NumPy matrix-vector, measured before and after each of the run's "
            f"{len(doc['parts'])} parts): lowest {bw['start']['read_gb_per_s']:.1f} GB/s, "
            f"highest {bw['end']['read_gb_per_s']:.1f} GB/s; "
        )
        + f"GEMM {bw['end']['gemm_gflop_per_s']:.0f} GFLOP/s. "
        f"Floor = weight bytes one decode step reads / {doc['floor_gb_per_s']:.1f} GB/s.",
        _settings_text(doc) + "; first call = trace + compile + run, in a fresh process; "
        "peak RSS of that process. ms/step = (time at N new tokens - time at 2) / (N - 2).",
        "",
    ]
    wl = {w["name"]: w for w in doc["workloads"]}
    gen = [w for w in doc["workloads"] if w["model"] != "whisper"]
    asr = [w for w in doc["workloads"] if w["model"] == "whisper"]
    results = doc["results"]
    if gen:
        lines += [
            "| workload | system | tokens/s | ms/step | × floor | first call (s) | peak RSS (MiB) |",
            "|---|---|--:|--:|--:|--:|--:|",
        ]
        for w in gen:
            desc = f"{w['name']} (prompt {w.get('encoder_len', w['prompt_len'])}, {w['new_tokens']} new"
            desc += f", beams {w['num_beams']})" if w["num_beams"] > 1 else ")"
            floor = w.get("floor_ms_per_step")
            for r in (r for r in results if r["workload"] == w["name"]):
                label = _label(r)
                if not r.get("ok"):
                    lines.append(f"| {desc} | {label} | — | | | | {_why(r)} |")
                    continue
                warn = " ⚠" if r.get("warning") else ""
                lines.append(
                    f"| {desc} | {label} | {r['tokens_per_s']:.1f}{warn} | {_f(r.get('ms_per_step'))} | "
                    f"{_f(r.get('step_x_floor'), '.2f')} | {r['first_call_s']:.1f} | {r['peak_rss_mib']:.0f} |"
                )
                desc = ""
            if floor:
                lines.append(f"| | *memory floor* | | {floor:.2f} | 1.00 | | |")
        lines.append("")
    if asr:
        lines += [
            "| workload | system | end-to-end (s) | × real time | tokens | first call (s) | peak RSS (MiB) | WER |",
            "|---|---|--:|--:|--:|--:|--:|--:|",
        ]
        for w in asr:
            desc = w["name"]
            rs = [r for r in results if r["workload"] == w["name"]]
            seconds = next((r["audio_s"] for r in rs if "audio_s" in r), None)
            if seconds:
                desc += f" ({seconds:.1f} s audio)"
            for r in rs:
                label = _label(r)
                if not r.get("ok"):
                    lines.append(f"| {desc} | {label} | — | | | | | {_why(r)} |")
                else:
                    lines.append(
                        f"| {desc} | {label} | {r['median_s']:.2f} | "
                        f"{r['realtime_factor']:.1f} | {r['tokens_generated']} | {r['first_call_s']:.1f} | "
                        f"{r['peak_rss_mib']:.0f} | {_f(100 * r['wer'] if 'wer' in r else None)}% |"
                    )
                desc = ""
        lines.append("")
    ratios = []
    for name, w in wl.items():
        bits = []
        if "xlagen_speedup_vs_fastest_peer" in w:
            bits.append(f"{w['xlagen_speedup_vs_fastest_peer']:.2f}× the fastest peer ({w['fastest_peer']})")
        if "xlagen_vs_tf4_eager" in w:
            bits.append(f"{w['xlagen_vs_tf4_eager']:.1f}× Transformers 4 TF eager")
        if "xlagen_first_call_vs_tf4_xla" in w:
            bits.append(f"first call {w['xlagen_first_call_vs_tf4_xla']:.2f}× tf4 XLA's")
        ours = next(
            (r for r in results if r["workload"] == name and r["system"] == OURS and r.get("ok")), None
        )
        if ours and "step_x_floor" in ours:
            bits.append(f"step {ours['step_x_floor']:.2f}× the memory floor")
        if bits:
            ratios.append(f"- {name}: xlagen XLA " + "; ".join(bits))
    line = persistent_cache_line(doc.get("persistent_cache"))
    if line:
        ratios.append(line)
    if ratios:
        lines += ["Ratios (from this run):", "", *ratios, ""]
    dropped = doc.get("dropped") or []
    if dropped:
        by_reason: dict[str, list[str]] = {}
        for d in dropped:
            by_reason.setdefault(d["reason"], []).append(f"{d['system']} at {d['workload']}")
        lines += [
            f"Not in the table (kept in results.json): {', '.join(v)} ({k})." for k, v in by_reason.items()
        ]
        lines.append("")
    return "\n".join(lines)


def _chart_code(doc_path: Path, png: Path) -> str:
    return f"from benchmarks.report import _draw; _draw({str(doc_path)!r}, {str(png)!r})"


def chart(doc: dict, png: Path) -> bool:
    """Draw the chart with matplotlib here, or in the 'pt' peer venv when it is missing here."""
    doc_path = png.with_name("results.json")
    if not doc_path.is_file():
        doc_path.write_text(json.dumps(doc, default=str))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        exe = VENVS / "pt" / "bin" / "python"
        if not exe.is_file():
            print("no matplotlib here nor in the 'pt' peer venv: skipping the chart")
            return False
        repo = Path(__file__).resolve().parent.parent
        proc = subprocess.run(
            [str(exe), "-c", _chart_code(doc_path, png)], cwd=repo, capture_output=True, text=True
        )
        if proc.returncode:
            print(proc.stderr[-2000:])
        return proc.returncode == 0
    _draw(str(doc_path), str(png))
    return True


def _draw(doc_path: str, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc = json.loads(Path(doc_path).read_text())
    gen = [w["name"] for w in doc["workloads"] if w["model"] != "whisper"]
    asr = [w["name"] for w in doc["workloads"] if w["model"] == "whisper"]
    ok = [r for r in doc["results"] if r.get("ok")]
    systems = [s for s in SYSTEMS if any(r["system"] == s for r in ok)]
    colors = {s: plt.cm.tab20(i % 20) for i, s in enumerate(SYSTEMS)}
    panels = [(gen, "tokens_per_s", "tokens/s (higher is better, log scale)")] if gen else []
    if asr:
        panels.append((asr, "median_s", "end-to-end seconds (lower is better)"))
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(max(8, 1.1 * max(len(p[0]) for p in panels)) + 5, 4.5 * len(panels)),
        squeeze=False,
    )
    for ax, (names, key, ylabel) in zip(axes[:, 0], panels):
        present = [s for s in systems if any(r["system"] == s and r["workload"] in names for r in ok)]
        width = 0.8 / max(len(present), 1)
        for k, s in enumerate(present):
            xs, ys = [], []
            for i, n in enumerate(names):
                r = next((r for r in ok if r["system"] == s and r["workload"] == n), None)
                if r:
                    xs.append(i + (k - (len(present) - 1) / 2) * width)
                    ys.append(r[key])
            ax.bar(
                xs,
                ys,
                width,
                label=SYSTEM_LABELS.get(s, s),
                color=colors[s],
                edgecolor="black" if s == OURS else None,
                linewidth=1.5 if s == OURS else 0,
            )
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
        ax.set_ylabel(ylabel)
        if key == "tokens_per_s":
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    m = doc["machine"]
    title = f"{m.get('cpu', 'CPU')}, {m.get('cpus')} cores — {doc['started']}"
    if doc.get("quick"):
        title += " (quick mode: tiny shapes)"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=120)


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/results.json")
    doc = json.loads(path.read_text())
    enrich(doc)
    path.with_name("table.md").write_text(markdown(doc))
    chart(doc, path.with_name("chart.png"))
    print(markdown(doc))
