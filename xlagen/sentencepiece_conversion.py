"""Moved to :mod:`xlagen.tokenization.sentencepiece`; kept importable from here."""

from xlagen.tokenization.sentencepiece import *  # noqa: F403
from xlagen.tokenization.sentencepiece import convert_t5_sentencepiece, t5_sentinel_tokens  # noqa: F401
