"""Convert SentencePiece models (T5 ``spiece.model``, Llama ``tokenizer.model``, mBART / NLLB
``sentencepiece.bpe.model``) into ``tokenizers.Tokenizer`` pipelines, as Transformers 5 does.

Checkpoints often ship only the SentencePiece file; Transformers then builds its fast tokenizer from
the pieces and scores with a per-model pipeline. This module rebuilds the same pipelines without
Transformers. T5 (:func:`convert_t5_sentencepiece`):

* model: ``Unigram`` over the SentencePiece pieces and scores, followed by the ``extra_ids`` sentinel
  tokens ``<extra_id_{extra_ids-1}>`` ... ``<extra_id_0>`` (score 0), so ``<extra_id_0>`` gets the last id;
* normalizer: the model's precompiled character map, then right-strip and runs of spaces collapsed to
  one ``▁``;
* pre-tokenizer and decoder: ``Metaspace("▁")``, prepending ``▁`` to every chunk between added tokens
  (``legacy`` T5 behaviour) or only to the first one (``legacy=False``);
* post-processor: ``$A </s>`` and ``$A </s> $B </s>``.

Control pieces (``<pad>``, ``</s>``) become special added tokens, user-defined pieces non-special added
tokens, as in Transformers. Only Unigram models are supported; BPE, word and char models raise.

Llama / Mistral (:func:`convert_llama_sentencepiece`), mBART and mBART-50
(:func:`convert_mbart_sentencepiece`) and NLLB (:func:`convert_nllb_sentencepiece`) follow the
``__init__`` pipelines of Transformers 5's ``LlamaTokenizer``, ``MBartTokenizer``, ``MBart50Tokenizer``
and ``NllbTokenizer`` fed by its SentencePiece extractor (vocabulary reordered to fairseq's layout,
BPE merges regenerated from the vocabulary). The ``sentencepiece`` package (with ``protobuf``) is needed
only to parse the model file.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, Unigram

__all__ = [
    "MBART50_LANGUAGE_CODES",
    "MBART_LANGUAGE_CODES",
    "NLLB_LANGUAGE_CODES",
    "convert_llama_sentencepiece",
    "convert_mbart_sentencepiece",
    "convert_nllb_sentencepiece",
    "convert_pegasus_sentencepiece",
    "convert_t5_sentencepiece",
    "generate_merges",
    "llama_from_tokenizer_json",
    "load_sentencepiece_proto",
    "M2M100_LANGUAGE_CODES",
    "m2m100_language_tokens",
    "pegasus_offset_tokens",
    "t5_sentinel_tokens",
]

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


# --------------------------------------------------------------------------------------------------
# Llama / mBART / NLLB
# --------------------------------------------------------------------------------------------------

MBART_LANGUAGE_CODES = (
    "ar_AR cs_CZ de_DE en_XX es_XX et_EE fi_FI fr_XX gu_IN hi_IN it_IT ja_XX kk_KZ ko_KR lt_LT lv_LV "
    "my_MM ne_NP nl_XX ro_RO ru_RU si_LK tr_TR vi_VN zh_CN"
).split()
MBART50_LANGUAGE_CODES = (
    MBART_LANGUAGE_CODES
    + (
        "af_ZA az_AZ bn_IN fa_IR he_IL hr_HR id_ID ka_GE km_KH mk_MK ml_IN mn_MN mr_IN pl_PL ps_AF pt_XX "
        "sv_SE sw_KE ta_IN te_IN th_TH tl_XX uk_UA ur_PK xh_ZA gl_ES sl_SI"
    ).split()
)
NLLB_LANGUAGE_CODES = (
    "ace_Arab ace_Latn acm_Arab acq_Arab aeb_Arab afr_Latn ajp_Arab aka_Latn amh_Ethi apc_Arab arb_Arab "
    "ars_Arab ary_Arab arz_Arab asm_Beng ast_Latn awa_Deva ayr_Latn azb_Arab azj_Latn bak_Cyrl bam_Latn "
    "ban_Latn bel_Cyrl bem_Latn ben_Beng bho_Deva bjn_Arab bjn_Latn bod_Tibt bos_Latn bug_Latn bul_Cyrl "
    "cat_Latn ceb_Latn ces_Latn cjk_Latn ckb_Arab crh_Latn cym_Latn dan_Latn deu_Latn dik_Latn dyu_Latn "
    "dzo_Tibt ell_Grek eng_Latn epo_Latn est_Latn eus_Latn ewe_Latn fao_Latn pes_Arab fij_Latn fin_Latn "
    "fon_Latn fra_Latn fur_Latn fuv_Latn gla_Latn gle_Latn glg_Latn grn_Latn guj_Gujr hat_Latn hau_Latn "
    "heb_Hebr hin_Deva hne_Deva hrv_Latn hun_Latn hye_Armn ibo_Latn ilo_Latn ind_Latn isl_Latn ita_Latn "
    "jav_Latn jpn_Jpan kab_Latn kac_Latn kam_Latn kan_Knda kas_Arab kas_Deva kat_Geor knc_Arab knc_Latn "
    "kaz_Cyrl kbp_Latn kea_Latn khm_Khmr kik_Latn kin_Latn kir_Cyrl kmb_Latn kon_Latn kor_Hang kmr_Latn "
    "lao_Laoo lvs_Latn lij_Latn lim_Latn lin_Latn lit_Latn lmo_Latn ltg_Latn ltz_Latn lua_Latn lug_Latn "
    "luo_Latn lus_Latn mag_Deva mai_Deva mal_Mlym mar_Deva min_Latn mkd_Cyrl plt_Latn mlt_Latn mni_Beng "
    "khk_Cyrl mos_Latn mri_Latn zsm_Latn mya_Mymr nld_Latn nno_Latn nob_Latn npi_Deva nso_Latn nus_Latn "
    "nya_Latn oci_Latn gaz_Latn ory_Orya pag_Latn pan_Guru pap_Latn pol_Latn por_Latn prs_Arab pbt_Arab "
    "quy_Latn ron_Latn run_Latn rus_Cyrl sag_Latn san_Deva sat_Beng scn_Latn shn_Mymr sin_Sinh slk_Latn "
    "slv_Latn smo_Latn sna_Latn snd_Arab som_Latn sot_Latn spa_Latn als_Latn srd_Latn srp_Cyrl ssw_Latn "
    "sun_Latn swe_Latn swh_Latn szl_Latn tam_Taml tat_Cyrl tel_Telu tgk_Cyrl tgl_Latn tha_Thai tir_Ethi "
    "taq_Latn taq_Tfng tpi_Latn tsn_Latn tso_Latn tuk_Latn tum_Latn tur_Latn twi_Latn tzm_Tfng uig_Arab "
    "ukr_Cyrl umb_Latn urd_Arab uzn_Latn vec_Latn vie_Latn war_Latn wol_Latn xho_Latn ydd_Hebr yor_Latn "
    "yue_Hant zho_Hans zho_Hant zul_Latn"
).split()


# M2M100's fairseq language codes (``__en__`` tokens), by ``language_codes`` setting.
M2M100_LANGUAGE_CODES: dict[str, tuple[str, ...]] = {
    "m2m100": tuple(
        "af am ar ast az ba be bg bn br bs ca ceb cs cy da de el en es et fa ff fi fr fy ga gd gl gu ha he hi "
        "hr ht hu hy id ig ilo is it ja jv ka kk km kn ko lb lg ln lo lt lv mg mk ml mn mr ms my ne nl no ns "
        "oc or pa pl ps pt ro ru sd si sk sl so sq sr ss su sv sw ta th tl tn tr uk ur uz vi wo xh yi yo zh "
        "zu".split()
    ),
    "wmt21": ("en", "ha", "is", "ja", "cs", "ru", "zh", "de"),
}


def m2m100_language_tokens(language_codes: str) -> list[str]:
    """The ``__code__`` tokens of an M2M100 ``language_codes`` set ("m2m100" or "wmt21"), in id order."""
    if language_codes not in M2M100_LANGUAGE_CODES:
        raise ValueError(
            f"Unknown M2M100 language_codes {language_codes!r}; expected one of {sorted(M2M100_LANGUAGE_CODES)}."
        )
    return [f"__{code}__" for code in M2M100_LANGUAGE_CODES[language_codes]]


def generate_merges(vocab: dict[str, int]) -> list[tuple[str, str]]:
    """BPE merges rebuilt from a vocabulary alone, ranked by the merged piece's id (Transformers'
    ``generate_merges`` without scores), so SentencePiece BPE models load as ``tokenizers`` BPE."""
    merges: list[tuple[str, str, int]] = []
    for piece, rank in vocab.items():
        local = [
            (piece[:i], piece[i:], rank)
            for i in range(1, len(piece))
            if piece[:i] in vocab and piece[i:] in vocab
        ]
        local.sort(key=lambda m: (vocab[m[0]], vocab[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])))
    return [(left, right) for left, right, _ in merges]


def sentencepiece_added_tokens(proto: Any) -> list[AddedToken]:
    """Control pieces as special and user-defined pieces as normal added tokens (SentencePiece order)."""
    return [
        AddedToken(piece.piece, normalized=False, special=piece.type == _CONTROL)
        for piece in proto.pieces
        if piece.type in (_CONTROL, _USER_DEFINED)
    ]


def _charsmap_normalizer(proto: Any) -> normalizers.Normalizer | None:
    """The precompiled character map followed by runs of spaces collapsed (mBART-50 and NLLB)."""
    charsmap = proto.normalizer_spec.precompiled_charsmap
    steps: list[normalizers.Normalizer] = [normalizers.Replace(Regex(" {2,}"), " ")]
    if charsmap:
        steps.insert(0, normalizers.Precompiled(charsmap))
    return normalizers.Sequence(steps)


def convert_llama_sentencepiece(
    path: str | os.PathLike, *, legacy: bool = False, add_prefix_space: bool | None = None
) -> Tokenizer:
    """Llama / Mistral fast tokenizer from ``tokenizer.model`` (Transformers 5's ``LlamaTokenizer``).

    BPE over the SentencePiece pieces with byte fallback and merges regenerated from the vocabulary; no
    normalizer; ``Metaspace`` adds ``▁`` to the first chunk only (``legacy=False``), to every chunk
    between added tokens (``legacy=True``) or never (``add_prefix_space=False``). The post-processor is
    left to the tokenizer (``add_bos_token`` / ``add_eos_token``).
    """
    proto = load_sentencepiece_proto(path)
    vocab = {piece.piece: index for index, piece in enumerate(proto.pieces)}
    tokenizer = Tokenizer(
        BPE(vocab=vocab, merges=generate_merges(vocab), fuse_unk=True, byte_fallback=True, dropout=None)
    )
    added = sentencepiece_added_tokens(proto)
    if added:
        tokenizer.add_tokens(added)
    set_llama_pipeline(tokenizer, legacy=legacy, add_prefix_space=add_prefix_space)
    return tokenizer


def set_llama_pipeline(
    tokenizer: Tokenizer, *, legacy: bool = False, add_prefix_space: bool | None = None
) -> None:
    """Give ``tokenizer`` Transformers 5's ``LlamaTokenizer`` pre-tokenizer, decoder and no normalizer.

    Transformers applies this pipeline to every ``LlamaTokenizer`` checkpoint, also over the one a
    ``tokenizer.json`` stores (only its vocabulary, merges, added tokens and post-processor are kept).
    """
    add_prefix_space = True if add_prefix_space is None else bool(add_prefix_space)
    prepend_scheme = ("always" if legacy else "first") if add_prefix_space else "never"
    tokenizer.normalizer = None
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement=_SPACE, prepend_scheme=prepend_scheme, split=False
    )
    steps = [decoders.Replace(_SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_prefix_space:
        steps.append(decoders.Strip(content=" ", left=1, right=0))
    tokenizer.decoder = decoders.Sequence(steps)


def llama_from_tokenizer_json(
    path: str | os.PathLike, *, legacy: bool = False, add_prefix_space: bool | None = None
) -> Tokenizer:
    """A ``LlamaTokenizer``'s ``tokenizer.json`` loaded as Transformers 5 does: its BPE vocabulary and
    merges with byte fallback and no unknown token, then :func:`set_llama_pipeline`."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    model = data.get("model") or {}
    if model.get("type") != "BPE" or "ByteLevel" in json.dumps(
        [data.get("pre_tokenizer"), data.get("decoder")]
    ):
        return Tokenizer.from_str(json.dumps(data))  # not a SentencePiece-BPE export: keep it as stored
    model.update(
        unk_token=None,
        fuse_unk=True,
        byte_fallback=True,
        dropout=None,
        continuing_subword_prefix=None,
        end_of_word_suffix=None,
        ignore_merges=False,
    )
    tokenizer = Tokenizer.from_str(json.dumps(data))
    set_llama_pipeline(tokenizer, legacy=legacy, add_prefix_space=add_prefix_space)
    return tokenizer


def convert_mbart_sentencepiece(
    path: str | os.PathLike,
    *,
    language_codes: list[str],
    charsmap_normalizer: bool,
    special_tokens: tuple[str, str, str, str] = ("<s>", "<pad>", "</s>", "<unk>"),
    mask_token: str = "<mask>",
) -> Tokenizer:
    """mBART (``charsmap_normalizer=False``) or mBART-50 fast tokenizer from ``sentencepiece.bpe.model``.

    As Transformers 5 does, the pieces (with their scores) become a Unigram model in fairseq's layout:
    ``special_tokens`` (bos, pad, eos, unk) take ids 0-3, SentencePiece's own pieces follow from id 4
    (the fairseq offset of one), then ``language_codes`` and ``mask_token``. Added tokens are left to the
    tokenizer, which registers its special tokens.
    """
    proto = load_sentencepiece_proto(path)
    vocab = [(token, 0.0) for token in special_tokens]
    vocab += [(piece.piece, float(piece.score)) for piece in list(proto.pieces)[3:]]
    vocab += [(code, 0.0) for code in language_codes]
    vocab.append((mask_token, 0.0))
    tokenizer = Tokenizer(Unigram(vocab, unk_id=3, byte_fallback=False))
    if charsmap_normalizer:
        tokenizer.normalizer = _charsmap_normalizer(proto)
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement=_SPACE, prepend_scheme="always", split=True
        )
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.WhitespaceSplit(),
                pre_tokenizers.Metaspace(replacement=_SPACE, prepend_scheme="always", split=True),
            ]
        )
    tokenizer.decoder = decoders.Metaspace(replacement=_SPACE, prepend_scheme="always", split=True)
    return tokenizer


def convert_nllb_sentencepiece(
    path: str | os.PathLike,
    *,
    special_tokens: tuple[str, str, str, str] = ("<s>", "<pad>", "</s>", "<unk>"),
) -> Tokenizer:
    """NLLB fast tokenizer from ``sentencepiece.bpe.model`` (Transformers 5's ``NllbTokenizer``).

    BPE with ``special_tokens`` (bos, pad, eos, unk) at ids 0-3 and the other pieces after them in
    SentencePiece order, merges regenerated from SentencePiece's own ids; character-map normalizer and
    ``Metaspace``. Language codes and the mask token are added tokens, registered by the tokenizer.
    """
    proto = load_sentencepiece_proto(path)
    spm_vocab = {piece.piece: index for index, piece in enumerate(proto.pieces)}
    vocab = {token: index for index, token in enumerate(special_tokens)}
    for piece in spm_vocab:
        vocab.setdefault(piece, len(vocab))
    tokenizer = Tokenizer(
        BPE(
            vocab=vocab,
            merges=generate_merges(spm_vocab),
            unk_token=special_tokens[3],
            fuse_unk=True,
            byte_fallback=False,
            dropout=None,
        )
    )
    if proto.normalizer_spec.precompiled_charsmap:
        tokenizer.normalizer = _charsmap_normalizer(proto)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement=_SPACE, prepend_scheme="always", split=True
    )
    tokenizer.decoder = decoders.Metaspace(replacement=_SPACE, prepend_scheme="always", split=True)
    return tokenizer


def pegasus_offset_tokens(offset: int) -> list[str]:
    """Pegasus's pretraining placeholders ``<unk_2>`` ... ``<unk_{offset-1}>``."""
    return [f"<unk_{i}>" for i in range(2, int(offset))]


def convert_pegasus_sentencepiece(
    path: str | os.PathLike,
    *,
    pad_token: str = "<pad>",
    eos_token: str = "</s>",
    mask_token: str | None = "<mask_2>",
    mask_token_sent: str | None = "<mask_1>",
    offset: int = 103,
) -> Tokenizer:
    """Pegasus fast tokenizer from ``spiece.model``: a Unigram over ``pad``, ``eos``, ``mask_token_sent``,
    ``mask_token``, ``<unk_2>`` ... ``<unk_{offset-1}>`` then SentencePiece's pieces from its third one.

    The masks are in Transformers 4's order (``<mask_1>`` = 2, ``<mask_2>`` = 3, as the checkpoints'
    embeddings expect); character-map normalizer, ``Metaspace`` and ``$A </s>`` as Transformers 5.
    """
    proto = load_sentencepiece_proto(path)
    if proto.trainer_spec.model_type != _UNIGRAM:
        name = _MODEL_TYPE_NAMES.get(proto.trainer_spec.model_type, str(proto.trainer_spec.model_type))
        raise ValueError(f"{os.fspath(path)!r} is a SentencePiece {name} model; Pegasus needs a Unigram one.")
    offset = int(offset)
    if offset < 2:
        raise ValueError(f"Pegasus's offset must be >= 2, got {offset}.")
    vocab = [(pad_token, 0.0), (eos_token, 0.0)]
    for token in (mask_token_sent, mask_token):
        if token is not None and token not in {t for t, _ in vocab}:
            vocab.append((token, 0.0))
    vocab += [(token, -100.0) for token in pegasus_offset_tokens(offset)]
    first_piece = len(vocab)
    vocab += [(piece.piece, float(piece.score)) for piece in list(proto.pieces)[2:]]
    unk_id = proto.trainer_spec.unk_id - 2 + first_piece
    if not first_piece <= unk_id < len(vocab):
        raise ValueError(
            f"{os.fspath(path)!r} has an invalid unk_id {proto.trainer_spec.unk_id} for Pegasus."
        )
    tokenizer = Tokenizer(Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    steps: list[normalizers.Normalizer] = [normalizers.Replace(Regex(" {2,}"), " ")]
    if proto.normalizer_spec.precompiled_charsmap:
        steps.insert(0, normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap))
    else:
        steps.insert(0, normalizers.Replace(Regex(r"\n"), " "))
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement=_SPACE, prepend_scheme="always", split=True
    )
    tokenizer.decoder = decoders.Metaspace(replacement=_SPACE, prepend_scheme="always", split=True)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=["$A", eos_token], pair=["$A", "$B", eos_token], special_tokens=[(eos_token, 1)]
    )
    return tokenizer
