"""Convert a T5-style SentencePiece Unigram model (``spiece.model``) into a ``tokenizers.Tokenizer``.

T5 checkpoints often ship only ``spiece.model``; Transformers then builds its fast tokenizer with
its ``T5Converter``. This module rebuilds the same pipeline without Transformers:

* model: ``Unigram`` over the SentencePiece pieces and scores, followed by the ``extra_ids`` sentinel
  tokens ``<extra_id_{extra_ids-1}>`` ... ``<extra_id_0>`` (score 0), so ``<extra_id_0>`` gets the last id;
* normalizer: the model's precompiled character map, then right-strip and runs of spaces collapsed to
  one ``▁``;
* pre-tokenizer and decoder: ``Metaspace("▁")``, prepending ``▁`` to every chunk between added tokens
  (``legacy`` T5 behaviour) or only to the first one (``legacy=False``);
* post-processor: ``$A </s>`` and ``$A </s> $B </s>``.

Control pieces (``<pad>``, ``</s>``) become special added tokens, user-defined pieces non-special added
tokens, as in Transformers. Only Unigram models are supported; BPE, word and char models raise.
The ``sentencepiece`` package (with ``protobuf``) is needed only to parse the model file.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram

__all__ = ["convert_t5_sentencepiece", "load_sentencepiece_proto", "t5_sentinel_tokens"]

logger = logging.getLogger(__name__)

_UNIGRAM = 1  # sentencepiece TrainerSpec.ModelType.UNIGRAM
_MODEL_TYPE_NAMES = {1: "UNIGRAM", 2: "BPE", 3: "WORD", 4: "CHAR"}
_CONTROL, _USER_DEFINED = 3, 4  # sentencepiece ModelProto.SentencePiece.Type
_SPACE = "▁"


def t5_sentinel_tokens(extra_ids: int) -> list[str]:
    """T5's sentinel tokens ``<extra_id_0>`` ... ``<extra_id_{extra_ids-1}>``, in that order."""
    return [f"<extra_id_{i}>" for i in range(int(extra_ids))]


def load_sentencepiece_proto(path: str | os.PathLike) -> Any:
    """Parse a SentencePiece model file into its ``ModelProto`` message."""
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError as err:
        raise ImportError(
            f"Loading the SentencePiece model {os.fspath(path)!r} needs the 'sentencepiece' and 'protobuf' "
            "packages: pip install sentencepiece protobuf."
        ) from err
    proto = sentencepiece_model_pb2.ModelProto()
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        proto.ParseFromString(data)
    except Exception as err:  # protobuf's DecodeError, or a RuntimeError from the C++ backend
        raise ValueError(f"{os.fspath(path)!r} is not a valid SentencePiece model: {err}") from err
    if not proto.pieces:
        raise ValueError(f"{os.fspath(path)!r} is not a valid SentencePiece model: it has no pieces.")
    return proto


def convert_t5_sentencepiece(
    path: str | os.PathLike,
    *,
    extra_ids: int = 100,
    eos_token: str = "</s>",
    legacy: bool = True,
) -> Tokenizer:
    """Build T5's fast tokenizer from the SentencePiece Unigram model at ``path``.

    ``extra_ids`` sentinel tokens are appended to the vocabulary (in reverse order, as T5 does) and
    registered as special added tokens; ``eos_token`` is appended by the post-processor.
    """
    proto = load_sentencepiece_proto(path)
    trainer_spec, normalizer_spec = proto.trainer_spec, proto.normalizer_spec
    if trainer_spec.model_type != _UNIGRAM:
        name = _MODEL_TYPE_NAMES.get(trainer_spec.model_type, str(trainer_spec.model_type))
        raise ValueError(
            f"{os.fspath(path)!r} is a SentencePiece {name} model; xlagen can only convert Unigram "
            "SentencePiece models (T5-style spiece.model). Create a tokenizer.json once with Transformers: "
            "AutoTokenizer.from_pretrained(path).save_pretrained(path)."
        )
    extra_ids = int(extra_ids or 0)
    if extra_ids < 0:
        raise ValueError(f"extra_ids must be >= 0, got {extra_ids}.")
    if trainer_spec.byte_fallback:
        logger.warning(
            "%s uses SentencePiece byte fallback, which T5's fast tokenizer (and so xlagen) does not apply: "
            "characters outside the vocabulary become the unknown token.",
            os.fspath(path),
        )

    vocab = [(piece.piece, float(piece.score)) for piece in proto.pieces]
    sentinels = t5_sentinel_tokens(extra_ids)
    vocab += [(token, 0.0) for token in reversed(sentinels)]
    unk_id = trainer_spec.unk_id
    if not 0 <= unk_id < len(proto.pieces):
        raise ValueError(f"{os.fspath(path)!r} has an invalid unk_id {unk_id}.")
    # Like Transformers' T5 converter: no byte fallback, whatever the SentencePiece model says.
    tokenizer = Tokenizer(Unigram(vocab, unk_id=unk_id, byte_fallback=False))

    added = [
        AddedToken(piece.piece, normalized=False, special=piece.type == _CONTROL)
        for piece in proto.pieces
        if piece.type in (_CONTROL, _USER_DEFINED)
    ]
    added += [AddedToken(token, normalized=False, special=True) for token in sentinels]
    if added:
        tokenizer.add_tokens(added)

    steps: list[normalizers.Normalizer] = []
    if normalizer_spec.precompiled_charsmap:
        steps.append(normalizers.Precompiled(normalizer_spec.precompiled_charsmap))
    steps += [normalizers.Strip(left=False, right=True), normalizers.Replace(Regex(" {2,}"), _SPACE)]
    tokenizer.normalizer = normalizers.Sequence(steps)

    prepend_scheme = "always" if legacy else "first"
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_SPACE, prepend_scheme=prepend_scheme)
    tokenizer.decoder = decoders.Metaspace(replacement=_SPACE, prepend_scheme=prepend_scheme)

    eos_id = tokenizer.token_to_id(eos_token)
    if eos_id is None:
        raise ValueError(
            f"The eos token {eos_token!r} is not in the SentencePiece model {os.fspath(path)!r}."
        )
    tokenizer.post_processor = processors.TemplateProcessing(
        single=["$A", eos_token],
        pair=["$A", eos_token, "$B", eos_token],
        special_tokens=[(eos_token, eos_id)],
    )
    return tokenizer
