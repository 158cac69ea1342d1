"""The HTTP API: OpenAI's completions, chat, transcriptions and models routes, health and metrics.

``create_app`` builds a FastAPI app around a ``TextService`` and/or a ``SpeechService``. Models
load and compile on a background thread at start-up; ``/health`` answers 503 until they are
ready. Every error is OpenAI's ``{"error": {...}}`` with the right status: 400 for bad input
(naming the field), 401 without the API key, 404 for an unknown model or route, 413 past the body
limit, 415 for a wrong content type, 429 with ``Retry-After`` when the queue is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import ValidationError
from sse_starlette.sse import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from xlagen.serving.metrics import ServerMetrics
from xlagen.serving.models import SpeechService, TextService
from xlagen.serving.protocol import (
    TRANSCRIPTION_FORMATS,
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    validation_error,
)
from xlagen.serving.scheduler import Delta, QueueFull
from xlagen.serving.scheduler import Request as EngineRequest

logger = logging.getLogger("xlagen.serving")


@dataclass
class ServerOptions:
    """Limits and access: body sizes in bytes, an optional API key, CORS origins."""

    api_key: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    max_json_bytes: int = 1 << 20
    max_audio_bytes: int = 25 << 20
    warmup: bool = True


class Gatekeeper:
    """ASGI middleware, before any parsing: 401 without the API key (``/v1/`` routes), 413 for a
    body over the limit (declared or streamed)."""

    def __init__(self, app, options: ServerOptions, metrics: ServerMetrics | None = None) -> None:
        self.app, self.options, self.metrics = app, options, metrics

    async def _reject(self, send, error: APIError) -> None:
        if self.metrics is not None:
            self.metrics.rejected.labels(str(error.status)).inc()
        await _send_error(send, error)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        key = self.options.api_key
        if key and scope["path"].startswith("/v1/") and scope["method"] != "OPTIONS":
            if headers.get(b"authorization", b"") != f"Bearer {key}".encode():
                error = APIError(
                    "missing or invalid API key (Authorization: Bearer ...)", 401, code="invalid_api_key"
                )
                return await self._reject(send, error)
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        audio = scope["path"].startswith("/v1/audio/")
        limit = self.options.max_audio_bytes if audio else self.options.max_json_bytes
        declared = headers.get(b"content-length")
        too_big = APIError(f"request body is larger than the {limit}-byte limit", 413, code="body_too_large")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await self._reject(send, too_big)
        chunks, size = [], 0
        while True:  # read it all (within the limit), then replay it to the app
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return await self._reject(send, too_big)
            if not message.get("more_body"):
                break
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


async def _send_error(send, error: APIError) -> None:
    payload = json.dumps(error.body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def create_app(
    text: TextService | None = None, speech: SpeechService | None = None, options: ServerOptions | None = None
) -> FastAPI:
    """The app. Call ``app.state.loaded.wait()`` to block until the models are compiled (tests)."""
    options = options or ServerOptions()
    slots = text.engine_options["slots"] if text is not None else 0
    metrics = ServerMetrics(slots)
    for service in (text, speech):
        if service is not None:
            service.metrics = metrics

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=load, name="xlagen-load", daemon=True).start()
        yield
        for service in (text, speech):
            if service is not None:
                service.shutdown()

    app = FastAPI(title="xlagen", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.loaded = threading.Event()
    app.state.load_error = None
    if options.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=options.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(Gatekeeper, options=options, metrics=metrics)

    def load() -> None:
        try:
            for service in (text, speech):
                if service is not None:
                    service.load(warmup=options.warmup)
            if text is not None:
                metrics.compilations.set(text.engine.compilations)
        except BaseException as e:  # noqa: BLE001 - reported by /health
            logger.exception("loading failed")
            app.state.load_error = e
        finally:
            app.state.loaded.set()

    # -- errors -----------------------------------------------------------------------------------
    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError):
        metrics.rejected.labels(str(e.status)).inc()
        return error_response(e)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError):
        return error_response(APIError(str(e.errors()[0].get("msg")), 400))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        return error_response(APIError(str(e.detail), e.status_code))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception):
        logger.exception("unexpected error")
        return error_response(APIError(f"internal error: {type(e).__name__}: {e}", 500))

    # -- helpers ----------------------------------------------------------------------------------
    def ready(service) -> None:
        if service is None:
            return
        if app.state.load_error is not None:
            raise APIError(f"the model failed to load: {app.state.load_error}", 503)
        if not app.state.loaded.is_set():
            raise APIError(
                "the server is loading and compiling its models", 503, headers={"Retry-After": "5"}
            )

    def text_service(model: str) -> TextService:
        if text is None:
            raise APIError("this server has no text model", 404, param="model", code="model_not_found")
        if model != text.name:
            raise APIError(
                f"model {model!r} does not exist; this server has {text.name!r}",
                404,
                param="model",
                code="model_not_found",
            )
        ready(text)
        return text

    async def read_json(request: Request, model_cls):
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise APIError(f"Content-Type must be application/json, got {kind or 'none'!r}", 415)
        body = await request.body()
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise APIError(f"the body is not valid JSON: {e}", 400) from e
        if not isinstance(data, dict):
            raise APIError("the body must be a JSON object", 400)
        try:
            return model_cls.model_validate(data)
        except ValidationError as e:
            raise validation_error(e) from e

    def submit(service: TextService, request: EngineRequest) -> None:
        try:
            service.scheduler.submit(request)
        except QueueFull as e:
            raise APIError(f"server overloaded: {e}; retry later", 429, headers={"Retry-After": "1"}) from e
        except RuntimeError as e:
            raise APIError(str(e), 503) from e

    async def events(http: Request, service: TextService, request: EngineRequest):
        """The request's deltas, ending when every sequence finished; cancels it if the client left."""
        remaining = len(request.sequences)
        try:
            while remaining:
                try:
                    item = await asyncio.wait_for(request.queue.get(), timeout=1.0)
                except asyncio.TimeoutError:
                    if await http.is_disconnected():
                        return
                    continue
                if isinstance(item, BaseException):
                    raise APIError(f"generation failed: {item}", 500)
                if item.finish_reason is not None:
                    remaining -= 1
                yield item
        finally:
            if remaining:
                service.scheduler.cancel(request)

    async def collect(http: Request, service: TextService, request: EngineRequest) -> dict[int, list]:
        """Wait for a non-streamed request's end: each choice's tokens (``TokenInfo``s)."""
        tokens: dict[int, list] = {s.index: [] for s in request.sequences}
        async for delta in events(http, service, request):
            tokens[delta.index].extend(delta.tokens)
        return tokens

    def usage(request: EngineRequest, prompts: list[list[int]]) -> dict[str, int]:
        prompt_tokens = sum(len(p) for p in prompts)
        completion = sum(len(s.token_ids) for s in request.sequences)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        }

    # -- completions ----------------------------------------------------------------------------
    def completion_logprobs(service: TextService, delta: Delta, k: int, offset: int) -> dict[str, Any]:
        tokens, token_lps, tops, offsets = [], [], [], []
        for info in delta.tokens:
            piece = service.token_text(info.id)
            tokens.append(piece)
            token_lps.append(info.logprob)
            tops.append({service.token_text(t): lp for t, lp in info.top[:k]})
            offsets.append(offset)
            offset += len(piece)
        return {"tokens": tokens, "token_logprobs": token_lps, "top_logprobs": tops, "text_offset": offsets}

    @app.post("/v1/completions")
    async def completions(http: Request):
        req = await read_json(http, CompletionRequest)
        service = text_service(req.model)
        if req.echo and req.logprobs is not None:
            raise APIError("echo with logprobs is not supported (prompt log-probabilities)", param="echo")
        prompts = service.completion_prompts(req)
        request = service.new_request(req, prompts, 16, "max_tokens")
        prompt_texts = [service.tokenizer.decode(p) for p in prompts] if req.echo else None
        submit(service, request)
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        k = req.logprobs

        def choice_text(index: int, text: str, first: bool) -> str:
            if prompt_texts is not None and first:
                return prompt_texts[index // req.n] + text
            return text

        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)

            async def stream():
                started: set[int] = set()
                offsets: dict[int, int] = {}
                async for delta in events(http, service, request):
                    first = delta.index not in started
                    started.add(delta.index)
                    text = choice_text(delta.index, delta.text, first)
                    lp = None
                    if k is not None:
                        lp = completion_logprobs(service, delta, k, offsets.get(delta.index, 0))
                        offsets[delta.index] = offsets.get(delta.index, 0) + sum(len(t) for t in lp["tokens"])
                    if not text and delta.finish_reason is None and lp is None:
                        continue
                    chunk = {
                        "id": rid,
                        "object": "text_completion",
                        "created": created,
                        "model": service.name,
                        "choices": [
                            {
                                "index": delta.index,
                                "text": text,
                                "logprobs": lp,
                                "finish_reason": delta.finish_reason,
                            }
                        ],
                    }
                    yield {"data": json.dumps(chunk)}
                if include_usage:
                    last = {
                        "id": rid,
                        "object": "text_completion",
                        "created": created,
                        "model": service.name,
                        "choices": [],
                        "usage": usage(request, prompts),
                    }
                    yield {"data": json.dumps(last)}
                yield {"data": "[DONE]"}

            return EventSourceResponse(stream(), ping=15)

        tokens = await collect(http, service, request)
        choices = []
        for seq in request.sequences:
            lp = None
            if k is not None:
                lp = completion_logprobs(service, Delta(seq.index, "", tokens[seq.index]), k, 0)
            choices.append(
                {
                    "index": seq.index,
                    "text": choice_text(seq.index, seq.text, True),
                    "logprobs": lp,
                    "finish_reason": seq.finish_reason,
                }
            )
        return {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": service.name,
            "choices": choices,
            "usage": usage(request, prompts),
        }

    # -- chat -----------------------------------------------------------------------------------
    def chat_logprobs(service: TextService, delta: Delta, k: int) -> dict[str, Any]:
        content = []
        for info in delta.tokens:
            piece = service.token_text(info.id)
            content.append(
                {
                    "token": piece,
                    "logprob": info.logprob,
                    "bytes": list(piece.encode("utf-8")),
                    "top_logprobs": [
                        {
                            "token": (t := service.token_text(i)),
                            "logprob": lp,
                            "bytes": list(t.encode("utf-8")),
                        }
                        for i, lp in info.top[:k]
                    ],
                }
            )
        return {"content": content}

    @app.post("/v1/chat/completions")
    async def chat_completions(http: Request):
        req = await read_json(http, ChatCompletionRequest)
        service = text_service(req.model)
        if req.max_completion_tokens is not None and req.max_tokens is None:
            req.max_tokens = req.max_completion_tokens
        prompt = service.chat_prompt(req)
        request = service.new_request(req, [prompt], None, "max_tokens")
        submit(service, request)
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        k = (req.top_logprobs or 0) if req.logprobs else None

        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)

            def chunk(choices: list, **extra) -> dict:
                body = {
                    "id": rid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": service.name,
                    "choices": choices,
                    **extra,
                }
                return {"data": json.dumps(body)}

            async def stream():
                for seq in request.sequences:
                    first = {
                        "index": seq.index,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                    yield chunk([first])
                async for delta in events(http, service, request):
                    lp = chat_logprobs(service, delta, k) if k is not None else None
                    if not delta.text and delta.finish_reason is None and lp is None:
                        continue
                    body = {"content": delta.text} if delta.text else {}
                    yield chunk(
                        [
                            {
                                "index": delta.index,
                                "delta": body,
                                "logprobs": lp,
                                "finish_reason": delta.finish_reason,
                            }
                        ]
                    )
                if include_usage:
                    yield chunk([], usage=usage(request, [prompt]))
                yield {"data": "[DONE]"}

            return EventSourceResponse(stream(), ping=15)

        tokens = await collect(http, service, request)
        choices = []
        for seq in request.sequences:
            lp = None
            if k is not None:
                lp = chat_logprobs(service, Delta(seq.index, "", tokens[seq.index]), k)
            choices.append(
                {
                    "index": seq.index,
                    "message": {"role": "assistant", "content": seq.text},
                    "logprobs": lp,
                    "finish_reason": seq.finish_reason,
                }
            )
        return {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": service.name,
            "choices": choices,
            "usage": usage(request, [prompt]),
        }

    # -- transcriptions -------------------------------------------------------------------------
    @app.post("/v1/audio/transcriptions")
    async def transcriptions(http: Request):
        kind = http.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "multipart/form-data":
            raise APIError(f"Content-Type must be multipart/form-data, got {kind or 'none'!r}", 415)
        try:
            form = await http.form()
        except Exception as e:  # noqa: BLE001 - a malformed multipart body
            raise APIError(f"could not parse the multipart body: {e}", 400) from e
        model = form.get("model")
        if not isinstance(model, str) or not model:
            raise APIError("model: field required", param="model")
        if speech is None:
            raise APIError("this server has no speech model", 404, param="model", code="model_not_found")
        if model not in (speech.name, "whisper-1"):
            raise APIError(
                f"model {model!r} does not exist; this server has {speech.name!r}",
                404,
                param="model",
                code="model_not_found",
            )
        ready(speech)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise APIError("file: an audio file is required (multipart field 'file')", param="file")
        fmt = form.get("response_format") or "json"
        if fmt not in TRANSCRIPTION_FORMATS:
            raise APIError(
                f"response_format must be one of {', '.join(TRANSCRIPTION_FORMATS)}, got {fmt!r}",
                param="response_format",
            )
        granularities = form.getlist("timestamp_granularities[]") or form.getlist("timestamp_granularities")
        if any(g not in ("segment", "word") for g in granularities):
            raise APIError(
                f"timestamp_granularities: each must be 'segment' or 'word', got {granularities}",
                param="timestamp_granularities[]",
            )
        if granularities and fmt != "verbose_json":
            raise APIError(
                "timestamp_granularities needs response_format=verbose_json",
                param="timestamp_granularities[]",
            )
        opts: dict[str, Any] = {}
        if "word" in granularities:
            opts["word_timestamps"] = True
        temperature = form.get("temperature")
        if temperature not in (None, ""):
            try:
                value = float(temperature)
            except ValueError:
                raise APIError(
                    f"temperature must be a number, got {temperature!r}", param="temperature"
                ) from None
            if not 0.0 <= value <= 1.0:
                raise APIError(f"temperature must be in [0, 1], got {value}", param="temperature")
            if value > 0:
                opts["temperature"] = value
        language = form.get("language")
        if language:
            opts["language"] = language
        prompt = form.get("prompt")
        if prompt:
            opts["initial_prompt"] = prompt
        audio = await upload.read()
        if not audio:
            raise APIError("file: the audio file is empty", param="file")
        try:
            result = await speech.transcribe(audio, **opts)
        except (ValueError, OSError, RuntimeError) as e:
            raise APIError(f"could not transcribe {upload.filename!r}: {e}", param="file") from e
        text_out = result.text.strip()
        if fmt == "text":
            return PlainTextResponse(text_out + "\n")
        if fmt == "srt":
            return PlainTextResponse(result.to_srt(), media_type="application/x-subrip")
        if fmt == "vtt":
            return PlainTextResponse(result.to_vtt(), media_type="text/vtt")
        if fmt == "json":
            return {"text": text_out}
        body: dict[str, Any] = {
            "task": "transcribe",
            "language": result.language,
            "duration": result.duration,
            "text": text_out,
        }
        if "word" in granularities:  # OpenAI's verbose_json: the words of all segments, in order
            body["words"] = [
                {"word": w.word.strip(), "start": w.start, "end": w.end}
                for s in result.segments
                for w in s.words or ()
            ]
        if "word" in granularities and "segment" not in granularities:
            return body
        body["segments"] = [
            {
                "id": s.id,
                "seek": 0,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": list(s.tokens),
                "temperature": s.temperature,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio,
                "no_speech_prob": s.no_speech_prob if s.no_speech_prob is not None else 0.0,
            }
            for s in result.segments
        ]
        return body

    # -- models, health, metrics ----------------------------------------------------------------
    @app.get("/v1/models")
    async def models():
        data = []
        for service in (text, speech):
            if service is not None:
                data.append({"id": service.name, "object": "model", "created": 0, "owned_by": "xlagen"})
        return {"object": "list", "data": data}

    @app.get("/health")
    async def health():
        if app.state.load_error is not None:
            return JSONResponse({"status": "error", "error": str(app.state.load_error)}, status_code=503)
        if not app.state.loaded.is_set():
            return JSONResponse({"status": "loading"}, status_code=503)
        if text is not None and text.scheduler.error is not None:
            return JSONResponse({"status": "error", "error": str(text.scheduler.error)}, status_code=503)
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if text is not None and app.state.loaded.is_set() and text.scheduler is not None:
            metrics.compilations.set(text.engine.compilations)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.state.metrics = metrics
    return app
