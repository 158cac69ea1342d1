"""The cache of compiled decoding programs: one XLA program per key (shape bucket and code path).

``generate`` keys its programs by (batch bucket, prompt bucket, encoder shapes, ``LoopSpec``,
``BeamSpec``); the slot engine by (insert bucket) and (decode window). A key's program is traced
and compiled by XLA on first use; ``compilations`` counts those traces, so a test or the server's
``/metrics`` can show that a workload compiles nothing new after warm-up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from xlagen.models.layers import xla_program


class ProgramCache:
    """``get(key, fn)``: ``fn`` as an XLA-compiled ``tf.function``, traced once per key."""

    def __init__(self) -> None:
        self._programs: dict[Any, Any] = {}
        self.compilations = 0  # traces: each one an XLA compile (or a persistent-cache load)
        self.calls = 0  # set by the caller: how many requests the programs served
        self.keys: list[Any] = []  # in compilation order

    def get(self, key: Any, fn: Callable) -> Any:
        program = self._programs.get(key)
        if program is None:

            def traced(*args):
                self.compilations += 1  # Python runs only while tracing
                self.keys.append(key)
                with xla_program():
                    return fn(*args)

            program = tf.function(traced, jit_compile=True, reduce_retracing=False, autograph=False)
            self._programs[key] = program
        return program

    def as_dict(self) -> dict[str, Any]:
        return {"compilations": self.compilations, "calls": self.calls, "programs": list(self.keys)}
