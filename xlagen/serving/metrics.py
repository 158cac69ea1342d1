"""Prometheus metrics named for what a user of the server watches (vLLM's names, ``xlagen:`` prefix)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServerMetrics:
    """One registry per server (tests run several in one process)."""

    def __init__(self, slots: int) -> None:
        r = self.registry = CollectorRegistry()
        self.time_to_first_token = Histogram(
            "xlagen:time_to_first_token_seconds",
            "Arrival to first generated token.",
            buckets=_LATENCY,
            registry=r,
        )
        self.inter_token_latency = Histogram(
            "xlagen:inter_token_latency_seconds",
            "Time between generated tokens.",
            buckets=_LATENCY,
            registry=r,
        )
        self.e2e_latency = Histogram(
            "xlagen:e2e_request_latency_seconds", "Arrival to last token.", buckets=_LATENCY, registry=r
        )
        self.queue_time = Histogram(
            "xlagen:request_queue_time_seconds", "Arrival to prefill.", buckets=_LATENCY, registry=r
        )
        self.running = Gauge("xlagen:num_requests_running", "Sequences in decode slots.", registry=r)
        self.waiting = Gauge("xlagen:num_requests_waiting", "Sequences waiting for a slot.", registry=r)
        self.slots_in_use = Gauge("xlagen:slots_in_use", "Decode slots holding a sequence.", registry=r)
        self.slots_total = Gauge("xlagen:slots_total", "Decode slots.", registry=r)
        self.slots_total.set(slots)
        self.prompt_tokens = Counter("xlagen:prompt_tokens", "Prefilled prompt tokens.", registry=r)
        self.generation_tokens = Counter("xlagen:generation_tokens", "Generated tokens.", registry=r)
        self.compilations = Gauge(
            "xlagen:compilations", "XLA programs traced and compiled by this process.", registry=r
        )
        self.finished = Counter(
            "xlagen:request_success", "Finished requests by finish reason.", ["finished_reason"], registry=r
        )
        self.rejected = Counter(
            "xlagen:request_rejected",
            "Requests answered with an error, by status code.",
            ["status"],
            registry=r,
        )
        self.transcribed_audio = Counter(
            "xlagen:transcribed_audio_seconds", "Seconds of audio transcribed.", registry=r
        )
