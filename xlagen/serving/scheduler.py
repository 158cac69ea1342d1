"""The engine loop: requests in, tokens out, over the slot engine's fixed decode slots.

One thread owns the ``SlotEngine`` (TensorFlow releases the GIL while a program runs, so the
HTTP event loop stays responsive). Each turn of the loop:

1. *free*: cancelled requests leave their slot (a client that disconnected);
2. *schedule + prefill + insert*: waiting sequences fill the free slots, a few of one prompt
   bucket per ``insert`` call, oldest first;
3. *step*: one compiled call advances every live slot by up to ``steps_per_call`` tokens;
4. *detokenize*: each slot's new tokens become text; stop strings and the engine's own stops
   (EOS, budget) end a sequence, its slot is freed, and the deltas go to the request's queue.

A request with ``n`` choices or several prompts is several ``Sequence``s, scheduled
independently. Events reach the asyncio side through ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xlagen.generation.slots import STOP_EOS, SlotEngine, SlotRequest

logger = logging.getLogger("xlagen.serving")


class QueueFull(Exception):
    """The waiting queue is at its bound: the server answers 429."""


@dataclass
class TokenInfo:
    """One generated token, with its log-probability and the most likely alternatives."""

    id: int
    logprob: float
    top: list[tuple[int, float]]


@dataclass
class Delta:
    """What one engine turn produced for one sequence (``finish_reason`` set on its last delta)."""

    index: int
    text: str
    tokens: list[TokenInfo]
    finish_reason: str | None = None


@dataclass
class Sequence:
    """One choice of one request: a prompt, its slot options, and what it has produced."""

    request: Request
    index: int  # the choice index in the response
    prompt_ids: list[int]
    options: dict[str, Any]
    stop: list[str] = field(default_factory=list)
    include_stop_str: bool = False
    skip_special_tokens: bool = True
    token_ids: list[int] = field(default_factory=list)
    text: str = ""  # decoded so far (stop strings cut off)
    emitted: int = 0  # characters of ``text`` sent
    finish_reason: str | None = None
    slot: int | None = None


class Request:
    """One HTTP request's sequences and the asyncio queue its deltas go to."""

    _ids = itertools.count()

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.id = next(self._ids)
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()
        self.sequences: list[Sequence] = []
        self.arrival = time.perf_counter()
        self.first_token: float | None = None
        self.cancelled = False
        self.unfinished = 0

    def post(self, item: Any) -> None:
        if self.loop is None:
            self.queue.put_nowait(item)
            return
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            self.cancelled = True


class Scheduler:
    """Runs the engine loop in a thread; ``submit`` a request, read its queue, ``cancel`` it."""

    def __init__(self, engine: SlotEngine, tokenizer, max_waiting: int = 256, metrics=None) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.max_waiting = max_waiting
        self.metrics = metrics
        self.waiting: deque[Sequence] = deque()
        self.slots: list[Sequence | None] = [None] * engine.slots
        self._cancelled: set[int] = set()
        self._lock = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    # -- client side (event loop thread) -----------------------------------------------------------
    def submit(self, request: Request) -> None:
        """Queue every sequence of ``request``; QueueFull when the waiting queue cannot take them."""
        with self._lock:
            if self.error is not None:
                raise RuntimeError(f"the engine stopped: {self.error}")
            if len(self.waiting) + len(request.sequences) > self.max_waiting:
                raise QueueFull(f"{len(self.waiting)} sequences are waiting (limit {self.max_waiting})")
            request.unfinished = len(request.sequences)
            self.waiting.extend(request.sequences)
            self._lock.notify()
        if self.metrics:
            self.metrics.waiting.set(len(self.waiting))

    def cancel(self, request: Request) -> None:
        """Stop ``request`` (e.g. its client went away): its slots are freed on the next turn."""
        with self._lock:
            if request.unfinished > 0 and not request.cancelled:
                request.cancelled = True
                self._cancelled.add(request.id)
                self._lock.notify()

    @property
    def running(self) -> int:
        return sum(s is not None for s in self.slots)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="xlagen-engine", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # -- engine thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    while not self._stop and not self.waiting and self.running == 0 and not self._cancelled:
                        self._lock.wait()
                    if self._stop:
                        return
                    self._free_cancelled()
                    batches = self._schedule()
                for batch in batches:
                    self._insert(batch)
                if self.running:
                    self._step()
        except BaseException as e:  # noqa: BLE001 - every waiting client must hear about it
            logger.exception("engine loop failed")
            self.error = e
            for seq in list(self.waiting) + [s for s in self.slots if s is not None]:
                seq.request.post(e)

    def _free_cancelled(self) -> None:
        if not self._cancelled:
            return
        self.waiting = deque(s for s in self.waiting if s.request.id not in self._cancelled)
        for slot, seq in enumerate(self.slots):
            if seq is not None and seq.request.id in self._cancelled:
                self.slots[slot] = None
        self._cancelled.clear()
        self._update_gauges()

    def _schedule(self) -> list[list[Sequence]]:
        """Take waiting sequences into free slots: groups of one prompt bucket, oldest first. While
        slots are decoding, one group per turn, so that prefills delay the running streams by at
        most one insert between two decode calls."""
        free = [i for i, s in enumerate(self.slots) if s is None]
        batches: list[list[Sequence]] = []
        limit = self.engine.prefill_batch_sizes[-1]
        most = 1 if self.running else len(free)
        while free and self.waiting and len(batches) < most:
            head = self.waiting[0]
            bucket = self.engine.bucket(len(head.prompt_ids))
            group = [s for s in self.waiting if self.engine.bucket(len(s.prompt_ids)) == bucket]
            group = group[: min(limit, len(free))]
            for seq in group:
                self.waiting.remove(seq)
                seq.slot = free.pop(0)
                self.slots[seq.slot] = seq
            batches.append(group)
        self._update_gauges()
        return batches

    def _insert(self, batch: list[Sequence]) -> None:
        now = time.perf_counter()
        if self.metrics:
            for seq in batch:
                self.metrics.queue_time.observe(now - seq.request.arrival)
                self.metrics.prompt_tokens.inc(len(seq.prompt_ids))
        try:
            out = self.engine.insert([SlotRequest(s.slot, s.prompt_ids, s.options) for s in batch])
        except (ValueError, TypeError) as e:  # this batch's input, not the engine: fail just these
            logger.exception("insert failed")
            for seq in batch:
                self.slots[seq.slot] = None
                seq.request.post(e)
            return
        produced = self._emit(batch, out, time.perf_counter())  # each sequence's first token
        if self.metrics:
            self.metrics.generation_tokens.inc(produced)

    def _step(self) -> None:
        active = np.asarray([s is not None for s in self.slots])
        start = time.perf_counter()
        out = self.engine.step(active)
        now = time.perf_counter()
        running = [seq for seq in self.slots if seq is not None]
        produced = self._emit(running, out, now, by_slot=True)
        if self.metrics and produced:
            self.metrics.generation_tokens.inc(produced)
            per_token = (now - start) / max(1, int(out.counts.max()))
            for slot, seq in enumerate(self.slots):
                if seq is not None:
                    for _ in range(int(out.counts[slot])):
                        self.metrics.inter_token_latency.observe(per_token)
        self._update_gauges()

    def _emit(self, seqs: list[Sequence], out, now: float, by_slot: bool = False) -> int:
        """Hand each sequence its new tokens (row ``i`` of ``out``, or its slot's row); free the
        slots of those that ended. Returns the number of tokens."""
        produced = 0
        for i, seq in enumerate(seqs):
            row = seq.slot if by_slot else i
            count = int(out.counts[row])
            produced += count
            infos = [
                TokenInfo(
                    int(out.tokens[row, j]),
                    float(out.logprobs[row, j]),
                    list(zip(out.top_ids[row, j].tolist(), out.top_logprobs[row, j].tolist())),
                )
                for j in range(count)
            ]
            finish = None
            if out.finished[row]:
                finish = "stop" if out.stop_reasons[row] == STOP_EOS else "length"
            try:
                self._advance(seq, infos, finish, now)
            except Exception as e:  # noqa: BLE001 - e.g. detokenizing: this sequence fails, not the loop
                logger.exception("sequence %s failed", seq.index)
                seq.finish_reason = "error"
                seq.request.post(e)
            if seq.finish_reason is not None:
                self.slots[seq.slot] = None
        return produced

    def _advance(self, seq: Sequence, infos: list[TokenInfo], finish: str | None, now: float) -> None:
        """Append tokens, decode them, apply stop strings, post the delta."""
        request = seq.request
        if request.first_token is None and infos:
            request.first_token = now
            if self.metrics:
                self.metrics.time_to_first_token.observe(now - request.arrival)
        seq.token_ids.extend(info.id for info in infos)
        text = self._decode(seq, final=finish is not None)
        if seq.stop:
            hit = self._find_stop(seq, text)
            if hit is not None:
                text, finish = hit, "stop"
        seq.text = text
        hold = 0 if finish else max((len(s) for s in seq.stop), default=1) - 1
        upto = max(seq.emitted, len(text) - hold)
        delta = text[seq.emitted : upto]
        seq.emitted = upto
        seq.finish_reason = finish
        request.post(Delta(seq.index, delta, infos, finish))
        if finish is not None:
            request.unfinished -= 1
            if request.unfinished == 0 and self.metrics:
                self.metrics.e2e_latency.observe(now - request.arrival)
                self.metrics.finished.labels(finish).inc()

    def _decode(self, seq: Sequence, final: bool) -> str:
        """Text of the generated tokens; a trailing incomplete UTF-8 character waits for the next token."""
        text = self.tokenizer.decode(seq.token_ids, skip_special_tokens=seq.skip_special_tokens)
        if not final and text.endswith("\ufffd"):
            text = text.rstrip("\ufffd")
        return text

    @staticmethod
    def _find_stop(seq: Sequence, text: str) -> str | None:
        """``text`` cut at the first stop string (kept when ``include_stop_str``), or None."""
        start = max(0, seq.emitted - max(len(s) for s in seq.stop))
        best = None
        for stop in seq.stop:
            at = text.find(stop, start)
            if at >= 0 and (best is None or at < best[0]):
                best = (at, stop)
        if best is None:
            return None
        at, stop = best
        return text[: at + len(stop)] if seq.include_stop_str else text[:at]

    def _update_gauges(self) -> None:
        if self.metrics:
            running = self.running
            self.metrics.running.set(running)
            self.metrics.slots_in_use.set(running)
            self.metrics.waiting.set(len(self.waiting))
            self.metrics.compilations.set(self.engine.compilations)
