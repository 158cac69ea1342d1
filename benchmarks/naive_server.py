"""The server a user would write around xlagen in an afternoon: the baseline for ``xlagen serve``.

    .venv/bin/python -m benchmarks.naive_server --model DIR [--port 8000] [--warmup-new-tokens 64]

FastAPI + uvicorn, one ``model.generate`` (XLA, xlagen's shape buckets) per request, behind a lock:
requests run one at a time, in arrival order (the lock is fair enough under asyncio: waiters are
threads blocked on it). No continuous batching, no request batching.

Routes: ``GET /health`` (503 until the model is loaded and warmed up), ``GET /v1/models``,
``POST /v1/completions`` with the OpenAI fields the benchmark sends: ``prompt`` (a string or a list
of token ids), ``max_tokens``, ``temperature`` (0 = greedy; > 0 samples), ``top_p``, ``top_k``,
``seed``, ``ignore_eos`` (the EOS token is taken out of the generation config for that call),
``stream``. Streaming is emulated: the whole completion is generated first, then sent as one SSE
chunk, a usage chunk and ``data: [DONE]``; so its time to first token is the request's whole
latency, and its inter-token latency has no samples. That is what a ``generate``-per-request server
gives its users.

At start-up the decoding programs of the prompt buckets 16..256 at batch 1 are compiled for
``--warmup-new-tokens`` new tokens (the benchmark's output length) with ``ignore_eos`` (xlagen's
``min_new_tokens`` is part of a program's key), as a careful user would do, so the benchmark does
not measure compilation. Other settings compile on their first request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import uuid

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse


def build_app(model_dir: str, name: str | None, warmup_new_tokens: int, warmup_lengths: tuple[int, ...]):
    state: dict = {"ready": False}
    lock = threading.Lock()
    served = name or model_dir.rstrip("/").split("/")[-1]

    def load() -> None:
        import xlagen

        model = xlagen.TFAutoModelForCausalLM.from_pretrained(model_dir)
        tokenizer = xlagen.AutoTokenizer.from_pretrained(model_dir)
        if warmup_new_tokens > 0:
            room = int(getattr(model.config, "n_positions", 1024) or 1024) - warmup_new_tokens
            lengths = tuple(n for n in warmup_lengths if n <= room)
            # the benchmark's requests: greedy, ignore_eos (= min_new_tokens, part of the program's key)
            model.warmup(
                prompt_lengths=lengths,
                max_new_tokens=warmup_new_tokens,
                min_new_tokens=warmup_new_tokens,
                do_sample=False,
            )
        state.update(model=model, tokenizer=tokenizer, ready=True)

    app = FastAPI(title="naive xlagen server")

    threading.Thread(target=load, daemon=True).start()

    @app.get("/health")
    async def health():
        return JSONResponse({"status": "ok" if state["ready"] else "loading"}, 200 if state["ready"] else 503)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": served, "object": "model", "owned_by": "naive"}]}

    def run(ids: list[int], body: dict) -> list[int]:
        model = state["model"]
        kwargs: dict = {"max_new_tokens": int(body.get("max_tokens") or 16)}
        temperature = float(body.get("temperature") if body.get("temperature") is not None else 1.0)
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature)
            if body.get("top_p") is not None:
                kwargs["top_p"] = float(body["top_p"])
            if body.get("top_k") is not None:
                kwargs["top_k"] = int(body["top_k"])
            if body.get("seed") is not None:
                kwargs["seed"] = int(body["seed"])
        else:
            kwargs["do_sample"] = False
        if body.get("ignore_eos"):
            kwargs["min_new_tokens"] = kwargs["max_new_tokens"]
        with lock:
            out = model.generate(np.asarray([ids], np.int32), **kwargs)
        out = np.asarray(out)[0, len(ids) :].tolist()
        eos = set(model.generation_config.eos_token_ids or []) if not body.get("ignore_eos") else set()
        for i, t in enumerate(out):
            if t in eos:
                return out[:i]
        return out

    @app.post("/v1/completions")
    async def completions(request: Request):
        if not state["ready"]:
            return JSONResponse({"error": {"message": "loading"}}, 503)
        try:
            body = json.loads(await request.body())
            prompt = body["prompt"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": {"message": "bad request"}}, 400)
        tok = state["tokenizer"]
        ids = tok(prompt)["input_ids"] if isinstance(prompt, str) else [int(t) for t in prompt]
        new = await asyncio.to_thread(run, ids, body)
        text = tok.decode(new)
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        usage = {
            "prompt_tokens": len(ids),
            "completion_tokens": len(new),
            "total_tokens": len(ids) + len(new),
        }
        finish = "length" if len(new) >= int(body.get("max_tokens") or 16) else "stop"
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        base = {"id": rid, "object": "text_completion", "created": created, "model": served}
        if not body.get("stream"):
            return {**base, "choices": [choice], "usage": usage}

        async def sse():
            yield f"data: {json.dumps({**base, 'choices': [choice]})}\n\n"
            yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream")

    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--served-model-name", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--warmup-new-tokens", type=int, default=64)
    p.add_argument("--warmup-lengths", default="16,32,64,128,256")
    args = p.parse_args()
    import uvicorn

    lengths = tuple(int(x) for x in args.warmup_lengths.split(",") if x)
    app = build_app(args.model, args.served_model_name, args.warmup_new_tokens, lengths)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
