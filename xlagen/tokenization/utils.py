"""Tokenizer file names, option checks and small helpers shared by the tokenizer modules."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tokenizers import AddedToken

if TYPE_CHECKING:  # annotations only (fast imports this module)
    from xlagen.tokenization.fast import PreTrainedTokenizerFast


TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"
VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
_SENTENCEPIECE_FILES = ("spiece.model", "tokenizer.model", "sentencepiece.bpe.model")
_T5_SPIECE_FILE = "spiece.model"
# Tokenizer classes / model types whose spiece.model xlagen converts (T5's pipeline); other models that
# ship a spiece.model (ALBERT, XLNet...) post-process differently and still need a tokenizer.json.
_T5_TOKENIZER_CLASSES = frozenset({"T5Tokenizer", "MT5Tokenizer", "UMT5Tokenizer"})
_T5_MODEL_TYPES = frozenset({"t5", "mt5", "umt5", "longt5", "switch_transformers"})

# Same sentinels as Transformers: "no limit" for model_max_length, and the threshold above which a
# model_max_length is considered unset (so truncation/max_length padding silently turn off).
VERY_LARGE_INTEGER = int(1e30)
LARGE_INTEGER = int(1e20)

SPECIAL_TOKENS_ATTRIBUTES = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
_GPT2_DEFAULT_TOKEN = "<|endoftext|>"
_PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
_TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")
_SIDES = ("left", "right")
_RETURN_TENSORS = ("tf", "np")
# from_pretrained options that only concern downloading; xlagen never downloads, so they are accepted
# for compatibility and ignored.
_IGNORED_LOAD_KWARGS = frozenset(
    {
        "use_fast",
        "revision",
        "cache_dir",
        "force_download",
        "local_files_only",
        "token",
        "use_auth_token",
        "proxies",
        "trust_remote_code",
        "resume_download",
        "_from_auto",
        "_commit_hash",
    }
)
_ADDED_TOKEN_FIELDS = ("content", "single_word", "lstrip", "rstrip", "normalized", "special")

TokenLike = str | AddedToken


# --------------------------------------------------------------------------------------------------
# helpers: argument validation, added-token (de)serialisation, file reading
# --------------------------------------------------------------------------------------------------


def _check_return_tensors(return_tensors: Any) -> str | None:
    if return_tensors is None:
        return None
    value = getattr(return_tensors, "value", return_tensors)  # accept enum-like TensorType values
    if value not in _RETURN_TENSORS:
        raise ValueError(
            f"Unsupported return_tensors={return_tensors!r}: xlagen supports 'tf' (tf.int32 tensors), "
            "'np' (NumPy int64 arrays) or None (Python lists)."
        )
    return value


def _check_side(name: str, value: Any) -> str:
    if value not in _SIDES:
        raise ValueError(f"{name} should be selected between 'right' and 'left', got {value!r}.")
    return value


def _check_positive_int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive int or None, got {type(value).__name__} {value!r}.")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int or None, got {value!r}.")
    return int(value)


def _padding_strategy(padding: Any) -> str:
    value = getattr(padding, "value", padding)
    if value is True:
        return "longest"
    if value is False or value is None:
        return "do_not_pad"
    if isinstance(value, str) and value in _PADDING_STRATEGIES:
        return value
    raise ValueError(
        f"Invalid padding={padding!r}: expected True, False, 'longest', 'max_length' or 'do_not_pad'."
    )


def _truncation_strategy(truncation: Any) -> str:
    value = getattr(truncation, "value", truncation)
    if value is True:
        return "longest_first"
    if value is False or value is None:
        return "do_not_truncate"
    if isinstance(value, str) and value in _TRUNCATION_STRATEGIES:
        return value
    raise ValueError(
        f"Invalid truncation={truncation!r}: expected True, False, 'longest_first', 'only_first', "
        "'only_second' or 'do_not_truncate'."
    )


def _to_added_token(value: Any, *, special: bool | None = None) -> TokenLike | None:
    """Turn a config value (str, AddedToken, or a serialized AddedToken dict) into str/AddedToken."""
    if value is None or isinstance(value, (str, AddedToken)):
        return value
    if isinstance(value, Mapping) and "content" in value:
        fields = {k: v for k, v in value.items() if k in _ADDED_TOKEN_FIELDS}
        if special is not None:
            fields["special"] = special
        return AddedToken(**fields)
    raise TypeError(f"Expected a token as str, AddedToken or AddedToken dict, got {value!r}.")


def _serialize_token(token: TokenLike, with_type: bool) -> str | dict[str, Any]:
    if isinstance(token, str):
        return token
    state = dict(token.__getstate__())
    if with_type:
        state["__type"] = "AddedToken"
    return state


def _read_json(path: Path, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise ValueError(f"Could not parse {what} {str(path)!r}: invalid JSON ({err}).") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"Could not read {what} {str(path)!r}: not UTF-8 text ({err}).") from err


def _to_python_ids(token_ids: Any) -> Any:
    """Convert ids given as int, list, NumPy array or TF/torch tensor to Python ints / lists."""
    if hasattr(token_ids, "numpy") and callable(token_ids.numpy) and not isinstance(token_ids, np.ndarray):
        token_ids = token_ids.numpy()
    if isinstance(token_ids, (np.ndarray, np.generic)):
        return token_ids.tolist()
    if isinstance(token_ids, (list, tuple)):
        return [_to_python_ids(t) for t in token_ids]
    if isinstance(token_ids, (int, np.integer)):
        return int(token_ids)
    raise TypeError(
        "token_ids must be an int, a list of ints, a NumPy array or a tensor, got "
        f"{type(token_ids).__name__}."
    )


def _clean_up_tokenization(text: str) -> str:
    """Transformers' ``clean_up_tokenization``: drop spaces before punctuation and contractions."""
    return (
        text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
    )


def _validate_text(text: Any, name: str, is_split_into_words: bool) -> bool:
    """Check ``text`` and return whether it is a batch."""
    if is_split_into_words:
        if isinstance(text, (list, tuple)) and all(isinstance(w, str) for w in text):
            return False
        if isinstance(text, (list, tuple)) and all(
            isinstance(seq, (list, tuple)) and all(isinstance(w, str) for w in seq) for seq in text
        ):
            return True
        raise TypeError(
            f"With is_split_into_words=True, `{name}` must be a list of str (one pre-split sequence) or a "
            f"list of lists of str (a batch), got {_describe(text)}."
        )
    if isinstance(text, str):
        return False
    if isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text):
        return True
    raise TypeError(
        f"`{name}` must be a str (single example) or a list of str (batch), got {_describe(text)}."
    )


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        kinds = sorted({type(v).__name__ for v in value})
        return f"{type(value).__name__} of {', '.join(kinds) or 'nothing'}"
    return type(value).__name__


def _special_token_property(attr: str) -> property:
    """A settable property exposing the named special token ``attr`` as a string."""

    def getter(self: PreTrainedTokenizerFast) -> str | None:
        return self._get_special(attr)

    def setter(self: PreTrainedTokenizerFast, value: TokenLike | None) -> None:
        self._set_special(attr, value)

    return property(
        getter,
        setter,
        doc=f"The {attr.replace('_', ' ')} (None if unset). Setting it does not add it to the vocabulary.",
    )


def _special_id_property(attr: str) -> property:
    """A settable property exposing the id of the named special token ``attr``."""

    def getter(self: PreTrainedTokenizerFast) -> int | None:
        return self._get_special_id(attr)

    def setter(self: PreTrainedTokenizerFast, value: int | None) -> None:
        self._set_special_id(attr, value)

    return property(getter, setter, doc=f"Id of the {attr.replace('_', ' ')} (None if unset).")
