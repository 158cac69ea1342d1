"""Building a ``tokenizers.Tokenizer`` from checkpoint files (``tokenizer.json``, GPT-2 ``vocab.json`` + ``merges.txt``, SentencePiece models of T5, Llama, mBART, NLLB and Marian) and reading ``tokenizer_config.json`` into init arguments.

:func:`tokenizer_family` decides which pipeline a directory needs (from ``tokenizer_class`` in
``tokenizer_config.json`` or ``model_type`` in ``config.json``); :func:`build_sentencepiece_backend`
builds the families that ship only SentencePiece files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import BPE, WordLevel

from xlagen.tokenization.utils import (
    _T5_MODEL_TYPES,
    _T5_SPIECE_FILE,
    _T5_TOKENIZER_CLASSES,
    MERGES_FILE,
    SPECIAL_TOKENS_ATTRIBUTES,
    TOKENIZER_FILE,
    VOCAB_FILE,
    TokenLike,
    _read_json,
    _to_added_token,
)

logger = logging.getLogger(__name__)


def _load_tokenizer_json(path: Path) -> Tokenizer:
    """Load a ``tokenizers`` serialization, turning any failure into a ValueError naming the file."""
    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # the Rust side raises a bare Exception; say what is wrong with the file
        data = _read_json(path, "tokenizer file")  # raises a precise error for invalid JSON
        if not isinstance(data, dict) or "model" not in data:
            raise ValueError(
                f"{str(path)!r} is not a tokenizers serialization: it has no 'model' entry."
            ) from err
        raise ValueError(f"Could not build a tokenizer from {str(path)!r}: {err}") from err


def _build_gpt2_bpe(directory: Path, add_prefix_space: bool) -> Tokenizer:
    """GPT-2 byte-level BPE from ``vocab.json`` + ``merges.txt`` (Transformers' GPT2Tokenizer pipeline)."""
    vocab_path, merges_path = directory / VOCAB_FILE, directory / MERGES_FILE
    vocab = _read_json(vocab_path, "vocabulary")
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise ValueError(f"{str(vocab_path)!r} must map token strings to integer ids.")
    try:
        _, merges = BPE.read_file(str(vocab_path), str(merges_path))
        model = BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
        )
    except Exception as err:
        raise ValueError(
            f"Could not build a BPE model from {str(vocab_path)!r} and {str(merges_path)!r}: {err}"
        ) from err
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _build_t5_sentencepiece(
    directory: Path, spiece_model: Path, config: dict[str, Any], tokenizer_class: str | None
) -> Tokenizer:
    """T5 fast tokenizer from ``spiece.model`` (Transformers' T5 conversion); fills ``config`` defaults."""
    model_type = None
    if tokenizer_class is None and (directory / "config.json").is_file():
        model_config = _read_json(directory / "config.json", "model config")
        model_type = model_config.get("model_type") if isinstance(model_config, dict) else None
    if (
        tokenizer_class is not None and tokenizer_class.removesuffix("Fast") not in _T5_TOKENIZER_CLASSES
    ) or (model_type is not None and model_type not in _T5_MODEL_TYPES):
        raise OSError(
            f"{str(directory)!r} only has a SentencePiece model ({_T5_SPIECE_FILE}) for "
            f"{tokenizer_class or model_type}; xlagen converts T5 SentencePiece models only and needs a "
            f"{TOKENIZER_FILE} for others. Create it once with Transformers: "
            f"AutoTokenizer.from_pretrained({str(directory)!r}).save_pretrained({str(directory)!r})."
        )
    from xlagen.tokenization.sentencepiece import convert_t5_sentencepiece, t5_sentinel_tokens

    # Transformers' T5Tokenizer defaults.
    for key, default in (("eos_token", "</s>"), ("unk_token", "<unk>"), ("pad_token", "<pad>")):
        config.setdefault(key, default)
    extra_ids = config.get("extra_ids")
    extra_ids = 100 if extra_ids is None else int(extra_ids)
    backend = convert_t5_sentencepiece(
        spiece_model,
        extra_ids=extra_ids,
        eos_token="</s>",
        legacy=config.get("legacy") is not False,
    )
    # The sentinels are T5's extra special tokens unless the config lists its own (which then include them).
    extras = list(config.get("extra_special_tokens") or [])
    if not any("<extra_id_" in str(token) for token in extras):
        config["extra_special_tokens"] = extras + t5_sentinel_tokens(extra_ids)
    return backend


# tokenizer_class (without "Fast") -> family, and model_type -> family when there is no tokenizer_class.
_FAMILY_BY_CLASS = {
    "MarianTokenizer": "marian",
    "M2M100Tokenizer": "m2m100",
    "MBartTokenizer": "mbart",
    "MBart50Tokenizer": "mbart50",
    "NllbTokenizer": "nllb",
    "LlamaTokenizer": "llama",
    "PegasusTokenizer": "pegasus",
    "RobertaTokenizer": "roberta",
    "BartTokenizer": "roberta",
    "BlenderbotTokenizer": "blenderbot",
    "BlenderbotSmallTokenizer": "blenderbot_small",
    **dict.fromkeys(_T5_TOKENIZER_CLASSES, "t5"),
}
_FAMILY_BY_MODEL_TYPE = {
    "marian": "marian",
    "m2m_100": "m2m100",
    "mbart": "mbart",
    "llama": "llama",
    "mistral": "llama",
    "pegasus": "pegasus",
    "roberta": "roberta",
    "bart": "roberta",
    "blenderbot": "blenderbot",
    "blenderbot-small": "blenderbot_small",
    **dict.fromkeys(_T5_MODEL_TYPES, "t5"),
}
# The SentencePiece file each family ships instead of a tokenizer.json.
SENTENCEPIECE_FILES = {
    "marian": ("source.spm", "target.spm"),
    "m2m100": ("sentencepiece.bpe.model",),
    "mbart": ("sentencepiece.bpe.model",),
    "mbart50": ("sentencepiece.bpe.model",),
    "nllb": ("sentencepiece.bpe.model",),
    "llama": ("tokenizer.model",),
    "t5": (_T5_SPIECE_FILE,),
    "pegasus": (_T5_SPIECE_FILE,),
}
# Class-level defaults of the Transformers tokenizer of each family (before tokenizer_config.json).
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "marian": {"unk_token": "<unk>", "eos_token": "</s>", "pad_token": "<pad>", "model_max_length": 512},
    "m2m100": {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
    },
    "mbart": {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
    },
    "mbart50": {
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
    },
    "llama": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "padding_side": "left"},
    "pegasus": {
        "pad_token": "<pad>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "mask_token": "<mask_2>",
        "mask_token_sent": "<mask_1>",
        "offset": 103,
    },
}
FAMILY_DEFAULTS["blenderbot_small"] = {
    "bos_token": "__start__",
    "eos_token": "__end__",
    "unk_token": "__unk__",
    "pad_token": "__null__",
}
FAMILY_DEFAULTS["nllb"] = dict(FAMILY_DEFAULTS["mbart"])
FAMILY_DEFAULTS["roberta"] = dict(FAMILY_DEFAULTS["mbart"])
FAMILY_DEFAULTS["blenderbot"] = dict(FAMILY_DEFAULTS["mbart"])


def build_roberta_bpe(directory: Path, config: dict[str, Any]) -> Tokenizer:
    """BART / RoBERTa from ``vocab.json`` + ``merges.txt``: GPT-2's byte-level BPE framed as ``<s> $A </s>``
    (``<s> $A </s></s> $B </s>`` for pairs) by ``RobertaProcessing``, as Transformers 5's ``RobertaTokenizer``."""
    for key, value in FAMILY_DEFAULTS["roberta"].items():
        config.setdefault(key, value)
    add_prefix_space = bool(config.get("add_prefix_space") or False)
    backend = _build_gpt2_bpe(directory, add_prefix_space)
    sep, cls = str(config["sep_token"]), str(config["cls_token"])
    ids = {token: backend.token_to_id(token) for token in (sep, cls)}
    if None in ids.values():
        missing = [token for token, index in ids.items() if index is None]
        raise ValueError(
            f"{str(directory / VOCAB_FILE)!r} lacks the BART/RoBERTa special token(s) {missing}."
        )
    backend.post_processor = processors.RobertaProcessing(
        (sep, ids[sep]),
        (cls, ids[cls]),
        trim_offsets=bool(config.get("trim_offsets", True)),
        add_prefix_space=add_prefix_space,
    )
    return backend


def build_blenderbot_bpe(directory: Path, config: dict[str, Any]) -> Tokenizer:
    """Blenderbot from ``vocab.json`` + ``merges.txt``: byte-level BPE (``add_prefix_space`` by default) with
    ``</s>`` appended, as Transformers 4's ``BlenderbotTokenizer`` (Transformers 5 appends nothing)."""
    for key, value in FAMILY_DEFAULTS["roberta"].items():
        config.setdefault(key, value)
    if isinstance(config["mask_token"], str):  # Blenderbot's mask token strips the space before it
        config["mask_token"] = AddedToken(config["mask_token"], lstrip=True, rstrip=False, normalized=False)
    config["add_prefix_space"] = (
        True if config.get("add_prefix_space") is None else bool(config["add_prefix_space"])
    )
    backend = _build_gpt2_bpe(directory, config["add_prefix_space"])
    eos = str(config["eos_token"])
    eos_id = backend.token_to_id(eos)
    if eos_id is None:
        raise ValueError(f"{str(directory / VOCAB_FILE)!r} lacks Blenderbot's end-of-sequence token {eos!r}.")
    backend.post_processor = processors.TemplateProcessing(
        single=["$A", eos], pair=["$A", "$B", eos], special_tokens=[(eos, eos_id)]
    )
    return backend


def build_blenderbot_small_backend(directory: Path, config: dict[str, Any]) -> Tokenizer:
    """BlenderbotSmall (Blenderbot-90M) from ``vocab.json`` + ``merges.txt``: the id lookup of its
    ``@@``-joined BPE pieces, which :class:`~xlagen.tokenization.seq2seq.BlenderbotSmallTokenizer` computes
    in Python as Transformers' (slow) tokenizer does. Fills ``config`` with the class defaults and the
    two file paths; ValueError names a missing file."""
    missing = [name for name in (VOCAB_FILE, MERGES_FILE) if not (directory / name).is_file()]
    if missing:
        raise ValueError(
            f"{str(directory)!r} is a BlenderbotSmall tokenizer and lacks {', '.join(missing)}; it needs "
            f"{VOCAB_FILE} + {MERGES_FILE}."
        )
    for key, value in FAMILY_DEFAULTS["blenderbot_small"].items():
        config.setdefault(key, value)
    config["vocab_file"] = str(directory / VOCAB_FILE)
    config["merges_file"] = str(directory / MERGES_FILE)
    unk = str(config["unk_token"])
    vocab = _marian_vocab(directory / VOCAB_FILE)
    if unk not in vocab:
        raise ValueError(
            f"The unknown token {unk!r} is not in the BlenderbotSmall vocabulary {config['vocab_file']!r}."
        )
    return Tokenizer(WordLevel(vocab, unk_token=unk))


def _model_type(directory: Path) -> str | None:
    """``model_type`` from the directory's ``config.json`` (None without one)."""
    if not (directory / "config.json").is_file():
        return None
    model_config = _read_json(directory / "config.json", "model config")
    return model_config.get("model_type") if isinstance(model_config, dict) else None


def tokenizer_family(directory: Path, tokenizer_class: str | None) -> str | None:
    """The tokenizer family of a checkpoint ("marian", "mbart", "nllb", "llama", "t5", "pegasus"...), or None.

    ``tokenizer_class`` decides when set; otherwise ``model_type`` in ``config.json`` (NLLB checkpoints
    say ``m2m_100`` there and name ``NllbTokenizer`` in their tokenizer config).
    """
    if tokenizer_class:
        return _FAMILY_BY_CLASS.get(tokenizer_class.removesuffix("Fast"))
    return _FAMILY_BY_MODEL_TYPE.get(_model_type(directory) or "")


def build_sentencepiece_backend(directory: Path, family: str, config: dict[str, Any]) -> Tokenizer:
    """The backend of a ``family`` checkpoint that ships only SentencePiece files (Transformers 5's
    conversion); fills ``config`` with the family's defaults. ValueError names a missing file."""
    missing = [name for name in SENTENCEPIECE_FILES[family] if not (directory / name).is_file()]
    needs_vocab = family in ("marian", "m2m100")
    if needs_vocab and not (directory / VOCAB_FILE).is_file():
        missing.append(VOCAB_FILE)
    if missing:
        raise ValueError(
            f"{str(directory)!r} is a {family} tokenizer without {TOKENIZER_FILE} and lacks "
            f"{', '.join(missing)}; it needs {' + '.join(SENTENCEPIECE_FILES[family])}"
            f"{' + ' + VOCAB_FILE if needs_vocab else ''}."
        )
    for key, value in FAMILY_DEFAULTS.get(family, {}).items():
        config.setdefault(key, value)
    from xlagen.tokenization import sentencepiece as spm

    model = directory / SENTENCEPIECE_FILES[family][0]
    if family == "t5":
        return _build_t5_sentencepiece(directory, model, config, "T5Tokenizer")
    if family == "pegasus":
        return spm.convert_pegasus_sentencepiece(
            model,
            pad_token=str(config["pad_token"]),
            eos_token=str(config["eos_token"]),
            mask_token=None if config.get("mask_token") is None else str(config["mask_token"]),
            mask_token_sent=None if config.get("mask_token_sent") is None else str(config["mask_token_sent"]),
            offset=int(config.get("offset") or 103),
        )
    if family == "llama":
        return spm.convert_llama_sentencepiece(
            model, legacy=bool(config.get("legacy", False)), add_prefix_space=config.get("add_prefix_space")
        )
    if family in ("mbart", "mbart50", "nllb"):
        first = "cls_token" if family == "mbart50" else "bos_token"
        special = tuple(str(config[key]) for key in (first, "pad_token", "eos_token", "unk_token"))
    if family in ("mbart", "mbart50"):
        return spm.convert_mbart_sentencepiece(
            model,
            language_codes=spm.MBART_LANGUAGE_CODES if family == "mbart" else spm.MBART50_LANGUAGE_CODES,
            charsmap_normalizer=family == "mbart50",
            special_tokens=special,
            mask_token=str(config["mask_token"]),
        )
    if family == "nllb":
        return spm.convert_nllb_sentencepiece(model, special_tokens=special)
    if family == "m2m100":
        # M2M100's ids: vocab.json, then the language codes (the pieces come from sentencepiece at runtime).
        config["spm_file"] = str(model)
        config["vocab_file"] = str(directory / VOCAB_FILE)
        codes = spm.m2m100_language_tokens(config.get("language_codes") or "m2m100")
        size = len(_marian_vocab(directory / VOCAB_FILE))
        lang_ids = {token: size + index for index, token in enumerate(codes)}
        return build_marian_backend(directory / VOCAB_FILE, str(config["unk_token"]), lang_ids)
    config["source_spm"] = str(directory / "source.spm")
    config["target_spm"] = str(directory / "target.spm")
    config["source_vocab_file"] = str(directory / VOCAB_FILE)
    config.pop("target_vocab_file", None)
    if (directory / "target_vocab.json").is_file():
        config["target_vocab_file"] = str(directory / "target_vocab.json")
    return build_marian_backend(directory / VOCAB_FILE, str(config["unk_token"]))


def build_marian_backend(
    vocab_path: Path, unk_token: str, overrides: Mapping[str, int] | None = None
) -> Tokenizer:
    """Marian's id lookup: a word-level model over ``vocab.json``, fed with SentencePiece pieces.

    The pieces come from the ``sentencepiece`` library (as in Transformers' ``MarianTokenizer``), so the
    backend only maps each piece to its id (unknown pieces to ``unk_token``) and adds special tokens.
    ``overrides`` fixes the ids of some tokens (the source side's added tokens in a target vocabulary).
    """
    vocab = _marian_vocab(vocab_path)
    vocab.update(overrides or {})
    if unk_token not in vocab:
        raise ValueError(
            f"The unknown token {unk_token!r} is not in the Marian vocabulary {str(vocab_path)!r}."
        )
    return Tokenizer(WordLevel(vocab, unk_token=unk_token))


def _marian_vocab(vocab_path: Path) -> dict[str, int]:
    """A Marian ``vocab.json`` / ``target_vocab.json`` (or BlenderbotSmall's ``vocab.json``): piece -> id."""
    vocab = _read_json(vocab_path, "vocabulary")
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise ValueError(f"{str(vocab_path)!r} must map token strings to integer ids.")
    return vocab


_INIT_KEYS = frozenset(
    {
        *SPECIAL_TOKENS_ATTRIBUTES,
        "extra_special_tokens",
        "additional_special_tokens",
        "model_max_length",
        "padding_side",
        "truncation_side",
        "clean_up_tokenization_spaces",
        "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output",
        "split_special_tokens",
        "add_bos_token",
        "add_eos_token",
        "add_prefix_space",
        "model_input_names",
    }
)
# Config entries Transformers writes that have no effect on a tokenizers-backed tokenizer.
_SILENT_CONFIG_KEYS = frozenset(
    {
        "added_tokens_decoder",
        "backend",
        "errors",
        "trim_offsets",
        "extra_ids",
        "legacy",
        "name_or_path",
        "special_tokens_map_file",
        "tokenizer_file",
        "vocab_file",
        "merges_file",
        "processor_class",
        "auto_map",
        "chat_template",
        "do_lower_case",
        "sp_model_kwargs",
        "spaces_between_special_tokens",
        "use_default_system_prompt",
        "is_local",
        "local_files_only",
        "max_len",
        "fast_tokenizer_files",
        "_commit_hash",
    }
)


def _split_init_kwargs(
    config: dict[str, Any], user_keys: Iterable[str] = (), extra_keys: Iterable[str] = ()
) -> dict[str, Any]:
    """Keep the config entries xlagen understands; other ``*_token`` entries become extra special tokens.

    ``extra_keys`` are the options of a tokenizer subclass (``src_lang``...). Options xlagen does not know
    are dropped (with a warning when the caller passed them explicitly, as they are most likely typos or
    features that are not supported).
    """
    user_keys = set(user_keys)
    known = _INIT_KEYS | frozenset(extra_keys)
    init = {key: config[key] for key in known if key in config}
    if "model_max_length" not in init and config.get("max_len") is not None:
        init["model_max_length"] = config["max_len"]
    if init.get("model_max_length") is not None:
        init["model_max_length"] = int(init["model_max_length"])
    model_specific: list[TokenLike] = []
    for key, value in config.items():
        if key in known or key in _SILENT_CONFIG_KEYS:
            continue
        if key.endswith("_token") and isinstance(value, (str, AddedToken, Mapping)):
            # model-specific named special tokens (e.g. "image_token"): kept as extra special tokens
            model_specific.append(_to_added_token(value))
        elif key in user_keys:
            logger.warning("xlagen's tokenizer does not support the option %s=%r; it is ignored.", key, value)
        else:
            logger.debug("xlagen ignores tokenizer config entry %s=%r", key, value)
    if model_specific:
        extras: list[TokenLike] = []
        for token in [*model_specific, *(init.get("extra_special_tokens") or [])]:
            if str(token) not in {str(t) for t in extras}:
                extras.append(token)
        init["extra_special_tokens"] = extras
    return init
