"""Generation engine, independent of model names: a model offers the cached-decoding protocol
(``init_cache``, ``forward_cached``, ``encode``) and these modules drive it.

* ``mixin``: ``generate()``'s front door (argument checks, shape buckets, which program runs);
* ``loop`` / ``beam_search``: the ``tf.while_loop`` of greedy/sampling and of beam search;
* ``slots``: continuous batching over fixed decode slots (the server's engine);
* ``logits_process`` / ``sampling``: how the next token is chosen (shared by all drivers);
* ``programs``: the cache of compiled XLA programs; ``outputs``: what ``generate`` returns;
* ``buckets``, ``config``, ``validation``: shapes, options, and their checks.
"""

from xlagen.generation.buckets import NO_BUCKETS, Buckets
from xlagen.generation.config import GenerationConfig

__all__ = ["Buckets", "GenerationConfig", "NO_BUCKETS"]
