"""``BatchEncoding``: what a tokenizer call returns (a dict with attribute access and ``.to_tf``-style conversion)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tokenizers import Encoding

from xlagen.tokenization.utils import _check_return_tensors

# --------------------------------------------------------------------------------------------------
# BatchEncoding
# --------------------------------------------------------------------------------------------------


class BatchEncoding(dict):
    """Output of a tokenizer call: a dict (``input_ids``, ``attention_mask``...) with attribute access.

    Mirrors ``transformers.BatchEncoding``: ``enc["input_ids"]`` and ``enc.input_ids`` are the same
    object, ``enc[0]`` is the ``tokenizers.Encoding`` of the first sequence, and values are Python
    lists, NumPy arrays or TensorFlow tensors depending on ``return_tensors``.
    """

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        encodings: Sequence[Encoding] | None = None,
        tensor_type: str | None = None,
    ) -> None:
        super().__init__(data or {})
        self._encodings = list(encodings) if encodings is not None else None
        self.convert_to_tensors(tensor_type)

    def __getitem__(self, item: str | int | slice) -> Any:
        if isinstance(item, str):
            return super().__getitem__(item)
        if isinstance(item, int) and self._encodings is not None:
            return self._encodings[item]
        if isinstance(item, slice):
            return {key: value[item] for key, value in self.items()}
        raise KeyError(
            f"Invalid key {item!r}: use a string ('input_ids', ...), an integer (the tokenizers.Encoding "
            "of that sequence) or a slice."
        )

    def __getattr__(self, item: str) -> Any:
        if item.startswith("__"):
            raise AttributeError(item)
        try:
            return super().__getitem__(item)
        except KeyError:
            raise AttributeError(f"BatchEncoding has no key or attribute {item!r}") from None

    @property
    def encodings(self) -> list[Encoding] | None:
        """The ``tokenizers.Encoding`` of every sequence (offsets, word ids, tokens...)."""
        return self._encodings

    @property
    def is_fast(self) -> bool:
        """True when produced by a ``tokenizers`` backend (always, for xlagen)."""
        return self._encodings is not None

    def tokens(self, batch_index: int = 0) -> list[str]:
        """Token strings of sequence ``batch_index`` (including special and pad tokens)."""
        return self._require_encodings()[batch_index].tokens

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """Word index of each token of sequence ``batch_index`` (None for special tokens)."""
        return self._require_encodings()[batch_index].word_ids

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """Which input (0 = text, 1 = text_pair) each token of ``batch_index`` comes from."""
        return self._require_encodings()[batch_index].sequence_ids

    def _require_encodings(self) -> list[Encoding]:
        if self._encodings is None:
            raise ValueError("This BatchEncoding carries no tokenizers.Encoding objects.")
        return self._encodings

    def convert_to_tensors(self, tensor_type: str | None = None) -> BatchEncoding:
        """Convert every value in place to ``"np"`` (int64) or ``"tf"`` (int32) tensors.

        The dtypes match Transformers: NumPy arrays built from Python ints (int64) and, for TensorFlow,
        what Transformers 4.x returned (``tf.int32``). Sequences of different lengths raise a ValueError
        asking for padding or truncation, as a rectangular tensor cannot be built.
        """
        if tensor_type is None:
            return self
        tensor_type = _check_return_tensors(tensor_type)
        for key, value in list(self.items()):
            if isinstance(value, np.ndarray) or _is_tf_tensor(value):
                continue
            if _is_ragged(value):
                raise ValueError(
                    f"Unable to create tensor for `{key}`: the sequences have different lengths "
                    f"({sorted({len(v) for v in value})}). Activate padding (padding=True or "
                    "padding='max_length') and/or truncation (truncation=True, max_length=...) to get "
                    f"batched tensors with return_tensors={tensor_type!r}, or use return_tensors=None."
                )
            array = np.asarray(value, dtype=np.int64)
            if tensor_type == "np":
                self[key] = array
            else:
                import tensorflow as tf

                self[key] = tf.constant(array.astype(np.int32), dtype=tf.int32)
        return self


def _is_ragged(value: Any) -> bool:
    if not isinstance(value, (list, tuple)) or not value or not isinstance(value[0], (list, tuple)):
        return False
    return len({len(v) for v in value}) > 1


def _is_tf_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("tensorflow")
