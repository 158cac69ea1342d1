"""Shape buckets: round batch size, prompt length and new-token budget up before tracing.

XLA compiles one executable per input shape. Rounding the shapes that vary from call to call
up to a few bucket sizes means a new prompt length usually reuses a compiled executable.
"""

from __future__ import annotations

from dataclasses import dataclass


def _round_up(value: int, rule: str | int, minimum: int) -> int:
    value = max(int(value), 1)
    if rule == "exact":
        return value
    if rule == "pow2":
        bucket = max(minimum, 1)
        while bucket < value:
            bucket *= 2
        return bucket
    if isinstance(rule, int) and not isinstance(rule, bool) and rule > 0:
        return max(minimum, -(-value // rule) * rule)
    raise ValueError(f"bucket rule must be 'pow2', 'exact' or a positive int multiple, got {rule!r}")


@dataclass(frozen=True)
class Buckets:
    """How shapes are rounded: ``"pow2"``, ``"exact"`` or an int multiple, per dimension.

    Defaults: batch and new-token budget to powers of two, prompt length to powers of two
    from 16, so prompts of 1..16 tokens share one executable, 17..32 the next, and so on.
    """

    batch: str | int = "pow2"
    prompt_length: str | int = "pow2"
    new_tokens: str | int = "pow2"
    min_prompt_bucket: int = 16
    min_new_tokens_bucket: int = 16

    def __post_init__(self) -> None:
        for name in ("batch", "prompt_length", "new_tokens"):
            _round_up(1, getattr(self, name), 1)  # validates the rule

    def batch_size(self, n: int) -> int:
        return _round_up(n, self.batch, 1)

    def prompt(self, n: int) -> int:
        return _round_up(n, self.prompt_length, self.min_prompt_bucket)

    def new(self, n: int) -> int:
        return _round_up(n, self.new_tokens, self.min_new_tokens_bucket)


NO_BUCKETS = Buckets("exact", "exact", "exact", 1, 1)
