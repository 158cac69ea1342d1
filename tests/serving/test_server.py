"""``xlagen serve`` through real HTTP: the ``openai`` client and httpx against a live uvicorn server,
outputs checked against ``model.generate`` / ``xlagen.transcribe`` on the same weights."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import uvicorn

import xlagen
from tests.conftest import TEXT, write_gpt2_with_tokenizer
from xlagen.serving.app import ServerOptions, create_app
from xlagen.serving.models import SpeechService, TextService

KEY = "sk-test"
AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
TEMPLATE = (
    "{% for m in messages %}{{ bos_token }}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A tiny lively GPT-2 with a BPE tokenizer and a chat template, plus the bundled Whisper tiny.en."""
    path = tmp_path_factory.mktemp("served_gpt2")
    write_gpt2_with_tokenizer(path, initializer_range=0.3)
    (path / "chat_template.jinja").write_text(TEMPLATE)
    text = TextService(
        path,
        name="tiny",
        slots=4,
        max_length=64,
        steps_per_call=2,
        max_waiting=64,
        prompt_buckets=(16, 32, 63),
        prefill_batch_sizes=(1, 4),
    )
    options = ServerOptions(api_key=KEY, max_json_bytes=64 * 1024, max_audio_bytes=2 << 20)
    app = create_app(text, SpeechService(None), options)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 600
    while time.time() < deadline:
        try:
            if httpx.get(f"{base}/health").status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    else:
        pytest.fail("the server did not become ready")
    yield {"base": base, "text": text, "app": app}
    srv.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server["base"] + "/v1", api_key=KEY)


def alone_ids(text: TextService, prompt_ids: list[int], max_tokens: int, **kw) -> list[int]:
    """``model.generate`` on this prompt alone: the new tokens up to and with the first EOS."""
    out = text.model.generate(np.asarray([prompt_ids]), max_new_tokens=max_tokens, **kw).numpy()[0]
    new = out[len(prompt_ids) :].tolist()
    eos = text.model.generation_config.eos_token_ids
    for i, t in enumerate(new):
        if t in eos:
            return new[: i + 1]
    return new


def alone(text: TextService, prompt_ids: list[int], max_tokens: int, **kw) -> str:
    """``alone_ids`` decoded the way the server decodes."""
    return text.tokenizer.decode(alone_ids(text, prompt_ids, max_tokens, **kw), skip_special_tokens=True)


def metric(server, name: str) -> float:
    body = httpx.get(server["base"] + "/metrics").text
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def test_health_models_metrics(server, client):
    assert httpx.get(server["base"] + "/health").json() == {"status": "ok"}
    ids = {m.id for m in client.models.list().data}
    assert ids == {"tiny", "whisper-tiny.en"}
    assert metric(server, "xlagen:slots_total") == 4
    assert metric(server, "xlagen:compilations") > 0


def test_completions_match_generate(server, client):
    text = server["text"]
    prompts = ["TensorFlow is", "XLA compiles graphs", "Generation with a static cache"]
    resp = client.completions.create(model="tiny", prompt=prompts, max_tokens=9, temperature=0)
    assert [c.index for c in resp.choices] == [0, 1, 2]
    produced = 0
    for prompt, choice in zip(prompts, resp.choices):
        ids = text.tokenizer(prompt)["input_ids"]
        assert choice.text == alone(text, ids, 9)
        produced += len(alone_ids(text, ids, 9))
    assert resp.usage.completion_tokens == produced
    assert resp.usage.prompt_tokens == sum(len(text.tokenizer(p)["input_ids"]) for p in prompts)


def test_mixed_concurrent_load_keeps_greedy_outputs(server):
    """Greedy requests answer as ``generate`` on their prompt alone, whatever shares the slots."""
    text = server["text"]
    rng = np.random.default_rng(0)
    words = " ".join(TEXT[:3]).split()
    jobs = []
    for i in range(14):
        prompt = " ".join(words[j] for j in rng.integers(0, len(words), int(rng.integers(1, 8))))
        body = {"model": "tiny", "prompt": prompt, "max_tokens": int(rng.integers(1, 24))}
        body.update({"temperature": 1.0, "seed": i} if i % 3 == 2 else {"temperature": 0})
        body["stream"] = i % 2 == 1
        jobs.append(body)
    compiled = metric(server, "xlagen:compilations")

    async def run(body):
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=server["base"], headers=headers, timeout=120) as c:
            if not body["stream"]:
                r = await c.post("/v1/completions", json=body)
                assert r.status_code == 200, r.text
                return r.json()["choices"][0]["text"]
            parts = []
            async with c.stream("POST", "/v1/completions", json=body) as r:
                assert r.status_code == 200
                async for line in r.aiter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        parts.append(json.loads(line[6:])["choices"][0]["text"])
            return "".join(parts)

    async def main():
        return await asyncio.gather(*(run(b) for b in jobs))

    results = asyncio.run(main())
    for body, got in zip(jobs, results):
        if body["temperature"] == 0:
            ids = text.tokenizer(body["prompt"])["input_ids"]
            assert got == alone(text, ids, body["max_tokens"]), body
    assert metric(server, "xlagen:compilations") == compiled, "no compilation after warm-up"
    assert metric(server, "xlagen:slots_in_use") == 0


def test_streaming_equals_non_streaming_with_usage(server, client):
    kw = dict(model="tiny", prompt="XLA compiles", max_tokens=12, temperature=0)
    whole = client.completions.create(**kw)
    chunks = list(client.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason


def test_sampling_with_seed_matches_generate(server, client):
    text = server["text"]
    prompt = "The static cache"
    ids = text.tokenizer(prompt)["input_ids"]
    resp = client.completions.create(
        model="tiny", prompt=prompt, max_tokens=10, temperature=0.7, top_p=0.9, seed=7, n=2
    )
    out = text.model.generate(
        np.asarray([ids]),
        max_new_tokens=10,
        do_sample=True,
        temperature=0.7,
        top_p=0.9,
        seed=(7, 0),
        num_return_sequences=2,
    ).numpy()
    for choice, row in zip(resp.choices, out):
        new = row[len(ids) :].tolist()
        eot = text.model.generation_config.eos_token_ids[0]
        new = new[: new.index(eot) + 1] if eot in new else new
        assert choice.text == text.tokenizer.decode(new, skip_special_tokens=True)
    again = client.completions.create(
        model="tiny", prompt=prompt, max_tokens=10, temperature=0.7, top_p=0.9, seed=7, n=2
    )
    assert [c.text for c in again.choices] == [c.text for c in resp.choices]


def test_stop_logprobs_echo(server, client):
    text = server["text"]
    prompt = "TensorFlow is"
    full = (
        client.completions.create(model="tiny", prompt=prompt, max_tokens=16, temperature=0).choices[0].text
    )
    assert len(full) > 4
    stop = full[2:4]
    cut = client.completions.create(
        model="tiny", prompt=prompt, max_tokens=16, temperature=0, stop=[stop, "@@"]
    )
    assert cut.choices[0].text == full[: full.index(stop)] and cut.choices[0].finish_reason == "stop"
    lp = client.completions.create(model="tiny", prompt=prompt, max_tokens=5, temperature=0, logprobs=3)
    probs = lp.choices[0].logprobs
    assert len(probs.tokens) == len(probs.token_logprobs) == lp.usage.completion_tokens
    assert all(len(t) <= 3 for t in probs.top_logprobs) and all(v <= 0 for v in probs.token_logprobs)
    assert "".join(probs.tokens) == lp.choices[0].text  # tokens spell out the text
    top_first = max(probs.top_logprobs[0].values())
    assert abs(top_first - probs.token_logprobs[0]) < 1e-5  # greedy picks the most likely
    echo = client.completions.create(model="tiny", prompt=prompt, max_tokens=5, temperature=0, echo=True)
    assert (
        echo.choices[0].text
        == text.tokenizer.decode(text.tokenizer(prompt)["input_ids"]) + lp.choices[0].text
    )


def test_chat_completions(server, client):
    text = server["text"]
    messages = [{"role": "user", "content": "TensorFlow is"}]
    resp = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0)
    ids = text.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    assert resp.choices[0].message.content == alone(text, ids, 8)
    assert resp.choices[0].message.role == "assistant"
    stream = client.chat.completions.create(
        model="tiny",
        messages=messages,
        max_tokens=8,
        temperature=0,
        stream=True,
        logprobs=True,
        top_logprobs=2,
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == resp.choices[0].message.content
    assert (
        sum(len(c.choices[0].logprobs.content) for c in chunks if c.choices[0].logprobs)
        == resp.usage.completion_tokens
    )


def test_chat_without_template_is_a_400(server):
    text = server["text"]
    saved, text.tokenizer.chat_template = text.tokenizer.chat_template, None
    try:
        r = post(
            server, "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
        )
    finally:
        text.tokenizer.chat_template = saved
    assert r.status_code == 400 and "chat template" in r.json()["error"]["message"]


def post(server, route: str, body=None, headers=None, content=None):
    h = {"Authorization": f"Bearer {KEY}", **(headers or {})}
    if content is None:
        return httpx.post(server["base"] + route, json=body, headers=h, timeout=60)
    return httpx.post(server["base"] + route, content=content, headers=h, timeout=60)


OK = {"model": "tiny", "prompt": "TensorFlow is", "max_tokens": 4}


@pytest.mark.parametrize(
    ("change", "status", "param"),
    [
        ({"max_tokens": "4"}, 400, "max_tokens"),
        ({"temperature": 2.5}, 400, "temperature"),
        ({"top_p": 0}, 400, "top_p"),
        ({"n": 0}, 400, "n"),
        ({"logprobs": 6}, 400, "logprobs"),
        ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
        ({"seed": -1}, 400, "seed"),
        ({"presence_penalty": 3}, 400, "presence_penalty"),
        ({"prompt": "TensorFlow is " * 40}, 400, "prompt"),
        ({"max_tokens": 61}, 400, "max_tokens"),
        ({"prompt": [1, 2, 99999]}, 400, "prompt"),
        ({"prompt": None}, 400, "prompt"),
        ({"logit_bias": {"5": 1.0}}, 400, None),
        ({"model": "gpt-4"}, 404, "model"),
    ],
)
def test_bad_completion_requests(server, change, status, param):
    body = {**OK, **change}
    if change.get("prompt", "") is None:
        del body["prompt"]
    r = post(server, "/v1/completions", body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param or (error["param"] or "").startswith(param), error


def test_malformed_bodies_auth_and_limits(server):
    r = post(
        server,
        "/v1/completions",
        content=b'{"model": "tiny", "prompt": ',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    r = post(server, "/v1/completions", content=b"prompt=hi", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = post(server, "/v1/completions", content=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    big = json.dumps({**OK, "prompt": "x" * 70_000}).encode()
    r = post(server, "/v1/completions", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    r = httpx.post(server["base"] + "/v1/completions", json=OK)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert (
        httpx.get(server["base"] + "/v1/nothing", headers={"Authorization": f"Bearer {KEY}"}).status_code
        == 404
    )


def test_queue_full_is_a_429(server):
    scheduler = server["text"].scheduler
    saved, scheduler.max_waiting = scheduler.max_waiting, 0
    try:
        r = post(server, "/v1/completions", OK)
    finally:
        scheduler.max_waiting = saved
    assert r.status_code == 429 and r.headers["retry-after"] == "1"


def test_disconnect_mid_stream_frees_the_slot(server):
    body = {**OK, "max_tokens": 50, "stream": True, "ignore_eos": True, "prompt": "A"}
    with httpx.stream(
        "POST", server["base"] + "/v1/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
    ) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                break
    deadline = time.time() + 20
    while metric(server, "xlagen:slots_in_use") != 0 and time.time() < deadline:
        time.sleep(0.2)
    assert metric(server, "xlagen:slots_in_use") == 0
    assert post(server, "/v1/completions", OK).status_code == 200


def test_transcriptions(server, client):
    clip = AUDIO / "dev_09.wav"
    expected = xlagen.transcribe(str(clip)).text.strip()
    with open(clip, "rb") as f:
        resp = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert resp.text == expected
    with open(clip, "rb") as f:
        verbose = client.audio.transcriptions.create(
            model="whisper-tiny.en",
            file=f,
            response_format="verbose_json",
            timestamp_granularities=["segment"],
        )
    assert verbose.text == expected and verbose.segments and verbose.duration > 3
    with open(clip, "rb") as f:  # word timestamps, as the openai client asks for them
        words = client.audio.transcriptions.create(
            model="whisper-1", file=f, response_format="verbose_json", timestamp_granularities=["word"]
        )
    local = xlagen.transcribe(str(clip), word_timestamps=True)
    assert [w.word for w in words.words] == [w.word.strip() for s in local.segments for w in s.words]
    assert words.words[0].start == local.segments[0].words[0].start and not words.segments
    with open(clip, "rb") as f:
        plain = httpx.post(server["base"] + "/v1/audio/transcriptions", files={"file": ("a.wav", f, "audio/wav")},
                           data={"model": "whisper-1", "timestamp_granularities[]": "word"},
                           headers={"Authorization": f"Bearer {KEY}"}, timeout=60)  # fmt: skip
    assert plain.status_code == 400 and "verbose_json" in plain.json()["error"]["message"]
    with open(AUDIO / "dev_07.flac", "rb") as f:
        srt = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="srt")
    assert "-->" in srt and srt.startswith("1\n")
    headers = {"Authorization": f"Bearer {KEY}"}
    bad = httpx.post(
        server["base"] + "/v1/audio/transcriptions",
        files={"file": ("noise.wav", b"RIFF....garbage" * 10, "audio/wav")},
        data={"model": "whisper-1"},
        headers=headers,
        timeout=60,
    )
    assert bad.status_code == 400 and "noise.wav" in bad.json()["error"]["message"]
    fmt = httpx.post(
        server["base"] + "/v1/audio/transcriptions",
        files={"file": ("a.wav", clip.read_bytes(), "audio/wav")},
        data={"model": "whisper-1", "response_format": "mp3"},
        headers=headers,
        timeout=60,
    )
    assert fmt.status_code == 400 and fmt.json()["error"]["param"] == "response_format"


def test_short_load_with_faults(server):
    """CI's short reliability run (benchmarks/serve_faults.py is the long one): concurrent clients mix
    valid greedy requests (streamed or not) with disconnects and bad requests; no 5xx, every bad
    request gets its status, every greedy answer equals the reference, the slots end empty."""
    text = server["text"]
    prompts = ["TensorFlow is", "XLA compiles", "The static cache", "Generation"]
    refs = {p: alone(text, text.tokenizer(p)["input_ids"], 6) for p in prompts}
    headers = {"Authorization": f"Bearer {KEY}"}
    bad = [
        (dict(content=b'{"model": "tiny",', headers={"Content-Type": "application/json"}), 400),
        (dict(json={**OK, "temperature": 9}), 400),
        (dict(json={**OK, "n": "2"}), 400),
        (dict(json={**OK, "prompt": "TensorFlow is " * 40}), 400),
        (dict(content=b"hello", headers={"Content-Type": "text/plain"}), 415),
        (dict(json={**OK, "prompt": "x" * 70_000}), 413),
        (dict(json={**OK, "model": "nope"}), 404),
    ]

    async def client(i: int, results: list):
        async with httpx.AsyncClient(base_url=server["base"], headers=headers, timeout=120) as c:
            for j in range(4):
                kind = (i + j) % 4
                prompt = prompts[(i + j) % len(prompts)]
                body = {"model": "tiny", "prompt": prompt, "max_tokens": 6, "temperature": 0}
                if kind == 0:
                    r = await c.post("/v1/completions", json=body)
                    results.append(("greedy", r.status_code, r.json()["choices"][0]["text"] == refs[prompt]))
                elif kind == 1:
                    parts = []
                    async with c.stream("POST", "/v1/completions", json={**body, "stream": True}) as r:
                        async for line in r.aiter_lines():
                            if line.startswith("data: ") and line != "data: [DONE]":
                                parts.append(json.loads(line[6:])["choices"][0]["text"])
                    results.append(("stream", r.status_code, "".join(parts) == refs[prompt]))
                elif kind == 2:
                    long = {**body, "max_tokens": 40, "ignore_eos": True, "stream": True}
                    async with c.stream("POST", "/v1/completions", json=long) as r:
                        async for line in r.aiter_lines():
                            if line.startswith("data: "):
                                break  # the client goes away mid-stream
                    results.append(("disconnect", r.status_code, True))
                else:
                    kwargs, status = bad[(i + j) % len(bad)]
                    r = await c.post("/v1/completions", **kwargs)
                    results.append(("bad", r.status_code, r.status_code == status and "error" in r.json()))

    async def main():
        results: list = []
        await asyncio.gather(*(client(i, results) for i in range(24)))
        return results

    results = asyncio.run(main())
    assert len(results) == 96
    assert not [r for r in results if r[1] >= 500], "no server errors"
    assert all(ok for _, _, ok in results), [r for r in results if not r[2]]
    assert all(status == 200 for kind, status, _ in results if kind != "bad")
    deadline = time.time() + 20
    while metric(server, "xlagen:slots_in_use") != 0 and time.time() < deadline:
        time.sleep(0.2)
    assert metric(server, "xlagen:slots_in_use") == 0
    assert httpx.get(server["base"] + "/health").status_code == 200
