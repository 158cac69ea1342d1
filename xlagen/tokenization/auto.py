"""``AutoTokenizer.from_pretrained``: every tokenizer is a fast one here."""

from __future__ import annotations

import os
from typing import Any

from xlagen.tokenization.fast import PreTrainedTokenizerFast


class AutoTokenizer:
    """Entry point mirroring ``transformers.AutoTokenizer``: every tokenizer is a fast one here."""

    def __init__(self) -> None:
        raise OSError(
            "AutoTokenizer is designed to be instantiated with AutoTokenizer.from_pretrained(path)."
        )

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> PreTrainedTokenizerFast:
        """Load the tokenizer in ``pretrained_model_name_or_path``.

        See :meth:`PreTrainedTokenizerFast.from_pretrained`; the result is always a fast tokenizer.
        """
        return PreTrainedTokenizerFast.from_pretrained(pretrained_model_name_or_path, **kwargs)
