"""Tokenizers of translation models: language codes (mBART, mBART-50, NLLB) and Marian's two SentencePiece models.

Each class is a :class:`PreTrainedTokenizerFast` with the family's Transformers 5 behaviour:
``src_lang`` / ``tgt_lang`` choose the language-code tokens the post-processor adds around the text,
and ``tokenizer(text, text_target=...)`` encodes ``text_target`` with the target settings and returns
it as ``labels``. :class:`MarianTokenizer` segments text with the ``sentencepiece`` library (source
model for inputs, target model for ``text_target``), as Transformers' ``MarianTokenizer`` does, and
maps pieces through ``vocab.json`` with a word-level ``tokenizers`` backend that also pads and
truncates. :class:`BlenderbotSmallTokenizer` ports Transformers' Python BPE (``vocab.json`` +
``merges.txt``) the same way. ``AutoTokenizer`` picks these classes from ``tokenizer_class`` / ``model_type``.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, ClassVar

from tokenizers import AddedToken, Tokenizer, processors

from xlagen.tokenization.fast import PreTrainedTokenizerFast
from xlagen.tokenization.loaders import _marian_vocab, build_marian_backend
from xlagen.tokenization.sentencepiece import (
    M2M100_LANGUAGE_CODES,
    MBART50_LANGUAGE_CODES,
    MBART_LANGUAGE_CODES,
    NLLB_LANGUAGE_CODES,
    m2m100_language_tokens,
    pegasus_offset_tokens,
)

__all__ = [
    "BlenderbotSmallTokenizer",
    "BlenderbotTokenizer",
    "BlenderbotTokenizerFast",
    "LlamaTokenizer",
    "LlamaTokenizerFast",
    "M2M100Tokenizer",
    "MBart50Tokenizer",
    "MBart50TokenizerFast",
    "MBartTokenizer",
    "MBartTokenizerFast",
    "MarianTokenizer",
    "NllbTokenizer",
    "NllbTokenizerFast",
    "PegasusTokenizer",
    "PegasusTokenizerFast",
    "TOKENIZER_CLASSES",
]

_SPIECE_UNDERLINE = "▁"


class _LanguageCodeTokenizer(PreTrainedTokenizerFast):
    """Base of the tokenizers that frame the text with a language code and ``</s>``."""

    _extra_init_keys: ClassVar[frozenset[str]] = frozenset({"src_lang", "tgt_lang"})
    language_codes: ClassVar[list[str]] = []
    _default_src_lang: ClassVar[str] = ""

    def _setup(
        self, backend: Tokenizer, *, src_lang: str | None = None, tgt_lang: str | None = None, **kwargs: Any
    ) -> None:
        if (
            isinstance(kwargs.get("mask_token"), str)
            and backend.token_to_id(kwargs["mask_token"]) is not None
        ):
            # mBART's mask token strips the space before it.
            kwargs["mask_token"] = AddedToken(kwargs["mask_token"], lstrip=True, rstrip=False, special=True)
        extras = kwargs.get("extra_special_tokens") or kwargs.get("additional_special_tokens")
        if not extras and any(backend.token_to_id(code) is not None for code in self.language_codes):
            # Transformers registers the language codes as extra special tokens by default.
            kwargs["extra_special_tokens"] = list(self.language_codes)
        super()._setup(backend, **kwargs)
        self._src_lang = src_lang if src_lang is not None else self._default_src_lang
        self.tgt_lang = tgt_lang
        self.set_src_lang_special_tokens(self._src_lang)

    @property
    def src_lang(self) -> str:
        """The source language code framing encoder inputs (settable)."""
        return self._src_lang

    @src_lang.setter
    def src_lang(self, new_src_lang: str) -> None:
        self.set_src_lang_special_tokens(new_src_lang)
        self._src_lang = new_src_lang

    @property
    def lang_code_to_id(self) -> dict[str, int]:
        """Ids of the family's language codes that are in the vocabulary."""
        ids = {code: self._tokenizer.token_to_id(code) for code in self.language_codes}
        return {code: index for code, index in ids.items() if index is not None}

    def _language_id(self, code: str) -> int:
        if not isinstance(code, str):
            raise ValueError(f"A language code must be a str, got {type(code).__name__} {code!r}.")
        index = self._tokenizer.token_to_id(code)
        if index is None:
            known = ", ".join(list(self.lang_code_to_id)[:6])
            raise ValueError(
                f"Unknown language code {code!r} for {type(self).__name__}: it is not a token of this "
                f"vocabulary (codes look like {known or ', '.join(self.language_codes[:4])}...)."
            )
        return index

    def _frame(self, lang: str, lang_first: bool) -> None:
        """Post-process as ``lang $A </s>`` (``lang_first``) or ``$A </s> lang``; pairs join ``$A $B``."""
        lang_id, eos = self._language_id(lang), self.eos_token
        prefix, suffix = ([lang], [eos]) if lang_first else ([], [eos, lang])
        self._tokenizer.post_processor = processors.TemplateProcessing(
            single=[*prefix, "$A", *suffix],
            pair=[*prefix, "$A", "$B", *suffix],
            special_tokens=[(eos, self.eos_token_id), (lang, lang_id)],
        )
        self.cur_lang_code = lang_id
        self.prefix_tokens = [lang_id] if lang_first else []
        self.suffix_tokens = [self.eos_token_id] if lang_first else [self.eos_token_id, lang_id]

    def set_src_lang_special_tokens(self, src_lang: str) -> None:
        """Frame encoder inputs with ``src_lang``."""
        self._frame(src_lang, self._lang_first)

    def set_tgt_lang_special_tokens(self, tgt_lang: str) -> None:
        """Frame ``text_target`` with ``tgt_lang``."""
        self._frame(tgt_lang, self._lang_first)

    @property
    def _lang_first(self) -> bool:
        return True

    def _switch_to_input_mode(self) -> None:
        self.set_src_lang_special_tokens(self._src_lang)

    def _switch_to_target_mode(self) -> None:
        if self.tgt_lang is None:
            self.tgt_lang = self._src_lang
        self.set_tgt_lang_special_tokens(self.tgt_lang)


class MBartTokenizer(_LanguageCodeTokenizer):
    """mBART (cc25) tokenizer: ``text </s> src_lang`` for inputs and ``text </s> tgt_lang`` for targets."""

    language_codes: ClassVar[list[str]] = MBART_LANGUAGE_CODES
    _default_src_lang: ClassVar[str] = "en_XX"

    @property
    def _lang_first(self) -> bool:
        return False


class MBart50Tokenizer(_LanguageCodeTokenizer):
    """mBART-50 tokenizer: ``src_lang text </s>`` for inputs and ``tgt_lang text </s>`` for targets."""

    language_codes: ClassVar[list[str]] = MBART50_LANGUAGE_CODES
    _default_src_lang: ClassVar[str] = "en_XX"


class NllbTokenizer(_LanguageCodeTokenizer):
    """NLLB-200 tokenizer: ``src_lang text </s>`` (``legacy_behaviour=True``: ``text </s> src_lang``)."""

    _extra_init_keys: ClassVar[frozenset[str]] = frozenset({"src_lang", "tgt_lang", "legacy_behaviour"})
    language_codes: ClassVar[list[str]] = NLLB_LANGUAGE_CODES
    _default_src_lang: ClassVar[str] = "eng_Latn"

    def _setup(self, backend: Tokenizer, *, legacy_behaviour: bool = False, **kwargs: Any) -> None:
        self.legacy_behaviour = bool(legacy_behaviour)
        if isinstance(kwargs.get("mask_token"), str) and backend.token_to_id(kwargs["mask_token"]) is None:
            # NllbTokenizer's mask token: normalized, stripping the space before it.
            kwargs["mask_token"] = AddedToken(
                kwargs["mask_token"], normalized=True, lstrip=True, special=True
            )
        super()._setup(backend, **kwargs)

    @property
    def _lang_first(self) -> bool:
        return not self.legacy_behaviour


class PegasusTokenizer(PreTrainedTokenizerFast):
    """Pegasus tokenizer: ``text </s>``, with ``mask_token_sent`` (``<mask_1>``) and the ``offset``
    placeholders ``<unk_2>`` ... ``<unk_{offset-1}>`` as extra special tokens, as in Transformers."""

    _extra_init_keys: ClassVar[frozenset[str]] = frozenset({"mask_token_sent", "offset"})

    def _setup(
        self,
        backend: Tokenizer,
        *,
        mask_token_sent: str | None = "<mask_1>",
        offset: int = 103,
        **kwargs: Any,
    ) -> None:
        self.mask_token_sent = None if mask_token_sent is None else str(mask_token_sent)
        self.offset = int(offset)
        extras = list(
            kwargs.pop("extra_special_tokens", None) or kwargs.pop("additional_special_tokens", None) or []
        )
        wanted = [self.mask_token_sent] if self.mask_token_sent is not None else []
        names = {str(token) for token in extras}
        extras += [token for token in wanted + pegasus_offset_tokens(self.offset) if token not in names]
        super()._setup(backend, extra_special_tokens=extras, **kwargs)

    def update_post_processor(self) -> None:
        """Pegasus always appends ``</s>``; ``add_bos_token`` / ``add_eos_token`` do not apply."""
        eos = str(self.eos_token)
        self._tokenizer.post_processor = processors.TemplateProcessing(
            single=["$A", eos], pair=["$A", "$B", eos], special_tokens=[(eos, self.eos_token_id)]
        )


class BlenderbotTokenizer(PreTrainedTokenizerFast):
    """Blenderbot byte-level BPE tokenizer: ``text </s>`` (from ``vocab.json`` + ``merges.txt``)."""


class LlamaTokenizer(PreTrainedTokenizerFast):
    """Llama / Mistral SentencePiece-BPE tokenizer (pads on the left by default, as in Transformers)."""


# --------------------------------------------------------------------------------------------------
# Marian
# --------------------------------------------------------------------------------------------------


def _load_spm(path: str | os.PathLike) -> Any:
    import sentencepiece

    if not os.path.isfile(path):
        raise ValueError(f"Marian SentencePiece model {os.fspath(path)!r} does not exist.")
    processor = sentencepiece.SentencePieceProcessor()
    try:
        processor.Load(os.fspath(path))
    except Exception as err:  # sentencepiece raises OSError/RuntimeError on a corrupt file
        raise ValueError(f"{os.fspath(path)!r} is not a valid SentencePiece model: {err}") from err
    return processor


class _PythonPiecesTokenizer(PreTrainedTokenizerFast):
    """A tokenizer whose pieces are computed in Python (``_pieces``: SentencePiece at runtime, a BPE
    port) and mapped to ids by a pre-tokenized ``tokenizers`` backend, which also pads and truncates."""

    def _pieces(self, text: str) -> list[str]:
        raise NotImplementedError

    def _split_added(self, text: str) -> list[str]:
        """Split ``text`` on added tokens (longest first), applying their lstrip/rstrip, as Transformers."""
        if self._tokenizer.encode_special_tokens:
            return [text]
        added = {tok.content: tok for tok in self.added_tokens_decoder.values()}
        if not added:
            return [text]
        pattern = "|".join(re.escape(t) for t in sorted(added, key=len, reverse=True))
        parts = [part for part in re.split(f"({pattern})", text) if part != ""]
        for i, part in enumerate(parts):
            token = added.get(part)
            if token is None:
                continue
            if token.rstrip and i + 1 < len(parts) and parts[i + 1] not in added:
                parts[i + 1] = parts[i + 1].lstrip()
            if token.lstrip and i > 0 and parts[i - 1] not in added:
                parts[i - 1] = parts[i - 1].rstrip()
        return [part for part in parts if part]

    def _encode_batch(
        self, inputs: list[Any], add_special_tokens: bool, is_split_into_words: bool
    ) -> list[Any]:
        def pieces(text: Any) -> list[str]:
            if is_split_into_words:
                return [piece for word in text for piece in self._pieces(word)]
            return self._pieces(text)

        converted = [
            (pieces(item[0]), pieces(item[1])) if isinstance(item, tuple) else pieces(item) for item in inputs
        ]
        return self._tokenizer.encode_batch(
            converted, add_special_tokens=add_special_tokens, is_pretokenized=True
        )


class MarianTokenizer(_PythonPiecesTokenizer):
    """Marian (OPUS-MT) tokenizer: ``source.spm`` pieces for inputs, ``target.spm`` for ``text_target``.

    Pieces are looked up in ``vocab.json`` (``target_vocab.json`` for targets when ``separate_vocabs``),
    unknown ones become ``<unk>``, and ``</s>`` is appended. Decoding joins pieces with the source model
    (the target one with separate vocabularies), like Transformers.
    """

    _extra_init_keys: ClassVar[frozenset[str]] = frozenset(
        {
            "source_spm",
            "target_spm",
            "source_vocab_file",
            "target_vocab_file",
            "separate_vocabs",
            "source_lang",
            "target_lang",
        }
    )

    # Marian keeps a leading ``>>lang<<`` target-language code whole.
    _lang_prefix_pieces: ClassVar[bool] = True

    def _setup(
        self,
        backend: Tokenizer,
        *,
        source_spm: str | os.PathLike,
        target_spm: str | os.PathLike,
        source_vocab_file: str | os.PathLike,
        target_vocab_file: str | os.PathLike | None = None,
        separate_vocabs: bool = False,
        source_lang: str | None = None,
        target_lang: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._spm_source = _load_spm(source_spm)
        self._spm_target = _load_spm(target_spm)
        self.separate_vocabs = bool(separate_vocabs)
        self.source_lang, self.target_lang = source_lang, target_lang
        super()._setup(backend, **kwargs)
        self._source_backend = self._tokenizer
        self._target_backend = self._tokenizer
        if self.separate_vocabs:
            if target_vocab_file is None or not os.path.isfile(target_vocab_file):
                raise ValueError(
                    f"separate_vocabs=True needs the target vocabulary target_vocab.json, got {target_vocab_file!r}."
                )
            # Added tokens keep their source ids on the target side, as in Transformers.
            added = [tok for _, tok in sorted(self._source_backend.get_added_tokens_decoder().items())]
            ids = {tok.content: self._source_backend.token_to_id(tok.content) for tok in added}
            self._target_backend = build_marian_backend(Path(target_vocab_file), str(self.unk_token), ids)
            self._target_backend.add_tokens(added)
            target_vocab = _marian_vocab(Path(target_vocab_file))
        else:
            target_vocab = _marian_vocab(Path(source_vocab_file))
        self._current_spm = self._spm_source
        for side in {
            id(self._source_backend): self._source_backend,
            id(self._target_backend): self._target_backend,
        }.values():
            eos = str(self.eos_token)
            side.post_processor = processors.TemplateProcessing(
                single=["$A", eos], pair=["$A", "$B", eos], special_tokens=[(eos, self.eos_token_id)]
            )
        self._id_to_piece = {index: piece for piece, index in target_vocab.items()}

    def update_post_processor(self) -> None:
        """Marian always appends ``</s>``; ``add_bos_token`` / ``add_eos_token`` do not apply."""
        if getattr(self, "_source_backend", None) is None:
            return
        eos = str(self.eos_token)
        self._tokenizer.post_processor = processors.TemplateProcessing(
            single=["$A", eos], pair=["$A", "$B", eos], special_tokens=[(eos, self.eos_token_id)]
        )

    def _switch_to_input_mode(self) -> None:
        self._current_spm = self._spm_source
        self._tokenizer = self._source_backend

    def _switch_to_target_mode(self) -> None:
        self._current_spm = self._spm_target
        self._tokenizer = self._target_backend

    # ---- encoding ------------------------------------------------------------------------------

    def _pieces(self, text: str) -> list[str]:
        """Text to Marian pieces: added tokens whole, a leading ``>>lang<<`` code whole, the rest via spm."""
        added = {tok.content for tok in self.added_tokens_decoder.values()}
        pieces: list[str] = []
        for chunk in self._split_added(text):
            if chunk in added and not self._tokenizer.encode_special_tokens:
                pieces.append(chunk)
                continue
            if self._lang_prefix_pieces and chunk.startswith(">>") and (end := chunk.find("<<")) != -1:
                pieces.append(chunk[: end + 2])
                chunk = chunk[end + 2 :]
            pieces.extend(self._current_spm.encode(chunk, out_type=str))
        return pieces

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False) -> list[str]:
        """SentencePiece pieces of ``text`` (source model), with added tokens kept whole."""
        if not isinstance(text, str) or (pair is not None and not isinstance(pair, str)):
            raise TypeError("tokenize() expects str arguments.")
        with self._lock:
            tokens = self._pieces(text) + (self._pieces(pair) if pair is not None else [])
        return tokens + [str(self.eos_token)] if add_special_tokens else tokens

    # ---- decoding ------------------------------------------------------------------------------

    def _decode_one(self, ids: int | list[int], skip_special_tokens: bool, clean_up: bool | None) -> str:
        if isinstance(ids, int):
            ids = [ids]
        if any(isinstance(i, list) for i in ids):
            raise TypeError(
                "decode() expects a sequence of ints or a batch of sequences, not deeper nesting."
            )
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        tokens = [self._id_to_token(i) for i in ids if i not in skip]
        text = self.convert_tokens_to_string(tokens)
        clean_up = self.clean_up_tokenization_spaces if clean_up is None else clean_up
        return self.clean_up_tokenization(text) if clean_up else text

    def _id_to_token(self, index: int) -> str:
        added = self._source_backend.get_added_tokens_decoder()
        if index in added:
            return added[index].content
        if index in self._id_to_piece:
            return self._id_to_piece[index]
        spm = self._decode_spm
        piece = spm.IdToPiece(index) if 0 <= index < spm.GetPieceSize() else ""
        return piece or str(self.unk_token)

    def convert_ids_to_tokens(self, ids: Any, skip_special_tokens: bool = False) -> Any:
        """Id(s) to piece(s) through the (target) vocabulary, special tokens optionally dropped."""
        if isinstance(ids, int):
            return self._id_to_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._id_to_token(int(i)) for i in ids if int(i) not in skip]

    @property
    def _decode_spm(self) -> Any:
        return self._spm_target if self.separate_vocabs else self._spm_source

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Join pieces with SentencePiece, special tokens verbatim and followed by a space (as Transformers)."""
        spm, specials = self._decode_spm, set(self.all_special_tokens)
        out, run = "", []
        for token in tokens:
            if token in specials:
                out += spm.decode_pieces(run) + token + " "
                run = []
            else:
                run.append(token)
        out += spm.decode_pieces(run)
        return out.replace(_SPIECE_UNDERLINE, " ").strip()

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """Marian appends one ``</s>``."""
        return 1

    def __deepcopy__(self, memo: dict[int, Any]) -> MarianTokenizer:
        clone = super().__deepcopy__(memo)
        target_mode = self._tokenizer is not self._source_backend
        clone._source_backend = Tokenizer.from_str(self._source_backend.to_str())
        clone._target_backend = (
            Tokenizer.from_str(self._target_backend.to_str())
            if self.separate_vocabs
            else clone._source_backend
        )
        clone._tokenizer = clone._target_backend if target_mode else clone._source_backend
        clone._id_to_piece = copy.copy(self._id_to_piece)
        return clone


class M2M100Tokenizer(MarianTokenizer):
    """M2M100 tokenizer: ``__src__ text </s>`` for inputs and ``__tgt__ text </s>`` for ``text_target``.

    Pieces come from ``sentencepiece.bpe.model`` and ids from ``vocab.json``; the ``__code__`` language
    tokens follow the vocabulary (``get_lang_id``), as in Transformers' (slow) ``M2M100Tokenizer``.
    """

    _extra_init_keys: ClassVar[frozenset[str]] = frozenset(
        {"spm_file", "vocab_file", "src_lang", "tgt_lang", "language_codes", "num_madeup_words"}
    )
    _lang_prefix_pieces: ClassVar[bool] = False

    def _setup(
        self,
        backend: Tokenizer,
        *,
        spm_file: str | os.PathLike,
        vocab_file: str | os.PathLike,
        src_lang: str | None = None,
        tgt_lang: str | None = None,
        language_codes: str = "m2m100",
        num_madeup_words: int = 8,
        **kwargs: Any,
    ) -> None:
        self.language_codes = language_codes
        self.num_madeup_words = num_madeup_words
        self.encoder = _marian_vocab(Path(vocab_file))
        codes = M2M100_LANGUAGE_CODES[language_codes] if language_codes in M2M100_LANGUAGE_CODES else ()
        tokens = m2m100_language_tokens(language_codes)  # raises on an unknown set
        self.lang_code_to_token = dict(zip(codes, tokens, strict=True))
        self.lang_token_to_id = {token: len(self.encoder) + i for i, token in enumerate(tokens)}
        self.lang_code_to_id = {
            code: self.lang_token_to_id[token] for code, token in self.lang_code_to_token.items()
        }
        self.id_to_lang_token = {index: token for token, index in self.lang_token_to_id.items()}
        super()._setup(
            backend, source_spm=spm_file, target_spm=spm_file, source_vocab_file=vocab_file, **kwargs
        )
        self._id_to_piece.update(self.id_to_lang_token)
        self.tgt_lang = tgt_lang
        self.set_src_lang_special_tokens(src_lang if src_lang is not None else "en")
        self._src_lang = src_lang if src_lang is not None else "en"

    @property
    def src_lang(self) -> str:
        """The source language code (``"en"``) framing encoder inputs (settable)."""
        return self._src_lang

    @src_lang.setter
    def src_lang(self, new_src_lang: str) -> None:
        self.set_src_lang_special_tokens(new_src_lang)
        self._src_lang = new_src_lang

    def get_lang_token(self, lang: str) -> str:
        """``__lang__`` for a language code; ValueError for a code outside ``language_codes``."""
        if not isinstance(lang, str) or lang not in self.lang_code_to_token:
            known = ", ".join(list(self.lang_code_to_token)[:8])
            raise ValueError(
                f"Unknown language code {lang!r} for M2M100Tokenizer (language_codes={self.language_codes!r}); "
                f"codes look like {known}..."
            )
        return self.lang_code_to_token[lang]

    def get_lang_id(self, lang: str) -> int:
        """Id of the ``__lang__`` token (e.g. the decoder's ``forced_bos_token_id``)."""
        return self.lang_token_to_id[self.get_lang_token(lang)]

    def set_src_lang_special_tokens(self, src_lang: str) -> None:
        """Frame encoder inputs as ``__src_lang__ text </s>``."""
        self._frame(src_lang)

    def set_tgt_lang_special_tokens(self, tgt_lang: str) -> None:
        """Frame ``text_target`` as ``__tgt_lang__ text </s>``."""
        self._frame(tgt_lang)

    def _frame(self, lang: str) -> None:
        token, lang_id, eos = self.get_lang_token(lang), self.get_lang_id(lang), str(self.eos_token)
        self._tokenizer.post_processor = processors.TemplateProcessing(
            single=[token, "$A", eos],
            pair=[token, "$A", "$B", eos],
            special_tokens=[(token, lang_id), (eos, self.eos_token_id)],
        )
        self.cur_lang_id = lang_id
        self.prefix_tokens, self.suffix_tokens = [lang_id], [self.eos_token_id]

    def update_post_processor(self) -> None:
        """M2M100 always frames as ``__lang__ text </s>``; ``add_bos_token`` / ``add_eos_token`` do not apply."""
        if getattr(self, "cur_lang_id", None) is not None:
            self._frame(self.id_to_lang_token[self.cur_lang_id][2:-2])

    def _switch_to_input_mode(self) -> None:
        super()._switch_to_input_mode()
        self.set_src_lang_special_tokens(self._src_lang)

    def _switch_to_target_mode(self) -> None:
        if self.tgt_lang is None:
            raise ValueError("M2M100Tokenizer needs tgt_lang (e.g. tgt_lang='fr') to encode text_target.")
        super()._switch_to_target_mode()
        self.set_tgt_lang_special_tokens(self.tgt_lang)

    @property
    def vocab_size(self) -> int:
        """Size of ``vocab.json`` (the language tokens come after it), as in Transformers."""
        return len(self.encoder)

    def __len__(self) -> int:
        return len(set(self.encoder) | set(self.added_tokens_encoder))

    def _id_to_token(self, index: int) -> str:
        added = self._source_backend.get_added_tokens_decoder()
        if index in added:
            return added[index].content
        return self._id_to_piece.get(index, str(self.unk_token))

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Join pieces with SentencePiece, special tokens verbatim (no space added), as Transformers."""
        spm, specials = self._decode_spm, set(self.all_special_tokens)
        out, run = "", []
        for token in tokens:
            if token in specials:
                out += spm.decode(run) + token
                run = []
            else:
                run.append(token)
        return (out + spm.decode(run)).strip()

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """M2M100 adds the language token and ``</s>``."""
        return 2


# --------------------------------------------------------------------------------------------------
# BlenderbotSmall
# --------------------------------------------------------------------------------------------------

# The whitespace of the ``regex`` module's ``\s`` (Transformers' tokenizer uses ``regex``): ``re``'s
# ``\s`` also matches U+001C..U+001F.
_WS = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_BBS_WORDS = re.compile(f"[^{_WS}]+\n?")
_BBS_PUNCT = re.compile("([.,!?()])")
_BBS_QUOTE = re.compile("(')")
_BBS_SPACES = re.compile(f"[{_WS}]{{2,}}")


def _read_bpe_ranks(merges_file: str | os.PathLike) -> dict[tuple[str, ...], int]:
    """Merge ranks of a ``merges.txt``, read as Transformers' ``BlenderbotSmallTokenizer`` reads it
    (the first line is the ``#version`` header, the last one is empty)."""
    try:
        text = Path(merges_file).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(
            f"Cannot read the BlenderbotSmall merges file {os.fspath(merges_file)!r}: {err}"
        ) from err
    merges = [tuple(merge.split()) for merge in text.split("\n")[1:-1]]
    return dict(zip(merges, range(len(merges)), strict=False))


class BlenderbotSmallTokenizer(_PythonPiecesTokenizer):
    """BlenderbotSmall (Blenderbot-90M) tokenizer from ``vocab.json`` + ``merges.txt``.

    A port of Transformers' (slow) ``BlenderbotSmallTokenizer``: words are split on whitespace, lowercased,
    ``.,!?()`` and ``'`` split off and a trailing newline turned into ``__newln__``; BPE pieces of a word
    are joined with ``@@ `` and decoding joins the tokens with spaces and removes ``@@ ``. No special
    tokens are added (as in Transformers). A word-level ``tokenizers`` backend over ``vocab.json`` maps the
    pieces to ids and pads / truncates.
    """

    _extra_init_keys: ClassVar[frozenset[str]] = frozenset({"vocab_file", "merges_file"})

    def _setup(
        self,
        backend: Tokenizer,
        *,
        vocab_file: str | os.PathLike,
        merges_file: str | os.PathLike,
        **kwargs: Any,
    ) -> None:
        self.vocab_file, self.merges_file = os.fspath(vocab_file), os.fspath(merges_file)
        self.encoder: dict[str, int] = _marian_vocab(Path(vocab_file))
        self.decoder: dict[int, str] = {index: token for token, index in self.encoder.items()}
        self.bpe_ranks = _read_bpe_ranks(merges_file)
        self.cache: dict[str, str] = {}
        super()._setup(backend, **kwargs)

    # ---- encoding ------------------------------------------------------------------------------

    def bpe(self, token: str) -> str:
        """The space-separated BPE pieces of one whitespace-delimited word (``@@`` ends non-final pieces)."""
        if token in self.cache:
            return self.cache[token]
        token = _BBS_PUNCT.sub(r" \1", token)
        token = _BBS_QUOTE.sub(r" \1 ", token)
        token = _BBS_SPACES.sub(" ", token)
        if "\n" in token:
            token = token.replace("\n", " __newln__")
        words = []
        for part in token.split(" "):
            if not part:
                continue
            part = part.lower()
            word = (*part[:-1], part[-1] + "</w>")
            if len(word) == 1:
                words.append(part)
                continue
            word = self._merge(word)
            joined = "@@ ".join(word)[:-4]
            self.cache[part] = joined
            words.append(joined)
        return " ".join(words)

    def _merge(self, word: tuple[str, ...]) -> tuple[str, ...]:
        """Apply the lowest-ranked merge until none applies (Transformers' loop)."""
        ranks = self.bpe_ranks
        while len(word) > 1:
            pairs = set(zip(word, word[1:], strict=False))
            bigram = min(pairs, key=lambda pair: ranks.get(pair, float("inf")))
            if bigram not in ranks:
                break
            first, second = bigram
            merged: list[str] = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    merged.extend(word[i:])
                    break
                merged.extend(word[i:j])
                i = j
                if i < len(word) - 1 and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        return word

    def _tokenize(self, text: str) -> list[str]:
        """BPE pieces of text without added tokens."""
        pieces: list[str] = []
        for word in _BBS_WORDS.findall(text):
            pieces.extend(self.bpe(word).split(" "))
        return pieces

    def _pieces(self, text: str) -> list[str]:
        """Text to pieces: added tokens whole, the rest through :meth:`bpe`."""
        added = {tok.content for tok in self.added_tokens_decoder.values()}
        pieces: list[str] = []
        for chunk in self._split_added(text):
            if chunk in added and not self._tokenizer.encode_special_tokens:
                pieces.append(chunk)
            else:
                pieces.extend(self._tokenize(chunk))
        return pieces

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False) -> list[str]:
        """BPE pieces of ``text`` (and ``pair``), with added tokens kept whole."""
        if not isinstance(text, str) or (pair is not None and not isinstance(pair, str)):
            raise TypeError("tokenize() expects str arguments.")
        with self._lock:
            return self._pieces(text) + (self._pieces(pair) if pair is not None else [])

    # ---- vocabulary ----------------------------------------------------------------------------

    def _token_to_id(self, token: str) -> int | None:
        """Added tokens first, then the lowercased token in ``vocab.json`` (else the unknown token's id)."""
        added = self.added_tokens_encoder
        if token in added:
            return added[token]
        return self.encoder.get(token.lower(), self.encoder.get(str(self.unk_token)))

    def _id_to_token(self, index: int) -> str:
        added = self._tokenizer.get_added_tokens_decoder()
        if index in added:
            return added[index].content
        return self.decoder.get(index, str(self.unk_token))

    def convert_ids_to_tokens(self, ids: Any, skip_special_tokens: bool = False) -> Any:
        """Id(s) to token(s) (``unk_token`` for an unknown id), special tokens optionally dropped."""
        if isinstance(ids, int):
            return self._id_to_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._id_to_token(int(i)) for i in ids if int(i) not in skip]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Join tokens with spaces and remove the ``@@ `` that ends non-final pieces."""
        return " ".join(tokens).replace("@@ ", "").strip()

    # ---- decoding ------------------------------------------------------------------------------

    def _decode_one(self, ids: int | list[int], skip_special_tokens: bool, clean_up: bool | None) -> str:
        if isinstance(ids, int):
            ids = [ids]
        if any(isinstance(i, list) for i in ids):
            raise TypeError(
                "decode() expects a sequence of ints or a batch of sequences, not deeper nesting."
            )
        text = self.convert_tokens_to_string(self.convert_ids_to_tokens(ids, skip_special_tokens))
        clean_up = self.clean_up_tokenization_spaces if clean_up is None else clean_up
        return self.clean_up_tokenization(text) if clean_up else text

    # ---- saving --------------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike) -> tuple[str, ...]:
        """Write ``vocab.json``, ``merges.txt``, ``tokenizer_config.json`` and ``special_tokens_map.json``
        (no ``tokenizer.json``), which xlagen and Transformers both load as a ``BlenderbotSmallTokenizer``."""
        import json

        config_path, special_path, tokenizer_path = super().save_pretrained(save_directory)
        Path(tokenizer_path).unlink()
        directory = Path(save_directory)
        config = json.loads(Path(config_path).read_text("utf-8"))
        config["tokenizer_class"] = "BlenderbotSmallTokenizer"
        Path(config_path).write_text(
            json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n", "utf-8"
        )
        vocab_path, merges_path = directory / "vocab.json", directory / "merges.txt"
        vocab_path.write_text(
            json.dumps(self.encoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n", "utf-8"
        )
        merges = [" ".join(pair) for pair, _ in sorted(self.bpe_ranks.items(), key=lambda kv: kv[1])]
        merges_path.write_text("#version: 0.2\n" + "".join(f"{line}\n" for line in merges), "utf-8")
        return (config_path, special_path, str(vocab_path), str(merges_path))

    def __deepcopy__(self, memo: dict[int, Any]) -> BlenderbotSmallTokenizer:
        clone = super().__deepcopy__(memo)
        clone.cache = dict(self.cache)
        return clone


# Transformers 5 names its tokenizers-backed classes without "Fast" and keeps the old names as aliases.
BlenderbotTokenizerFast = BlenderbotTokenizer
LlamaTokenizerFast = LlamaTokenizer
MBartTokenizerFast = MBartTokenizer
MBart50TokenizerFast = MBart50Tokenizer
NllbTokenizerFast = NllbTokenizer
PegasusTokenizerFast = PegasusTokenizer

TOKENIZER_CLASSES: dict[str, type[PreTrainedTokenizerFast]] = {
    "marian": MarianTokenizer,
    "m2m100": M2M100Tokenizer,
    "mbart": MBartTokenizer,
    "mbart50": MBart50Tokenizer,
    "nllb": NllbTokenizer,
    "llama": LlamaTokenizer,
    "blenderbot": BlenderbotTokenizer,
    "blenderbot_small": BlenderbotSmallTokenizer,
    "pegasus": PegasusTokenizer,
}
