"""Reliability run of ``xlagen serve``: many clients, a share of them misbehaving. Figures, not timings.

    .venv/bin/python -m benchmarks.serve_faults                       # start xlagen serve (demo model + Whisper), 64 clients, 60 s
    .venv/bin/python -m benchmarks.serve_faults --quick               # 16 clients, 10 s (smoke)
    .venv/bin/python -m benchmarks.serve_faults --model DIR --whisper none
    .venv/bin/python -m benchmarks.serve_faults --url http://127.0.0.1:8000 [--pid PID]   # a server already up

Each client loops until the deadline, picking one action at random (seeded) per request:

* valid greedy completions (``temperature: 0``), half streamed, half not: the text must equal the
  prompt's reference, fetched once per prompt (non-streamed) before the load starts;
* a stream dropped after its first chunk (client disconnect);
* malformed JSON, a prompt longer than the context, invalid parameters (temperature 5, n 0,
  top_p 0, wrong types, logprobs 100, max_tokens -1), an unknown model, a wrong content type, a
  body over 1 MiB, garbage bytes to ``/v1/audio/transcriptions``: each has its expected status
  (400, 404, 413, 415).

Figures: requests sent, valid ones completed (and 429s), rejections with the right status, wrong
statuses (with examples), 5xx (must be 0), greedy mismatches (must be 0), ``xlagen:slots_in_use``
back to 0 after the load, ``xlagen:compilations`` before/after, server RSS at start and end.
Written to ``benchmarks/results/serve/faults[-quick].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "serve"

PROMPTS = [
    "In the beginning",
    "And the LORD said unto Moses",
    "Blessed are the",
    "And it came to pass",
    "The heavens declare",
    "For God so loved",
    "Let there be",
    "And he said",
]

# action: (weight, expected statuses)
ACTIONS = {
    "greedy": (30, {200}),
    "greedy_stream": (30, {200}),
    "disconnect": (8, None),
    "malformed_json": (4, {400}),
    "oversize_prompt": (4, {400}),
    "invalid_params": (8, {400}),
    "unknown_model": (2, {404}),
    "wrong_content_type": (4, {415}),
    "oversized_body": (3, {413}),
    "garbage_audio": (4, {400}),
}
INVALID = [
    {"temperature": 5},
    {"n": 0},
    {"top_p": 0},
    {"max_tokens": "many"},
    {"temperature": "hot"},
    {"logprobs": 100},
    {"max_tokens": -1},
    {"stop": 7},
    {"prompt": None},
    {"seed": -3},
]


def proc_rss(pid: int | None) -> int | None:
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


async def metric(client, base: str, name: str) -> float | None:
    try:
        text = (await client.get(base + "/metrics")).text
    except Exception:  # noqa: BLE001
        return None
    m = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.eE+-]+)$", text, re.M)
    return float(m.group(1)) if m else None


async def metric_labels(client, base: str, name: str) -> dict[str, float]:
    try:
        text = (await client.get(base + "/metrics")).text
    except Exception:  # noqa: BLE001
        return {}
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(rf'^{re.escape(name)}_total{{[^}}]*="([^"]*)"}} (\S+)$', text, re.M)
    }


async def streamed_text(client, url: str, body: dict, timeout: float) -> tuple[int, str]:
    parts = []
    async with client.stream("POST", url, json=body, timeout=timeout) as r:
        if r.status_code != 200:
            await r.aread()
            return r.status_code, ""
        async for line in r.aiter_lines():
            line = line.strip()
            if line.startswith("data:") and line[5:].strip() != "[DONE]":
                chunk = json.loads(line[5:])
                parts.extend(c.get("text") or "" for c in chunk.get("choices") or [])
    return 200, "".join(parts)


async def client_loop(
    cid: int,
    client,
    base: str,
    model: str,
    refs: dict,
    ctx: int,
    deadline: float,
    seed: int,
    stats: dict,
    max_tokens: int,
) -> None:
    rng = random.Random(seed * 1000 + cid)
    names, weights = list(ACTIONS), [ACTIONS[a][0] for a in ACTIONS]
    url = base + "/v1/completions"
    while time.perf_counter() < deadline:
        action = rng.choices(names, weights)[0]
        prompt = rng.choice(PROMPTS)
        body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
        status, detail = None, None
        stats["sent"][action] += 1
        try:
            if action == "greedy":
                r = await client.post(url, json=body, timeout=120)
                status = r.status_code
                if status == 200 and r.json()["choices"][0]["text"] != refs[prompt]:
                    stats["mismatch"].append(
                        {
                            "action": action,
                            "prompt": prompt,
                            "got": r.json()["choices"][0]["text"],
                            "ref": refs[prompt],
                        }
                    )
            elif action == "greedy_stream":
                status, text = await streamed_text(client, url, {**body, "stream": True}, 120)
                if status == 200 and text != refs[prompt]:
                    stats["mismatch"].append(
                        {"action": action, "prompt": prompt, "got": text, "ref": refs[prompt]}
                    )
            elif action == "disconnect":
                async with client.stream(
                    "POST", url, json={**body, "stream": True, "max_tokens": ctx // 2}, timeout=120
                ) as r:
                    status = r.status_code
                    async for line in r.aiter_lines():
                        if line.startswith("data:"):
                            break  # leave after the first chunk: the connection is closed unread
            elif action == "malformed_json":
                r = await client.post(
                    url,
                    content=b'{"model": "x", "prompt": "a", ',
                    headers={"content-type": "application/json"},
                )
                status = r.status_code
            elif action == "oversize_prompt":
                r = await client.post(url, json={**body, "prompt": [1] * (ctx + 8)})
                status = r.status_code
            elif action == "invalid_params":
                bad = rng.choice(INVALID)
                detail = json.dumps(bad)
                r = await client.post(url, json={**body, **bad})
                status = r.status_code
            elif action == "unknown_model":
                r = await client.post(url, json={**body, "model": "no-such-model"})
                status = r.status_code
            elif action == "wrong_content_type":
                r = await client.post(
                    url, content=json.dumps(body).encode(), headers={"content-type": "text/plain"}
                )
                status = r.status_code
            elif action == "oversized_body":
                big = {**body, "prompt": "a " * (600 << 10)}  # ~1.2 MB of JSON
                r = await client.post(url, json=big)
                status = r.status_code
            elif action == "garbage_audio":
                files = {"file": ("noise.wav", os.urandom(rng.randint(100, 50_000)), "audio/wav")}
                r = await client.post(
                    base + "/v1/audio/transcriptions", data={"model": "whisper-1"}, files=files, timeout=120
                )
                status = r.status_code
        except Exception as e:  # noqa: BLE001 - a transport error is a figure
            stats["transport_errors"].append(f"{action}: {type(e).__name__}: {e}"[:200])
            continue
        stats["status"][(action, status)] += 1
        expected = ACTIONS[action][1]
        if status is not None and status >= 500:
            stats["server_errors"].append({"action": action, "status": status, "detail": detail})
        if action == "disconnect":
            stats["disconnects"] += status == 200
        elif status == 429 and action in ("greedy", "greedy_stream"):
            stats["overloaded_429"] += 1
        elif expected is not None and status in expected:
            if status == 200:
                stats["completed"] += 1
            else:
                stats["rejected_right"] += 1
        else:
            stats["wrong_status"].append({"action": action, "status": status, "detail": detail})


async def run(args, base: str, pid: int | None) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        models = (await client.get(base + "/v1/models")).json()["data"]
        text_models = [m["id"] for m in models if "whisper" not in m["id"]]
        model = args.served_model or text_models[0]
        refs = {}
        for p in PROMPTS:
            r = await client.post(
                base + "/v1/completions",
                json={"model": model, "prompt": p, "max_tokens": args.max_tokens, "temperature": 0},
            )
            r.raise_for_status()
            refs[p] = r.json()["choices"][0]["text"]
        ctx = args.context
        before = {
            "rss": proc_rss(pid),
            "compilations": await metric(client, base, "xlagen:compilations"),
            "slots_in_use": await metric(client, base, "xlagen:slots_in_use"),
        }
        stats = {
            "sent": Counter(),
            "status": Counter(),
            "completed": 0,
            "rejected_right": 0,
            "overloaded_429": 0,
            "disconnects": 0,
            "wrong_status": [],
            "server_errors": [],
            "mismatch": [],
            "transport_errors": [],
        }
        t0 = time.perf_counter()
        deadline = t0 + args.seconds
        await asyncio.gather(
            *[
                client_loop(i, client, base, model, refs, ctx, deadline, args.seed, stats, args.max_tokens)
                for i in range(args.clients)
            ]
        )
        load_s = time.perf_counter() - t0
        # slots back to 0: cancellations of dropped streams land within a step or two
        slots_end, waited = None, 0.0
        while waited < 30:
            slots_end = await metric(client, base, "xlagen:slots_in_use")
            running = await metric(client, base, "xlagen:num_requests_running")
            if slots_end == 0 and not running:
                break
            await asyncio.sleep(1)
            waited += 1
        after_refs_ok = True
        for p in PROMPTS[:3]:
            r = await client.post(
                base + "/v1/completions",
                json={"model": model, "prompt": p, "max_tokens": args.max_tokens, "temperature": 0},
            )
            after_refs_ok &= r.status_code == 200 and r.json()["choices"][0]["text"] == refs[p]
        health = (await client.get(base + "/health")).status_code
        after = {
            "rss": proc_rss(pid),
            "compilations": await metric(client, base, "xlagen:compilations"),
            "slots_in_use": slots_end,
            "slots_wait_s": waited,
            "num_requests_running": await metric(client, base, "xlagen:num_requests_running"),
            "num_requests_waiting": await metric(client, base, "xlagen:num_requests_waiting"),
            "health": health,
            "greedy_still_matches": after_refs_ok,
            "server_rejected_by_status": await metric_labels(client, base, "xlagen:request_rejected"),
        }
    sent = sum(stats["sent"].values())
    return {
        "name": "faults-quick" if args.quick else "faults",
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "config": {
            "clients": args.clients,
            "seconds": args.seconds,
            "max_tokens": args.max_tokens,
            "context": ctx,
            "model": model,
            "seed": args.seed,
            "actions": {a: w for a, (w, _) in ACTIONS.items()},
        },
        "load_s": load_s,
        "sent": sent,
        "sent_by_action": dict(stats["sent"]),
        "status_by_action": {f"{a} {s}": n for (a, s), n in sorted(stats["status"].items(), key=str)},
        "completed_valid": stats["completed"],
        "overloaded_429": stats["overloaded_429"],
        "disconnects": stats["disconnects"],
        "rejected_right_status": stats["rejected_right"],
        "wrong_status": len(stats["wrong_status"]),
        "wrong_status_examples": stats["wrong_status"][:20],
        "server_errors_5xx": len(stats["server_errors"]),
        "server_error_examples": stats["server_errors"][:20],
        "greedy_mismatches": len(stats["mismatch"]),
        "greedy_mismatch_examples": stats["mismatch"][:5],
        "transport_errors": len(stats["transport_errors"]),
        "transport_error_examples": stats["transport_errors"][:10],
        "before": before,
        "after": after,
        "rss_drift_mib": (after["rss"] - before["rss"]) / 2**20 if before["rss"] and after["rss"] else None,
    }


def markdown(res: dict) -> str:
    c = res["config"]
    mib = lambda b: f"{b / 2**20:.0f}" if b else "-"  # noqa: E731
    lines = [
        f"# Fault run ({res['name']}): {c['clients']} clients, {c['seconds']:g} s, model {c['model']}",
        "",
        "| figure | value |",
        "|---|---|",
        f"| requests sent | {res['sent']} |",
        f"| valid greedy completed (200, text checked) | {res['completed_valid']} |",
        f"| valid answered 429 (queue full) | {res['overloaded_429']} |",
        f"| streams dropped by the client after the first chunk | {res['disconnects']} |",
        f"| rejected with the right status | {res['rejected_right_status']} |",
        f"| wrong status | {res['wrong_status']} |",
        f"| server errors (5xx) | {res['server_errors_5xx']} |",
        f"| greedy results different from the reference | {res['greedy_mismatches']} |",
        f"| transport errors (client side) | {res['transport_errors']} |",
        f"| slots in use after the load (waited {res['after']['slots_wait_s']:.0f} s) | {res['after']['slots_in_use']} |",
        f"| requests running / waiting after | {res['after']['num_requests_running']} / {res['after']['num_requests_waiting']} |",
        f"| compilations before / after | {res['before']['compilations']} / {res['after']['compilations']} |",
        f"| server RSS start / end MiB (drift) | {mib(res['before']['rss'])} / {mib(res['after']['rss'])} "
        f"({res['rss_drift_mib'] if res['rss_drift_mib'] is None else round(res['rss_drift_mib'], 1)}) |",
        f"| /health after, greedy still equal | {res['after']['health']}, {res['after']['greedy_still_matches']} |",
        "",
        "Requests by action and status:",
        "",
        "| action | status | count |",
        "|---|---|---|",
    ]
    for key, n in res["status_by_action"].items():
        a, s = key.split(" ")
        lines.append(f"| {a} | {s} | {n} |")
    lines += [
        "",
        f"Server-side `xlagen:request_rejected` by status: {res['after']['server_rejected_by_status']}",
    ]
    for title, key in (
        ("Wrong statuses", "wrong_status_examples"),
        ("Server errors", "server_error_examples"),
        ("Mismatches", "greedy_mismatch_examples"),
        ("Transport errors", "transport_error_examples"),
    ):
        if res[key]:
            lines += ["", f"{title} (examples):", ""] + [f"* `{json.dumps(x)[:300]}`" for x in res[key]]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description="Reliability run of xlagen serve.")
    p.add_argument("--url", default=None, help="a server already up (else one is started)")
    p.add_argument("--pid", type=int, default=None, help="its process id, for RSS (with --url)")
    p.add_argument(
        "--model", default=None, help="text model directory for the started server (default: demo)"
    )
    p.add_argument("--whisper", default="default", help="--whisper of the started server")
    p.add_argument("--served-model", default=None)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument(
        "--context", type=int, default=256, help="the server's context (oversize prompts exceed it)"
    )
    p.add_argument("--slots", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="16 clients, 10 s")
    p.add_argument("--name", default=None)
    p.add_argument("--xlagen-ref", default="HEAD", help="git ref of xlagen to run ('worktree': as it is)")
    args = p.parse_args()
    if args.quick:
        args.clients, args.seconds = min(args.clients, 16), min(args.seconds, 10.0)
    proc, pid, base, commit = None, args.pid, args.url, None
    log = None
    try:
        if base is None:
            import socket

            import httpx

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            cmd = [
                str(Path(sys.executable).parent / "xlagen"),
                "serve",
                "--whisper",
                args.whisper,
                "--slots",
                str(args.slots),
                "--max-model-len",
                str(args.context),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ]
            if args.model:
                cmd += ["--model", args.model]
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / "logs").mkdir(exist_ok=True)
            log = open(RESULTS / "logs" / "faults-server.log", "w")
            print("starting:", " ".join(cmd), flush=True)
            from benchmarks.serve_bench import xlagen_env, xlagen_snapshot

            src, commit = xlagen_snapshot(args.xlagen_ref)
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **xlagen_env(src)},
            )
            pid, base = proc.pid, f"http://127.0.0.1:{port}"
            t0 = time.perf_counter()
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited {proc.returncode}")
                try:
                    if httpx.get(base + "/health", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.perf_counter() - t0 > 900:
                    raise TimeoutError("server not ready")
                time.sleep(1)
            print(f"ready in {time.perf_counter() - t0:.1f} s", flush=True)
        res = asyncio.run(run(args, base, pid))
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if log:
            log.close()
    res["config"]["xlagen_commit"] = commit
    name = args.name or res["name"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=1))
    (RESULTS / f"{name}.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
