"""Generation engine: decoding loop, logits processors, sampling, shape buckets, options."""

from xlagen.generation.buckets import NO_BUCKETS, Buckets
from xlagen.generation.config import GenerationConfig

__all__ = ["Buckets", "GenerationConfig", "NO_BUCKETS"]
