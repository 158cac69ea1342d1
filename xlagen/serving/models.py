"""What the server serves: a text model behind the slot scheduler, and a Whisper pipeline.

``TextService`` turns an OpenAI request into ``Sequence``s (tokenize, check lengths, map the
sampling fields onto slot options); ``SpeechService`` runs transcriptions one at a time on a
worker thread. Both load and compile in ``load()``, which the server calls before it reports ready.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from xlagen.serving.protocol import APIError, ChatCompletionRequest, CompletionRequest, SamplingFields
from xlagen.serving.scheduler import Request, Scheduler, Sequence

DEMO_MODEL = Path(__file__).resolve().parent.parent / "assets" / "demo-gpt2-kjv"


class TextService:
    """A causal or seq2seq model, its tokenizer, a ``SlotEngine`` and the ``Scheduler`` over it."""

    def __init__(
        self,
        directory: str | os.PathLike | None = None,
        name: str | None = None,
        slots: int = 8,
        max_length: int | None = None,
        steps_per_call: int = 4,
        max_waiting: int = 256,
        prompt_buckets: tuple[int, ...] | None = None,
        prefill_batch_sizes: tuple[int, ...] = (1, 4),
        metrics=None,
    ) -> None:
        self.directory = Path(directory) if directory is not None else DEMO_MODEL
        self.name = name or self.directory.name
        self.engine_options = dict(
            slots=slots,
            max_length=max_length,
            steps_per_call=steps_per_call,
            prompt_buckets=prompt_buckets,
            prefill_batch_sizes=prefill_batch_sizes,
        )
        self.max_waiting = max_waiting
        self.metrics = metrics
        self.scheduler: Scheduler | None = None

    def load(self, warmup: bool = True) -> None:
        """Load weights and tokenizer, allocate the slots, compile every program, start the loop."""
        import xlagen
        from xlagen.configuration_utils import load_config_dict
        from xlagen.generation.slots import SlotEngine

        config = load_config_dict(self.directory)
        self.seq2seq = bool(config.get("is_encoder_decoder"))
        auto = xlagen.TFAutoModelForSeq2SeqLM if self.seq2seq else xlagen.TFAutoModelForCausalLM
        self.model = auto.from_pretrained(self.directory)
        self.tokenizer = xlagen.AutoTokenizer.from_pretrained(self.directory)
        self.engine = SlotEngine(self.model, **self.engine_options)
        self.generation_config = self.model.generation_config
        if warmup:
            self.engine.warmup()
        self.scheduler = Scheduler(self.engine, self.tokenizer, self.max_waiting, self.metrics)
        self.scheduler.start()

    @property
    def context_length(self) -> int:
        return self.engine.max_length

    # -- requests ----------------------------------------------------------------------------------
    def completion_prompts(self, req: CompletionRequest) -> list[list[int]]:
        """Token ids of each prompt (strings are tokenized; id lists are checked against the vocabulary)."""
        p = req.prompt
        if isinstance(p, str) or (isinstance(p, list) and p and isinstance(p[0], int)):
            p = [p]
        prompts = []
        for i, item in enumerate(p):
            if isinstance(item, str):
                ids = self.tokenizer(item)["input_ids"]
            else:
                ids = list(item)
                bad = [t for t in ids if not 0 <= t < self.model.config.vocab_size]
                if bad:
                    raise APIError(
                        f"prompt[{i}] holds token id {bad[0]} outside the vocabulary "
                        f"[0, {self.model.config.vocab_size})",
                        param="prompt",
                    )
            prompts.append(self._non_empty(ids, f"prompt[{i}]" if len(p) > 1 else "prompt"))
        return prompts

    def chat_prompt(self, req: ChatCompletionRequest) -> list[int]:
        if not getattr(self.tokenizer, "chat_template", None):
            raise APIError(f"model {self.name!r} has no chat template: use /v1/completions", param="messages")
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        try:
            ids = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=req.add_generation_prompt, tokenize=True
            )
        except ValueError as e:
            raise APIError(str(e), param="messages") from e
        return self._non_empty(ids, "messages")

    def _non_empty(self, ids: list[int], param: str) -> list[int]:
        if ids:
            return list(ids)
        bos = self.generation_config.bos_token_id
        if bos is None or self.seq2seq:
            raise APIError(f"{param} is empty", param=param)
        return [int(bos)]

    def max_tokens(self, req: SamplingFields, prompt: list[int], default: int | None, param: str) -> int:
        """The request's token budget, checked against the context (the error says how it is used)."""
        limit = self.engine.max_length
        prompt_room = (
            self.engine.prompt_buckets[-1] if self.seq2seq else min(limit - 1, self.engine.prompt_buckets[-1])
        )
        if len(prompt) > prompt_room:
            raise APIError(
                f"this model's maximum context length is {limit} tokens; the prompt has {len(prompt)} "
                f"tokens (at most {prompt_room})",
                param="prompt" if param == "max_tokens" else "messages",
                code="context_length_exceeded",
            )
        room = limit - (1 if self.seq2seq else len(prompt))
        asked = req.max_tokens if req.max_tokens is not None else default
        if asked is None:
            return room
        if asked > room:
            raise APIError(
                f"this model's maximum context length is {limit} tokens; you requested "
                f"{len(prompt) + asked} tokens ({len(prompt)} in the prompt, {asked} in the completion)",
                param=param,
                code="context_length_exceeded",
            )
        return asked

    def slot_options(self, req: SamplingFields, max_tokens: int, choice: int, seed: int) -> dict[str, Any]:
        """Per-slot values: the request's fields, else the checkpoint's generation config."""
        gc = self.generation_config
        temperature = req.temperature
        if temperature is None:
            temperature = float(gc.temperature or 1.0) if gc.do_sample else 0.0
        sampling = temperature > 0.0
        top_k = req.top_k if req.top_k is not None else (int(gc.top_k or 0) if sampling else 0)
        repetition = req.repetition_penalty
        if repetition is None:
            repetition = float(gc.repetition_penalty or 1.0)
        return {
            "do_sample": sampling,
            "temperature": temperature if sampling else 1.0,
            "top_k": max(top_k, 0),
            "top_p": req.top_p if req.top_p is not None else float(gc.top_p or 1.0),
            "seed": [seed & 0xFFFFFFFF, seed >> 32],
            "sample_row": choice,
            "repetition_penalty": repetition,
            "presence_penalty": req.presence_penalty,
            "frequency_penalty": req.frequency_penalty,
            "max_new_tokens": max_tokens,
            "min_new_tokens": min(req.min_tokens, max_tokens),
            "ignore_eos": req.ignore_eos,
        }

    def new_request(
        self, req: SamplingFields, prompts: list[list[int]], default_max: int | None, param: str
    ) -> Request:
        """A ``Request`` with ``n`` sequences per prompt (choice index = prompt * n + j, as OpenAI)."""
        budgets = [self.max_tokens(req, p, default_max, param) for p in prompts]
        seed = req.seed if req.seed is not None else int.from_bytes(os.urandom(4), "little")
        request = Request(asyncio.get_running_loop())
        for i, (prompt, budget) in enumerate(zip(prompts, budgets)):
            for j in range(req.n):
                request.sequences.append(
                    Sequence(
                        request,
                        i * req.n + j,
                        prompt,
                        self.slot_options(req, budget, j, seed),
                        stop=list(req.stop or []),
                    )
                )
        return request

    def token_text(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id], skip_special_tokens=False)

    def shutdown(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown()


class SpeechService:
    """A Whisper pipeline; transcriptions run one at a time on a worker thread."""

    def __init__(
        self, directory: str | os.PathLike | None = None, name: str | None = None, metrics=None
    ) -> None:
        self.directory = directory
        self.name = name or (Path(directory).name if directory is not None else "whisper-tiny.en")
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xlagen-whisper")

    def load(self, warmup: bool = True) -> None:
        import numpy as np

        from xlagen.models.whisper.transcribe import get_pipeline

        self.pipeline = get_pipeline(self.directory)
        if warmup:  # compile the first window's programs on a second of silence
            self.pipeline.transcribe(np.zeros(16000, np.float32), temperature=0.0)

    async def transcribe(self, audio: bytes, **options: Any):
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, audio, options)

    def _run(self, audio: bytes, options: dict[str, Any]):
        from xlagen.audio import load_audio

        samples = load_audio(audio)
        result = self.pipeline.transcribe(samples, **options)
        if self.metrics:
            self.metrics.transcribed_audio.inc(result.duration)
        return result

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
