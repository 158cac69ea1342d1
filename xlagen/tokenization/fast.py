"""``PreTrainedTokenizerFast``: Transformers' fast-tokenizer API (call, pad, truncate, decode, special tokens, save, chat templates) over the Rust ``tokenizers`` library."""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from tokenizers import AddedToken, Tokenizer, pre_tokenizers, processors

from xlagen.chat_template import load_chat_template, render_chat_template
from xlagen.loading.hub import resolve_pretrained_dir
from xlagen.tokenization.encoding import BatchEncoding
from xlagen.tokenization.loaders import (
    FAMILY_DEFAULTS,
    SENTENCEPIECE_FILES,
    _build_gpt2_bpe,
    _build_t5_sentencepiece,
    _load_tokenizer_json,
    _split_init_kwargs,
    build_blenderbot_bpe,
    build_blenderbot_small_backend,
    build_roberta_bpe,
    build_sentencepiece_backend,
    tokenizer_family,
)
from xlagen.tokenization.utils import (
    _GPT2_DEFAULT_TOKEN,
    _IGNORED_LOAD_KWARGS,
    _SENTENCEPIECE_FILES,
    _T5_SPIECE_FILE,
    ADDED_TOKENS_FILE,
    LARGE_INTEGER,
    MERGES_FILE,
    SPECIAL_TOKENS_ATTRIBUTES,
    SPECIAL_TOKENS_MAP_FILE,
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
    VERY_LARGE_INTEGER,
    VOCAB_FILE,
    TokenLike,
    _check_positive_int,
    _check_return_tensors,
    _check_side,
    _clean_up_tokenization,
    _padding_strategy,
    _read_json,
    _serialize_token,
    _special_id_property,
    _special_token_property,
    _to_added_token,
    _to_python_ids,
    _truncation_strategy,
    _validate_text,
)

logger = logging.getLogger(__name__)


class _MissingTextError(TypeError, ValueError):
    """No ``text`` nor ``text_target``: a ValueError as in Transformers, and a TypeError for a missing argument."""


# --------------------------------------------------------------------------------------------------
# PreTrainedTokenizerFast
# --------------------------------------------------------------------------------------------------


class PreTrainedTokenizerFast:
    """A ``tokenizers``-backed tokenizer with the Hugging Face Transformers fast-tokenizer API.

    Build it with :meth:`from_pretrained` (or :class:`AutoTokenizer`), or directly from a
    ``tokenizers.Tokenizer`` via ``PreTrainedTokenizerFast(tokenizer_object=..., eos_token=...)``.
    Special tokens that are not yet in the vocabulary are added as new special tokens after the
    current last id, like Transformers does (``len(tok)`` grows, ``tok.vocab_size`` does not).
    """

    model_input_names: ClassVar[list[str]] = ["input_ids", "attention_mask"]
    # Config options of a subclass that from_pretrained passes on to _setup (src_lang...).
    _extra_init_keys: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        tokenizer_object: Tokenizer | None = None,
        *,
        tokenizer_file: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        """Wrap a copy of ``tokenizer_object`` (or load ``tokenizer_file``); ``kwargs`` are the options of
        :meth:`_setup` (special tokens, ``model_max_length``, ``padding_side``...)."""
        if tokenizer_object is not None and tokenizer_file is not None:
            raise ValueError("Pass either tokenizer_object or tokenizer_file, not both.")
        if tokenizer_object is not None:
            if not isinstance(tokenizer_object, Tokenizer):
                raise TypeError(
                    f"tokenizer_object must be a tokenizers.Tokenizer, got {type(tokenizer_object).__name__}."
                )
            backend = Tokenizer.from_str(tokenizer_object.to_str())  # own copy, like Transformers' deepcopy
        elif tokenizer_file is not None:
            backend = _load_tokenizer_json(Path(tokenizer_file))
        else:
            raise ValueError("PreTrainedTokenizerFast needs a tokenizer_object or a tokenizer_file.")
        self._setup(backend, **kwargs)

    @classmethod
    def _from_backend(cls, backend: Tokenizer, **kwargs: Any) -> PreTrainedTokenizerFast:
        """Build around ``backend`` itself (no copy): used by :meth:`from_pretrained`."""
        instance = cls.__new__(cls)
        instance._setup(backend, **kwargs)
        return instance

    def _setup(
        self,
        backend: Tokenizer,
        *,
        bos_token: TokenLike | None = None,
        eos_token: TokenLike | None = None,
        unk_token: TokenLike | None = None,
        sep_token: TokenLike | None = None,
        pad_token: TokenLike | None = None,
        cls_token: TokenLike | None = None,
        mask_token: TokenLike | None = None,
        extra_special_tokens: Sequence[TokenLike] | None = None,
        additional_special_tokens: Sequence[TokenLike] | None = None,
        added_tokens_decoder: Mapping[int, TokenLike] | None = None,
        model_max_length: int | None = None,
        padding_side: str | None = None,
        truncation_side: str | None = None,
        clean_up_tokenization_spaces: bool = False,
        clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output: bool = False,
        split_special_tokens: bool = False,
        add_bos_token: bool | None = None,
        add_eos_token: bool | None = None,
        add_prefix_space: bool | None = None,
        model_input_names: Sequence[str] | None = None,
        name_or_path: str = "",
    ) -> None:
        self._tokenizer: Tokenizer = backend
        self._lock = threading.RLock()
        self.name_or_path = str(name_or_path)
        self.model_input_names = list(model_input_names or type(self).model_input_names)

        # Settings baked into tokenizer.json act as defaults, as in Transformers; calls then control
        # padding/truncation explicitly.
        baked_truncation, baked_padding = backend.truncation, backend.padding
        if baked_padding is not None and pad_token is None:
            pad_token = baked_padding.get("pad_token")
        if padding_side is None:
            padding_side = baked_padding["direction"] if baked_padding else "right"
        if truncation_side is None:
            truncation_side = baked_truncation["direction"] if baked_truncation else "right"
        backend.no_padding()
        backend.no_truncation()

        self.padding_side = padding_side
        self.truncation_side = truncation_side
        if model_max_length is not None:
            _check_positive_int("model_max_length", model_max_length)
        self.model_max_length: int = (
            int(model_max_length) if model_max_length is not None else VERY_LARGE_INTEGER
        )
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output = bool(
            clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output
        )
        self.split_special_tokens = bool(split_special_tokens)
        self.add_prefix_space = add_prefix_space
        self._warned_too_long = False

        self._special_tokens_map: dict[str, TokenLike | None] = dict.fromkeys(SPECIAL_TOKENS_ATTRIBUTES)
        for attr, value in zip(
            SPECIAL_TOKENS_ATTRIBUTES,
            (bos_token, eos_token, unk_token, sep_token, pad_token, cls_token, mask_token),
            strict=True,
        ):
            self._special_tokens_map[attr] = _to_added_token(value)
        extras = extra_special_tokens if extra_special_tokens is not None else additional_special_tokens
        if extras is not None and not isinstance(extras, (list, tuple)):
            raise TypeError(f"extra_special_tokens must be a list of tokens, got {type(extras).__name__}.")
        self._extra_special_tokens: list[TokenLike] = [_to_added_token(t) for t in extras or []]

        if add_prefix_space is not None:
            self._set_add_prefix_space(add_prefix_space)

        self._register_tokens(added_tokens_decoder or {})

        self._add_bos_token = bool(add_bos_token)
        self._add_eos_token = bool(add_eos_token)
        if add_bos_token is not None or add_eos_token is not None or backend.post_processor is None:
            self.update_post_processor()
        self._tokenizer.encode_special_tokens = self.split_special_tokens

    # ---- construction helpers ------------------------------------------------------------------

    def _register_tokens(self, added_tokens_decoder: Mapping[int, TokenLike]) -> None:
        """Add config-declared added tokens, then any special token missing from the added vocabulary."""
        ordered = [
            _to_added_token(t) for _, t in sorted(added_tokens_decoder.items(), key=lambda kv: int(kv[0]))
        ]
        if ordered:
            self._tokenizer.add_tokens(ordered)
        known = set(self.added_tokens_encoder)
        named = {str(t) for t in self._special_tokens_map.values() if t is not None}
        to_add: list[AddedToken] = []
        for token in [*self._special_tokens_map.values(), *self._extra_special_tokens]:
            if token is None or str(token) in known:
                continue
            if isinstance(token, str):
                token = AddedToken(token, special=True)
            elif not token.special and str(token) in named:
                token.special = True
            to_add.append(token)
            known.add(str(token))
        if to_add:
            self._tokenizer.add_tokens(to_add)

    def _set_add_prefix_space(self, add_prefix_space: bool) -> None:
        pre = self._tokenizer.pre_tokenizer
        if isinstance(pre, pre_tokenizers.ByteLevel):
            pre.add_prefix_space = bool(add_prefix_space)

    def update_post_processor(self) -> None:
        """Rebuild the post-processor from ``add_bos_token``/``add_eos_token`` (as Transformers does)."""
        bos, eos = self.bos_token, self.eos_token
        add_bos = self._add_bos_token and bos is not None
        add_eos = self._add_eos_token and eos is not None
        single = f"{(bos + ':0 ') if add_bos else ''}$A:0{(' ' + eos + ':0') if add_eos else ''}"
        pair = f"{single}{(' ' + bos + ':1') if add_bos else ''} $B:1{(' ' + eos + ':1') if add_eos else ''}"
        special = []
        if add_bos:
            special.append((bos, self.bos_token_id))
        if add_eos:
            special.append((eos, self.eos_token_id))
        self._tokenizer.post_processor = processors.TemplateProcessing(
            single=single, pair=pair, special_tokens=special
        )

    # ---- loading -------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> PreTrainedTokenizerFast:
        """Load a tokenizer from a local directory or a model already in the local Hugging Face cache.

        Reads ``tokenizer.json`` if present, otherwise GPT-2 style ``vocab.json`` + ``merges.txt`` or a T5
        SentencePiece ``spiece.model`` (converted like Transformers' T5 tokenizer), plus
        ``tokenizer_config.json`` / ``special_tokens_map.json`` / ``added_tokens.json``. Keyword
        arguments (``padding_side``, ``pad_token``, ``model_max_length``, ...) override the config.
        Download-related options (``revision``, ``cache_dir``, ``use_fast``...) are accepted and ignored.
        """
        subfolder = kwargs.pop("subfolder", None)
        for key in _IGNORED_LOAD_KWARGS & kwargs.keys():
            kwargs.pop(key)
        single_file = Path(pretrained_model_name_or_path).expanduser()
        if single_file.is_file() and single_file.suffix == ".json":
            # A bare tokenizer.json path, as Transformers accepts; all settings come from kwargs.
            init_kwargs = _split_init_kwargs(dict(kwargs), kwargs.keys())
            init_kwargs["name_or_path"] = str(pretrained_model_name_or_path)
            return cls._from_backend(_load_tokenizer_json(single_file), **init_kwargs)
        directory = resolve_pretrained_dir(pretrained_model_name_or_path)
        if subfolder:
            directory = directory / subfolder
            if not directory.is_dir():
                raise OSError(f"subfolder {subfolder!r} does not exist in {str(directory.parent)!r}.")

        tokenizer_json = directory / TOKENIZER_FILE
        has_tokenizer_json = tokenizer_json.is_file()
        has_bpe_files = (directory / VOCAB_FILE).is_file() and (directory / MERGES_FILE).is_file()
        spiece_model = directory / _T5_SPIECE_FILE
        has_spiece = spiece_model.is_file()

        config_path = directory / TOKENIZER_CONFIG_FILE
        config: dict[str, Any] = {}
        if config_path.is_file():
            config = _read_json(config_path, "tokenizer config")
            if not isinstance(config, dict):
                raise ValueError(f"{str(config_path)!r} must contain a JSON object.")
        tokenizer_class = config.pop("tokenizer_class", None)
        config.pop("init_inputs", None)
        family = tokenizer_family(directory, tokenizer_class)
        spm_family = family if family in SENTENCEPIECE_FILES and family != "t5" else None
        if spm_family and has_bpe_files and not (directory / SENTENCEPIECE_FILES[spm_family][0]).is_file():
            spm_family = None  # vocab.json + merges.txt instead of the SentencePiece model
        if (
            not has_tokenizer_json
            and not has_bpe_files
            and not has_spiece
            and spm_family is None
            and family != "blenderbot_small"  # its builder names the missing file
        ):
            spm = [name for name in _SENTENCEPIECE_FILES if (directory / name).is_file()]
            if spm:
                raise OSError(
                    f"{str(directory)!r} only has a SentencePiece model ({spm[0]}); xlagen needs a "
                    f"{TOKENIZER_FILE} for {tokenizer_class or 'this model'}. Create it once with Transformers: "
                    f"AutoTokenizer.from_pretrained({str(directory)!r}).save_pretrained({str(directory)!r})."
                )
            raise OSError(
                f"Can't load a tokenizer from {str(directory)!r}: it contains neither {TOKENIZER_FILE} nor "
                f"{VOCAB_FILE} + {MERGES_FILE}."
            )
        if cls is PreTrainedTokenizerFast and family is not None:
            from xlagen.tokenization.seq2seq import TOKENIZER_CLASSES

            cls = TOKENIZER_CLASSES.get(family, cls)
        if family in ("marian", "m2m100", "blenderbot_small"):  # slow in Transformers: never a tokenizer.json
            has_tokenizer_json = False
        if has_tokenizer_json:
            # Like Transformers: with a tokenizer.json its post-processor is authoritative; only
            # explicit keyword arguments may rebuild it.
            config.pop("add_bos_token", None)
            config.pop("add_eos_token", None)
        config.update(kwargs)
        if "additional_special_tokens" in config and not config.get("extra_special_tokens"):
            config["extra_special_tokens"] = config.pop("additional_special_tokens")
        config.pop("additional_special_tokens", None)
        if isinstance(config.get("extra_special_tokens"), Mapping):  # named model-specific tokens
            config["extra_special_tokens"] = list(config["extra_special_tokens"].values())

        added_tokens_decoder: dict[int, TokenLike] = {}
        added_tokens_map: dict[str, TokenLike] = {}
        if "added_tokens_decoder" in config:
            for idx, token in (config.pop("added_tokens_decoder") or {}).items():
                token = _to_added_token(token)
                added_tokens_decoder[int(idx)] = token
                added_tokens_map[str(token)] = token
        else:
            special_map_path = directory / SPECIAL_TOKENS_MAP_FILE
            if special_map_path.is_file():
                special_map = _read_json(special_map_path, "special tokens map")
                for key, value in (special_map or {}).items():
                    if kwargs.get(key):
                        continue
                    if key in ("additional_special_tokens", "extra_special_tokens"):
                        if isinstance(value, list):
                            existing = list(config.get("extra_special_tokens") or [])
                            for tok in value:
                                tok = _to_added_token(tok, special=True)
                                if str(tok) not in {str(t) for t in existing}:
                                    existing.append(tok)
                            config["extra_special_tokens"] = existing
                    elif key in SPECIAL_TOKENS_ATTRIBUTES:
                        config[key] = _to_added_token(value, special=True)
            added_path = directory / ADDED_TOKENS_FILE
            if added_path.is_file():
                specials = {str(config[k]) for k in SPECIAL_TOKENS_ATTRIBUTES if config.get(k)}
                specials.update(str(t) for t in config.get("extra_special_tokens") or [])
                for content, idx in _read_json(added_path, "added tokens file").items():
                    is_special = content in specials
                    added_tokens_decoder[int(idx)] = AddedToken(
                        content, normalized=not is_special, special=is_special
                    )
                    added_tokens_map[content] = added_tokens_decoder[int(idx)]
        for key in SPECIAL_TOKENS_ATTRIBUTES:
            value = config.get(key)
            if isinstance(value, Mapping):
                value = _to_added_token(value)
            if value is not None and added_tokens_map:
                value = added_tokens_map.get(str(value), value)
            if key in config:
                config[key] = value

        if has_tokenizer_json:
            for key, value in FAMILY_DEFAULTS.get(family or "", {}).items():
                config.setdefault(key, value)  # the Transformers class's defaults
            backend = _load_tokenizer_json(tokenizer_json)
            if family == "llama":  # Transformers keeps only the vocabulary of a LlamaTokenizer's file
                from xlagen.tokenization.sentencepiece import llama_from_tokenizer_json

                backend = llama_from_tokenizer_json(
                    tokenizer_json,
                    legacy=bool(config.get("legacy", False)),
                    add_prefix_space=config.get("add_prefix_space"),
                )
            if "add_prefix_space" not in kwargs:
                # Transformers only re-applies the config's add_prefix_space when it rebuilds a GPT-2
                # pipeline (GPT2Tokenizer, default False); other classes keep tokenizer.json's setting.
                if (tokenizer_class or "").removesuffix("Fast") == "GPT2Tokenizer":
                    config["add_prefix_space"] = bool(config.get("add_prefix_space") or False)
                else:
                    config.pop("add_prefix_space", None)
        elif family == "blenderbot_small":
            backend = build_blenderbot_small_backend(directory, config)
        elif spm_family is not None:
            backend = build_sentencepiece_backend(directory, spm_family, config)
        elif not has_bpe_files:
            backend = _build_t5_sentencepiece(directory, spiece_model, config, tokenizer_class)
        elif family == "roberta":
            backend = build_roberta_bpe(directory, config)
        elif family == "blenderbot":
            backend = build_blenderbot_bpe(directory, config)
        else:
            backend = _build_gpt2_bpe(directory, bool(config.get("add_prefix_space") or False))
            # Transformers' GPT2Tokenizer defaults; only the GPT-2 family ships bare vocab/merges files.
            for key in ("bos_token", "eos_token", "unk_token"):
                config.setdefault(key, _GPT2_DEFAULT_TOKEN)
            config.setdefault("add_bos_token", False)
            if tokenizer_class and tokenizer_class.removesuffix("Fast") not in (
                "GPT2Tokenizer",
                "PreTrainedTokenizer",
            ):
                logger.info(
                    "Loading %s (tokenizer_class=%s) from vocab/merges as a GPT-2 byte-level BPE tokenizer.",
                    directory,
                    tokenizer_class,
                )

        chat_template = load_chat_template(directory, config.get("chat_template"))
        init_kwargs = _split_init_kwargs(config, kwargs.keys(), cls._extra_init_keys)
        init_kwargs["added_tokens_decoder"] = added_tokens_decoder
        init_kwargs["name_or_path"] = str(pretrained_model_name_or_path)
        tokenizer = cls._from_backend(backend, **init_kwargs)
        tokenizer.chat_template = chat_template
        return tokenizer

    chat_template: str | None = None

    def apply_chat_template(
        self,
        conversation: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = False,
        tokenize: bool = True,
        chat_template: str | None = None,
        **kwargs: Any,
    ) -> str | list[int]:
        """Render ``conversation`` (``[{"role", "content"}, ...]``) with the checkpoint's Jinja chat
        template, as Transformers does; token ids when ``tokenize`` (no special tokens added: the
        template writes them), else the text. ValueError when the tokenizer has no template."""
        template = chat_template or self.chat_template
        if not template:
            raise ValueError(
                f"tokenizer {self.name_or_path!r} has no chat template (tokenizer_config.json "
                "'chat_template' or chat_template.jinja)"
            )
        specials = {k: self._get_special(k) for k in SPECIAL_TOKENS_ATTRIBUTES}
        text = render_chat_template(template, conversation, add_generation_prompt, {**specials, **kwargs})
        return self.encode(text, add_special_tokens=False) if tokenize else text

    # ---- special tokens ------------------------------------------------------------------------

    def _get_special(self, attr: str) -> str | None:
        value = self._special_tokens_map.get(attr)
        return None if value is None else str(value)

    def _set_special(self, attr: str, value: TokenLike | None) -> None:
        if value is not None and not isinstance(value, (str, AddedToken)):
            raise ValueError(f"Cannot set a non-string value as the {attr}: got {value!r}.")
        self._special_tokens_map[attr] = value

    def _get_special_id(self, attr: str) -> int | None:
        token = self._get_special(attr)
        return None if token is None else self.convert_tokens_to_ids(token)

    def _set_special_id(self, attr: str, value: int | None) -> None:
        self._set_special(attr, None if value is None else self.convert_ids_to_tokens(int(value)))

    bos_token = _special_token_property("bos_token")
    eos_token = _special_token_property("eos_token")
    unk_token = _special_token_property("unk_token")
    sep_token = _special_token_property("sep_token")
    pad_token = _special_token_property("pad_token")
    cls_token = _special_token_property("cls_token")
    mask_token = _special_token_property("mask_token")
    bos_token_id = _special_id_property("bos_token")
    eos_token_id = _special_id_property("eos_token")
    unk_token_id = _special_id_property("unk_token")
    sep_token_id = _special_id_property("sep_token")
    pad_token_id = _special_id_property("pad_token")
    cls_token_id = _special_id_property("cls_token")
    mask_token_id = _special_id_property("mask_token")

    @property
    def pad_token_type_id(self) -> int:
        """Token type id used for padding (always 0, as in Transformers)."""
        return 0

    @property
    def extra_special_tokens(self) -> list[str]:
        """Special tokens beyond the named ones (Transformers 5 name of ``additional_special_tokens``)."""
        return [str(t) for t in self._extra_special_tokens]

    @extra_special_tokens.setter
    def extra_special_tokens(self, value: Sequence[TokenLike] | None) -> None:
        if value is not None and not isinstance(value, (list, tuple)):
            raise ValueError(f"extra_special_tokens must be a list or tuple, got {type(value).__name__}.")
        self._extra_special_tokens = list(value or [])

    additional_special_tokens = extra_special_tokens

    @property
    def extra_special_tokens_ids(self) -> list[int | None]:
        """Ids of :attr:`extra_special_tokens`."""
        return self.convert_tokens_to_ids(self.extra_special_tokens)

    additional_special_tokens_ids = extra_special_tokens_ids

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """Named special tokens that are set, as strings (e.g. ``{"eos_token": "</s>"}``)."""
        return {attr: str(v) for attr, v in self._special_tokens_map.items() if v is not None}

    @property
    def all_special_tokens(self) -> list[str]:
        """All unique special tokens (named, then extra) as strings."""
        seen: list[str] = []
        for token in [*self._special_tokens_map.values(), *self._extra_special_tokens]:
            if token is not None and str(token) not in seen:
                seen.append(str(token))
        return seen

    @property
    def all_special_ids(self) -> list[int | None]:
        """Ids of :attr:`all_special_tokens`."""
        return self.convert_tokens_to_ids(self.all_special_tokens)

    def add_special_tokens(
        self,
        special_tokens_dict: Mapping[str, TokenLike | Sequence[TokenLike]],
        replace_extra_special_tokens: bool = True,
    ) -> int:
        """Set named special tokens (``{"pad_token": "[PAD]"}``...) and add them to the vocabulary.

        Tokens not yet in the vocabulary get new ids after the current last one. Returns how many
        tokens were added (resize the model's embeddings to ``len(tokenizer)`` afterwards).
        """
        if not special_tokens_dict:
            return 0
        special_tokens_dict = dict(special_tokens_dict)
        if "additional_special_tokens" in special_tokens_dict and not special_tokens_dict.get(
            "extra_special_tokens"
        ):
            special_tokens_dict["extra_special_tokens"] = special_tokens_dict.pop("additional_special_tokens")
        special_tokens_dict.pop("additional_special_tokens", None)
        to_add: list[AddedToken] = []
        for key, value in special_tokens_dict.items():
            if key == "extra_special_tokens":
                if not isinstance(value, (list, tuple)) or not all(
                    isinstance(t, (str, AddedToken)) for t in value
                ):
                    raise ValueError(
                        f"Tokens {value!r} for key {key} should all be str or AddedToken instances."
                    )
                new = [
                    AddedToken(t, rstrip=False, lstrip=False, normalized=False, special=True)
                    if isinstance(t, str)
                    else t
                    for t in value
                    if replace_extra_special_tokens or str(t) not in self.extra_special_tokens
                ]
                if replace_extra_special_tokens and new:
                    self._extra_special_tokens = list(new)
                else:
                    self._extra_special_tokens.extend(new)
                to_add.extend(new)
            elif key in SPECIAL_TOKENS_ATTRIBUTES:
                if not isinstance(value, (str, AddedToken)):
                    raise ValueError(
                        f"Token {value!r} for key {key} should be a str or an AddedToken instance."
                    )
                if isinstance(value, str):
                    value = AddedToken(value, rstrip=False, lstrip=False, normalized=False, special=True)
                self._special_tokens_map[key] = value
                to_add.append(value)
            else:
                allowed = ", ".join([*SPECIAL_TOKENS_ATTRIBUTES, "extra_special_tokens"])
                raise ValueError(f"Key {key!r} is not a valid special token. Valid keys are: {allowed}.")
        return self.add_tokens(to_add, special_tokens=True)

    def add_tokens(self, new_tokens: TokenLike | Sequence[TokenLike], special_tokens: bool = False) -> int:
        """Add tokens that are never split; returns how many were new to the vocabulary."""
        if not new_tokens:
            return 0
        if not isinstance(new_tokens, (list, tuple)):
            new_tokens = [new_tokens]
        for token in new_tokens:
            if not isinstance(token, (str, AddedToken)):
                raise TypeError(
                    f"new_tokens must be str or AddedToken, got {type(token).__name__} {token!r}."
                )
        with self._lock:
            if special_tokens:
                return self._tokenizer.add_special_tokens(list(new_tokens))
            return self._tokenizer.add_tokens(list(new_tokens))

    @property
    def add_bos_token(self) -> bool:
        """Whether the tokenizer's own template prepends ``bos_token`` (settable)."""
        return self._add_bos_token

    @add_bos_token.setter
    def add_bos_token(self, value: bool) -> None:
        self._add_bos_token = bool(value)
        self.update_post_processor()

    @property
    def add_eos_token(self) -> bool:
        """Whether the tokenizer's own template appends ``eos_token`` (settable)."""
        return self._add_eos_token

    @add_eos_token.setter
    def add_eos_token(self, value: bool) -> None:
        self._add_eos_token = bool(value)
        self.update_post_processor()

    # ---- vocabulary ----------------------------------------------------------------------------

    @property
    def backend_tokenizer(self) -> Tokenizer:
        """The underlying ``tokenizers.Tokenizer``."""
        return self._tokenizer

    @property
    def is_fast(self) -> bool:
        """Always True: xlagen tokenizers are backed by the Rust ``tokenizers`` library."""
        return True

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without added tokens (like Transformers)."""
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        """Size of the full vocabulary, added tokens included."""
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        """Token -> id mapping, added tokens included."""
        return self._tokenizer.get_vocab(with_added_tokens=True)

    @property
    def vocab(self) -> dict[str, int]:
        """Same as :meth:`get_vocab`."""
        return self.get_vocab()

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        """Added tokens by id."""
        return self._tokenizer.get_added_tokens_decoder()

    @property
    def added_tokens_encoder(self) -> dict[str, int]:
        """Added tokens: content -> id, sorted by id."""
        return {tok.content: idx for idx, tok in sorted(self.added_tokens_decoder.items())}

    def get_added_vocab(self) -> dict[str, int]:
        """Same as :attr:`added_tokens_encoder`."""
        return self.added_tokens_encoder

    def convert_tokens_to_ids(self, tokens: str | Iterable[str]) -> int | list[int | None] | None:
        """Token(s) to id(s); unknown tokens map to ``unk_token_id`` (None if there is no unk token)."""
        if isinstance(tokens, str):
            return self._token_to_id(tokens)
        return [self._token_to_id(t) for t in tokens]

    def _token_to_id(self, token: str) -> int | None:
        index = self._tokenizer.token_to_id(token)
        if index is not None:
            return index
        unk = self._get_special("unk_token")
        return None if unk is None else self._tokenizer.token_to_id(unk)

    def convert_ids_to_tokens(
        self, ids: Any, skip_special_tokens: bool = False
    ) -> str | list[str | None] | None:
        """Id(s) to token string(s); optionally drop special tokens from a list."""
        ids = _to_python_ids(ids)
        if isinstance(ids, int):
            return self._tokenizer.id_to_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._tokenizer.id_to_token(i) for i in ids if i not in skip]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Join tokens into text with the backend decoder."""
        decoder = self._tokenizer.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """How many special tokens the post-processor adds to a single sequence (or a pair)."""
        return self._tokenizer.num_special_tokens_to_add(pair)

    # ---- padding / truncation settings ---------------------------------------------------------

    @property
    def padding_side(self) -> str:
        """'left' or 'right': where pad tokens go (settable)."""
        return self._padding_side

    @padding_side.setter
    def padding_side(self, value: str) -> None:
        self._padding_side = _check_side("padding_side", value)

    @property
    def truncation_side(self) -> str:
        """'left' or 'right': which end is cut when truncating (settable)."""
        return self._truncation_side

    @truncation_side.setter
    def truncation_side(self, value: str) -> None:
        self._truncation_side = _check_side("truncation_side", value)

    def _resolve_strategies(
        self,
        padding: Any,
        truncation: Any,
        max_length: int | None,
        pad_to_multiple_of: int | None,
        verbose: bool,
    ) -> tuple[str, str, int | None]:
        """Transformers' ``_get_padding_truncation_strategies``, with argument validation."""
        max_length = _check_positive_int("max_length", max_length)
        pad_to_multiple_of = _check_positive_int("pad_to_multiple_of", pad_to_multiple_of)
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"  # max_length alone turns truncation on, as in Transformers
        padding_strategy = _padding_strategy(padding)
        truncation_strategy = _truncation_strategy(truncation)
        if (
            padding is True
            and verbose
            and max_length is not None
            and truncation_strategy == "do_not_truncate"
        ):
            warnings.warn(
                "`max_length` is ignored when `padding`=`True` and there is no truncation strategy. "
                "To pad to max length, use `padding='max_length'`.",
                stacklevel=3,
            )
        if max_length is None:
            if padding_strategy == "max_length":
                if self.model_max_length > LARGE_INTEGER:
                    padding_strategy = "do_not_pad"
                else:
                    max_length = self.model_max_length
            if truncation_strategy != "do_not_truncate":
                if self.model_max_length > LARGE_INTEGER:
                    truncation_strategy = "do_not_truncate"
                else:
                    max_length = self.model_max_length
        if padding_strategy != "do_not_pad":
            if self.pad_token is None:
                raise ValueError(
                    "Asking to pad but the tokenizer does not have a padding token. Please select a token to "
                    "use as `pad_token` (`tokenizer.pad_token = tokenizer.eos_token` e.g.), pass "
                    "`pad_token=...` to from_pretrained, or add a new pad token via "
                    "`tokenizer.add_special_tokens({'pad_token': '[PAD]'})`."
                )
            if self.pad_token_id is None:
                raise ValueError(
                    f"Asking to pad but the pad_token {self.pad_token!r} is not in the vocabulary and there "
                    "is no unk_token; add it with `tokenizer.add_special_tokens({'pad_token': ...})`."
                )
        if (
            truncation_strategy != "do_not_truncate"
            and padding_strategy != "do_not_pad"
            and pad_to_multiple_of is not None
            and max_length is not None
            and max_length % pad_to_multiple_of != 0
        ):
            raise ValueError(
                "Truncation and padding are both activated but truncation length "
                f"({max_length}) is not a multiple of pad_to_multiple_of ({pad_to_multiple_of})."
            )
        return padding_strategy, truncation_strategy, max_length

    def _configure_backend(
        self,
        padding_strategy: str,
        truncation_strategy: str,
        max_length: int | None,
        pad_to_multiple_of: int | None,
        padding_side: str,
    ) -> None:
        backend = self._tokenizer
        if truncation_strategy == "do_not_truncate":
            backend.no_truncation()
        else:
            backend.enable_truncation(
                max_length, stride=0, strategy=truncation_strategy, direction=self.truncation_side
            )
        if padding_strategy == "do_not_pad":
            backend.no_padding()
        else:
            backend.enable_padding(
                direction=padding_side,
                pad_id=self.pad_token_id,
                pad_type_id=self.pad_token_type_id,
                pad_token=self.pad_token,
                length=max_length if padding_strategy == "max_length" else None,
                pad_to_multiple_of=pad_to_multiple_of,
            )

    # ---- encoding ------------------------------------------------------------------------------

    def __call__(
        self,
        text: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        text_pair: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        *,
        text_target: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        text_pair_target: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        max_target_length: int | None = None,
        **kwargs: Any,
    ) -> BatchEncoding:
        """Tokenize one text or a batch, with optional padding, truncation and tensor conversion.

        Same semantics as Transformers' fast tokenizers: a single ``str`` gives flat lists (or a batch
        of one with ``return_tensors``), a list gives one row per text; ``padding=True`` pads to the
        longest row on ``padding_side``; ``truncation=True`` cuts to ``max_length`` (default
        ``model_max_length``) on ``truncation_side``; ``return_tensors="tf"`` gives ``tf.int32``
        tensors and ``"np"`` NumPy int64 arrays. ``text_target`` is encoded as the decoder side of a
        sequence-to-sequence model (target language code, Marian's target SentencePiece model) and
        returned as ``labels`` next to ``text``'s encoding, or alone when ``text`` is None.
        """
        if text is None and text_target is None:
            raise _MissingTextError("You need to specify either `text` or `text_target`.")
        with self._lock:
            encodings = None
            if text is not None:
                self._switch_to_input_mode()
                encodings = self._encode(text, text_pair, **kwargs)
            if text_target is None:
                return encodings
            try:
                self._switch_to_target_mode()
                if max_target_length is not None:
                    kwargs["max_length"] = max_target_length
                targets = self._encode(text_target, text_pair_target, **kwargs)
            finally:
                self._switch_to_input_mode()
        if encodings is None:
            return targets
        encodings["labels"] = targets["input_ids"]
        return encodings

    def _switch_to_input_mode(self) -> None:
        """Set the backend up for encoder inputs (source language); a no-op except for seq2seq tokenizers."""

    def _switch_to_target_mode(self) -> None:
        """Set the backend up for ``text_target`` (target language); a no-op except for seq2seq tokenizers."""

    def _encode_batch(
        self, inputs: list[Any], add_special_tokens: bool, is_split_into_words: bool
    ) -> list[Any]:
        """Encode texts (or ``(text, pair)`` tuples) into ``tokenizers.Encoding`` objects with the backend."""
        return self._tokenizer.encode_batch(
            inputs, add_special_tokens=add_special_tokens, is_pretokenized=is_split_into_words
        )

    def _encode(
        self,
        text: str | Sequence[str] | Sequence[Sequence[str]],
        text_pair: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool | None = None,
        return_token_type_ids: bool | None = None,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        is_split_into_words: bool = False,
        split_special_tokens: bool | None = None,
        verbose: bool = True,
    ) -> BatchEncoding:
        """:meth:`__call__` for one side (``text`` and its optional pair)."""
        tensor_type = _check_return_tensors(return_tensors)
        side = _check_side("padding_side", padding_side) if padding_side is not None else self.padding_side
        padding_strategy, truncation_strategy, max_length = self._resolve_strategies(
            padding, truncation, max_length, pad_to_multiple_of, verbose
        )
        is_batched = _validate_text(text, "text", is_split_into_words)
        if text_pair is not None:
            pair_batched = _validate_text(text_pair, "text_pair", is_split_into_words)
            if pair_batched != is_batched:
                raise TypeError("`text` and `text_pair` must both be single examples or both be batches.")
            if is_batched and len(text) != len(text_pair):
                raise ValueError(
                    f"batch length of `text`: {len(text)} does not match batch length of `text_pair`: "
                    f"{len(text_pair)}."
                )
        if is_batched:
            inputs: list[Any] = (
                list(zip(text, text_pair, strict=True)) if text_pair is not None else list(text)
            )
        else:
            inputs = [(text, text_pair)] if text_pair else [text]
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if split_special_tokens is None:
            split_special_tokens = self.split_special_tokens

        with self._lock:
            self._configure_backend(
                padding_strategy, truncation_strategy, max_length, pad_to_multiple_of, side
            )
            self._tokenizer.encode_special_tokens = bool(split_special_tokens)
            try:
                encodings = (
                    self._encode_batch(inputs, add_special_tokens, is_split_into_words) if inputs else []
                )
            except Exception as err:  # the Rust side raises bare Exceptions (e.g. impossible truncation)
                if type(err) is not Exception:
                    raise
                raise ValueError(f"tokenizers could not encode the input: {err}") from err
            finally:
                self._tokenizer.encode_special_tokens = self.split_special_tokens

        data: dict[str, list[Any]] = {"input_ids": [e.ids for e in encodings]}
        if return_token_type_ids:
            data["token_type_ids"] = [e.type_ids for e in encodings]
        if return_attention_mask:
            data["attention_mask"] = [e.attention_mask for e in encodings]
        if return_special_tokens_mask:
            data["special_tokens_mask"] = [e.special_tokens_mask for e in encodings]
        if return_offsets_mapping:
            data["offset_mapping"] = [e.offsets for e in encodings]
        if return_length:
            data["length"] = [len(e.ids) for e in encodings]
        if max_length is None and verbose:
            self._warn_if_too_long(data["input_ids"])
        if not is_batched and tensor_type is None:
            # like Transformers: per-token lists lose the batch axis, per-sequence scalars keep it
            data = {key: value[0] if isinstance(value[0], list) else value for key, value in data.items()}
        return BatchEncoding(data, encodings, tensor_type=tensor_type)

    def _warn_if_too_long(self, rows: list[list[int]]) -> None:
        if self._warned_too_long or not rows:
            return
        longest = max(len(r) for r in rows)
        if longest > self.model_max_length:
            self._warned_too_long = True
            logger.warning(
                "Token indices sequence length is longer than the specified maximum sequence length for this "
                "model (%d > %d). Running this sequence through the model will result in indexing errors",
                longest,
                self.model_max_length,
            )

    def encode(
        self,
        text: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        is_split_into_words: bool = False,
        verbose: bool = True,
    ) -> Any:
        """Return only the ``input_ids`` of :meth:`__call__` (a flat list for a single text)."""
        return self(
            text,
            text_pair,
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_tensors=return_tensors,
            return_attention_mask=False,
            is_split_into_words=is_split_into_words,
            verbose=verbose,
        )["input_ids"]

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False) -> list[str]:
        """Split text into token strings (no special tokens by default, as in Transformers)."""
        if not isinstance(text, str) or (pair is not None and not isinstance(pair, str)):
            raise TypeError("tokenize() expects str arguments.")
        with self._lock:
            self._tokenizer.no_padding()
            self._tokenizer.no_truncation()
            return self._tokenizer.encode(text, pair, add_special_tokens=add_special_tokens).tokens

    # ---- decoding ------------------------------------------------------------------------------

    def decode(
        self,
        token_ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> str | list[str]:
        """Turn ids (int, list, NumPy array or TF tensor) back into text.

        A batch (2-D input) gives a list of strings, as in Transformers 5. Tokenization-space clean-up
        follows ``clean_up_tokenization_spaces`` from the config, except for BPE models where, like
        Transformers 5, it is skipped because it corrupts their output.
        """
        if isinstance(token_ids, Mapping):  # a BatchEncoding
            token_ids = token_ids["input_ids"]
        ids = _to_python_ids(token_ids)
        if isinstance(ids, list) and ids and isinstance(ids[0], list):
            return [self._decode_one(seq, skip_special_tokens, clean_up_tokenization_spaces) for seq in ids]
        return self._decode_one(ids, skip_special_tokens, clean_up_tokenization_spaces)

    def batch_decode(
        self,
        sequences: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> list[str]:
        """Decode a batch of id sequences (list of lists, 2-D array or tensor) into strings."""
        ids = _to_python_ids(sequences)
        if isinstance(ids, int):
            ids = [ids]
        if not ids:
            return []
        if not isinstance(ids[0], list):
            return [self._decode_one(ids, skip_special_tokens, clean_up_tokenization_spaces)]
        return [self._decode_one(seq, skip_special_tokens, clean_up_tokenization_spaces) for seq in ids]

    def _decode_one(self, ids: int | list[int], skip_special_tokens: bool, clean_up: bool | None) -> str:
        if isinstance(ids, int):
            ids = [ids]
        if any(isinstance(i, list) for i in ids):
            raise TypeError(
                "decode() expects a sequence of ints or a batch of sequences, not deeper nesting."
            )
        text = self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
        clean_up = self.clean_up_tokenization_spaces if clean_up is None else clean_up
        if clean_up and (
            type(self._tokenizer.model).__name__ != "BPE"
            or self.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output
        ):
            text = _clean_up_tokenization(text)
        return text

    def clean_up_tokenization(self, text: str) -> str:
        """Remove spaces before punctuation and in common English contractions."""
        return _clean_up_tokenization(text)

    # ---- saving --------------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike) -> tuple[str, ...]:
        """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json``.

        The files load back identically with xlagen and with Transformers' ``AutoTokenizer`` (the
        config names the generic ``PreTrainedTokenizerFast`` class so Transformers uses the saved
        ``tokenizer.json`` pipeline as is).
        """
        directory = Path(save_directory)
        if directory.exists() and not directory.is_dir():
            raise NotADirectoryError(f"save_pretrained expects a directory, {str(directory)!r} is a file.")
        directory.mkdir(parents=True, exist_ok=True)

        config: dict[str, Any] = {
            "added_tokens_decoder": {
                str(idx): tok.__getstate__() for idx, tok in sorted(self.added_tokens_decoder.items())
            },
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "model_input_names": list(self.model_input_names),
            "model_max_length": self.model_max_length,
            "padding_side": self.padding_side,
            "split_special_tokens": self.split_special_tokens,
            "tokenizer_class": "PreTrainedTokenizerFast",
            "truncation_side": self.truncation_side,
        }
        if self.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output:
            config["clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output"] = True
        if self.add_prefix_space is not None:
            config["add_prefix_space"] = self.add_prefix_space
        special_map: dict[str, Any] = {}
        for attr, token in self._special_tokens_map.items():
            if token is not None:
                config[attr] = _serialize_token(token, with_type=True)
                special_map[attr] = _serialize_token(token, with_type=False)
        if self._extra_special_tokens:
            config["additional_special_tokens"] = [str(t) for t in self._extra_special_tokens]
            special_map["additional_special_tokens"] = [
                _serialize_token(t, with_type=False) for t in self._extra_special_tokens
            ]
        for key in SPECIAL_TOKENS_ATTRIBUTES:  # legacy format: named tokens carry no "special" flag
            if isinstance(special_map.get(key), dict):
                special_map[key].pop("special", None)

        tokenizer_path = directory / TOKENIZER_FILE
        config_path = directory / TOKENIZER_CONFIG_FILE
        special_path = directory / SPECIAL_TOKENS_MAP_FILE
        with self._lock:
            backend = Tokenizer.from_str(self._tokenizer.to_str())
        backend.no_padding()
        backend.no_truncation()
        backend.save(str(tokenizer_path))
        config_path.write_text(
            json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n", "utf-8"
        )
        special_path.write_text(
            json.dumps(special_map, indent=2, sort_keys=True, ensure_ascii=False) + "\n", "utf-8"
        )
        return (str(config_path), str(special_path), str(tokenizer_path))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
            f"len={len(self)}, model_max_length={self.model_max_length}, padding_side={self.padding_side!r}, "
            f"truncation_side={self.truncation_side!r}, special_tokens={self.special_tokens_map})"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def __deepcopy__(self, memo: dict[int, Any]) -> PreTrainedTokenizerFast:
        clone = copy.copy(self)
        clone._lock = threading.RLock()
        clone._tokenizer = Tokenizer.from_str(self._tokenizer.to_str())
        clone._special_tokens_map = copy.deepcopy(self._special_tokens_map, memo)
        clone._extra_special_tokens = copy.deepcopy(self._extra_special_tokens, memo)
        clone.model_input_names = list(self.model_input_names)
        return clone


GPT2TokenizerFast = PreTrainedTokenizerFast
