"""Tokenizers of checkpoints that ship SentencePiece files: Marian, mBART, mBART-50, NLLB, Llama / Mistral.

Small real SentencePiece models are trained here on English/German text, put in directories the way
the hub repositories ship them (no ``tokenizer.json``) and the way Transformers 5's ``save_pretrained``
writes them, and xlagen's ``AutoTokenizer`` must agree with Transformers' ``AutoTokenizer`` on ids,
``text_target`` labels, padded batches, decoding and special tokens.
BlenderbotSmall's ``vocab.json`` + ``merges.txt`` (a Python tokenizer in Transformers 5) are checked the same way.
"""

from __future__ import annotations

import copy
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest

from xlagen.tokenization import (
    AutoTokenizer,
    LlamaTokenizer,
    M2M100Tokenizer,
    MarianTokenizer,
    MBart50Tokenizer,
    MBartTokenizer,
    NllbTokenizer,
    PegasusTokenizer,
)
from xlagen.tokenization.sentencepiece import M2M100_LANGUAGE_CODES, NLLB_LANGUAGE_CODES

spm = pytest.importorskip("sentencepiece")
transformers = pytest.importorskip("transformers")

ENGLISH = [
    "TensorFlow is an end-to-end open source platform for machine learning.",
    "The quick brown fox jumps over the lazy dog. Hello world!",
    "Numbers like 3.14159, 2024 and 1,000,000 appear in reports every quarter.",
    "She sells sea shells by the sea shore; isn't it nice? Yes!",
    "Café naïve façade, résumé: 100% of €5 😀 emojis 🚀.",
    "Where is the train station? How old are you?",
]
GERMAN = [
    "Die schnelle braune Füchsin springt über den faulen Hund.",
    "Maschinelles Lernen ist großartig, nicht wahr? Ja!",
    "Zahlen wie 3,14159 und 2024 erscheinen in Berichten. Straße, Äpfel, Öl.",
    "Wo ist der Bahnhof? Wie alt bist du? 😀",
    "Grüße aus München: Übermorgen regnet es wahrscheinlich.",
]
TEXTS = [
    "",
    " ",
    "Hello world!",
    "  Die  schnelle <mask> Füchsin 😀 springt ",
    "a </s> b",
    "x<unk>y<pad>z",
    "ja\nnein\tok",
    ">>de<< Hello 2",
    "Numbers 1,000,000 and 3.14",
    "Ünïcödé café naïve 日本語 ✓ ½ ﬁ",
    "Where is the train station? How old are you?",
    "zzqxj unknown-ish ∑ ☃",
]


def _train(prefix: Path, corpus: list[str], **options: Any) -> Path:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus * 20),
        model_prefix=str(prefix),
        hard_vocab_limit=False,
        character_coverage=1.0,
        minloglevel=2,
        **options,
    )
    Path(f"{prefix}.vocab").unlink()
    return Path(f"{prefix}.model")


def _write_config(directory: Path, config: dict[str, Any]) -> Path:
    (directory / "tokenizer_config.json").write_text(json.dumps(config), "utf-8")
    return directory


def _marian(directory: Path, separate_vocabs: bool = False) -> Path:
    directory.mkdir()
    vocabs = []
    for side, corpus in (("source", ENGLISH), ("target", GERMAN)):
        model = _train(
            directory / side,
            corpus,
            vocab_size=250,
            model_type="unigram",
            unk_id=1,
            eos_id=0,
            bos_id=-1,
            pad_id=-1,
        )
        model.rename(directory / f"{side}.spm")
        proto = spm.SentencePieceProcessor(model_file=str(directory / f"{side}.spm"))
        vocabs.append([proto.id_to_piece(i) for i in range(proto.get_piece_size())])
    pieces = list(dict.fromkeys(vocabs[0] + vocabs[1]))
    del pieces[40:43]  # pieces missing from vocab.json must become <unk>
    vocab = {piece: index for index, piece in enumerate(pieces)}
    vocab["<pad>"] = len(vocab)
    config = {"source_lang": "en", "target_lang": "de", "tokenizer_class": "MarianTokenizer"}
    if separate_vocabs:
        source = {p: i for i, p in enumerate(["</s>", "<unk>", *vocabs[0][2:], "<pad>"])}
        target = {p: i for i, p in enumerate(["</s>", "<unk>", *vocabs[1][2:], "<pad>"])}
        vocab = source
        (directory / "target_vocab.json").write_text(json.dumps(target, ensure_ascii=False), "utf-8")
        config["separate_vocabs"] = True
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), "utf-8")
    return _write_config(directory, config)


def _fairseq(directory: Path, tokenizer_class: str, config: dict[str, Any]) -> Path:
    directory.mkdir()
    _train(directory / "sentencepiece.bpe", ENGLISH + GERMAN, vocab_size=300, model_type="bpe")
    return _write_config(directory, {"tokenizer_class": tokenizer_class, "model_max_length": 1024, **config})


def _m2m100(directory: Path, config: dict[str, Any]) -> Path:
    """M2M100's files: ``sentencepiece.bpe.model`` and a fairseq ``vocab.json`` (``<s>``, ``<pad>``, ``</s>``,
    ``<unk>``, then the pieces); the ``__xx__`` language tokens are not in it."""
    directory.mkdir()
    model = _train(directory / "sentencepiece.bpe", ENGLISH + GERMAN, vocab_size=300, model_type="bpe")
    proto = spm.SentencePieceProcessor(model_file=str(model))
    pieces = [
        "<s>",
        "<pad>",
        "</s>",
        "<unk>",
        *(proto.id_to_piece(i) for i in range(3, proto.get_piece_size())),
    ]
    del pieces[50:52]  # pieces missing from vocab.json must become <unk>
    vocab = {piece: index for index, piece in enumerate(pieces)}
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), "utf-8")
    return _write_config(directory, {"tokenizer_class": "M2M100Tokenizer", **config})


# As facebook/m2m100_* ship them: every language token listed, in id order (they are then special).
M2M100_HUB_CONFIG = {
    "src_lang": "en",
    "tgt_lang": "de",
    "model_max_length": 1024,
    "additional_special_tokens": [f"__{code}__" for code in M2M100_LANGUAGE_CODES["m2m100"]],
}


def _llama(directory: Path, config: dict[str, Any]) -> Path:
    directory.mkdir()
    _train(directory / "tokenizer", ENGLISH + GERMAN, vocab_size=400, model_type="bpe", byte_fallback=True)
    base = {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
    }
    return _write_config(directory, {**base, **config})


def _pegasus(directory: Path, config: dict[str, Any]) -> Path:
    """Pegasus's SentencePiece layout: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2 (no ``<s>``)."""
    directory.mkdir()
    _train(
        directory / "spiece",
        ENGLISH + GERMAN,
        vocab_size=300,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
    )
    return _write_config(directory, {"tokenizer_class": "PegasusTokenizer", **config})


# Pegasus as google/pegasus-* ship it (the masks named, the placeholders listed).
PEGASUS_HUB_CONFIG = {
    "mask_token": "<mask_2>",
    "mask_token_sent": "<mask_1>",
    "offset": 103,
    "model_max_length": 512,
    "additional_special_tokens": ["<mask_1>", *(f"<unk_{i}>" for i in range(2, 103))],
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Hub-style directories (SentencePiece files only) and their Transformers 5 ``save_pretrained`` copies."""
    root = tmp_path_factory.mktemp("seq2seq_tokenizers")
    dirs = {
        "marian": _marian(root / "marian"),
        "marian_separate": _marian(root / "marian_separate", separate_vocabs=True),
        "mbart": _fairseq(root / "mbart", "MBartTokenizer", {"src_lang": "en_XX", "tgt_lang": "ro_RO"}),
        "mbart50": _fairseq(root / "mbart50", "MBart50Tokenizer", {"src_lang": "en_XX", "tgt_lang": "de_DE"}),
        "nllb": _fairseq(
            root / "nllb",
            "NllbTokenizer",
            {
                "src_lang": "eng_Latn",
                "tgt_lang": "deu_Latn",
                "additional_special_tokens": NLLB_LANGUAGE_CODES,
            },
        ),
        "pegasus": _pegasus(root / "pegasus", {}),
        "pegasus_hub": _pegasus(root / "pegasus_hub", PEGASUS_HUB_CONFIG),
        "m2m100": _m2m100(root / "m2m100", M2M100_HUB_CONFIG),
        "m2m100_bare": _m2m100(root / "m2m100_bare", {"src_lang": "fr", "tgt_lang": "en"}),
        "llama": _llama(root / "llama", {"add_bos_token": True, "add_eos_token": False, "legacy": False}),
        "llama_legacy": _llama(
            root / "llama_legacy", {"add_bos_token": True, "add_eos_token": True, "legacy": True}
        ),
        "llama_no_prefix": _llama(
            root / "llama_no_prefix", {"add_bos_token": True, "add_prefix_space": False}
        ),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in (
            "marian",
            "mbart",
            "mbart50",
            "nllb",
            "llama",
            "llama_legacy",
            "pegasus",
            "pegasus_hub",
            "m2m100",
        ):
            saved = root / f"{name}_saved"
            transformers.AutoTokenizer.from_pretrained(dirs[name]).save_pretrained(saved)
            dirs[f"{name}_saved"] = saved
    return dirs


def _load_both(path: Path, **kwargs: Any) -> tuple[Any, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoTokenizer.from_pretrained(path, **kwargs), transformers.AutoTokenizer.from_pretrained(
            path, **kwargs
        )


ALL = [
    "marian",
    "marian_separate",
    "mbart",
    "mbart50",
    "nllb",
    "llama",
    "llama_legacy",
    "llama_no_prefix",
    "pegasus",
    "m2m100",
    "m2m100_bare",
    "marian_saved",
    "mbart_saved",
    "mbart50_saved",
    "nllb_saved",
    "llama_saved",
    "llama_legacy_saved",
    "pegasus_saved",
    "pegasus_hub_saved",
    "m2m100_saved",
]
CLASSES = {
    "marian": MarianTokenizer,
    "mbart": MBartTokenizer,
    "mbart50": MBart50Tokenizer,
    "nllb": NllbTokenizer,
    "llama": LlamaTokenizer,
    "pegasus": PegasusTokenizer,
    "m2m100": M2M100Tokenizer,
}


@pytest.mark.parametrize("name", ALL)
def test_matches_transformers(checkpoints: dict[str, Path], name: str) -> None:
    ours, theirs = _load_both(checkpoints[name])
    family = name.split("_")[0]
    assert isinstance(ours, CLASSES[family]) and type(ours).__name__ == type(theirs).__name__
    assert ours.special_tokens_map == theirs.special_tokens_map
    assert sorted(ours.all_special_tokens) == sorted(theirs.all_special_tokens)
    assert (ours.vocab_size, len(ours), ours.padding_side) == (
        theirs.vocab_size,
        len(theirs),
        theirs.padding_side,
    )
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id", "mask_token_id"):
        assert getattr(ours, attr) == getattr(theirs, attr, None), attr
    for text in TEXTS:
        expected = theirs(text)
        assert ours(text).input_ids == expected.input_ids, text
        assert ours(text_target=text).input_ids == theirs(text_target=text).input_ids, text
        # With separate vocabularies Transformers decodes with the target side only (source ids may not exist).
        decodable = [theirs(text_target=text).input_ids]
        if name != "marian_separate":
            decodable.append(expected.input_ids)
        for ids in decodable:
            for skip in (False, True):
                assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(
                    ids, skip_special_tokens=skip
                )
        if family != "nllb" or name == "nllb_saved":
            assert ours.tokenize(text) == theirs.tokenize(text), text
    assert ours.convert_ids_to_tokens(list(range(12))) == theirs.convert_ids_to_tokens(list(range(12)))
    assert ours("Hello", "world").input_ids == theirs("Hello", "world").input_ids


@pytest.mark.parametrize(
    "name", ["marian", "mbart", "mbart50", "nllb", "llama", "pegasus", "m2m100", "marian_saved", "nllb_saved"]
)
def test_padded_batches_and_labels_match_transformers(checkpoints: dict[str, Path], name: str) -> None:
    kwargs = {"pad_token": "</s>"} if name.startswith("llama") else {}
    ours, theirs = _load_both(checkpoints[name], **kwargs)
    sources, targets = TEXTS[2:6], TEXTS[6:10]
    for options in ({"padding": True}, {"padding": "max_length", "max_length": 24, "truncation": True}):
        got = ours(sources, text_target=targets, **options)
        want = theirs(sources, text_target=targets, **options)
        assert dict(got) == dict(want), options
        assert ours.batch_decode(got["labels"], skip_special_tokens=True) == theirs.batch_decode(
            want["labels"], skip_special_tokens=True
        )
    got = ours(sources, padding=True, return_tensors="np")
    assert got["input_ids"].tolist() == theirs(sources, padding=True)["input_ids"]


@pytest.mark.parametrize("name", ["mbart", "mbart50", "nllb"])
def test_language_codes(checkpoints: dict[str, Path], name: str) -> None:
    codes = {"mbart": ("de_DE", "fr_XX"), "mbart50": ("fr_XX", "uk_UA"), "nllb": ("fra_Latn", "ukr_Cyrl")}[
        name
    ]
    ours, theirs = _load_both(checkpoints[name], src_lang=codes[0], tgt_lang=codes[1])
    assert ours("Hello").input_ids == theirs("Hello").input_ids
    assert ours(text_target="Hallo").input_ids == theirs(text_target="Hallo").input_ids
    ours.src_lang = theirs.src_lang = codes[1]
    assert dict(ours("Hello", text_target="Hi")) == dict(theirs("Hello", text_target="Hi"))
    assert ours.lang_code_to_id[codes[0]] == theirs.convert_tokens_to_ids(codes[0])
    with pytest.raises(ValueError, match="xx_YY"):
        ours.src_lang = "xx_YY"
    assert ours.src_lang == codes[1]  # unchanged after the error
    with pytest.raises(ValueError, match="zz_ZZ"):
        AutoTokenizer.from_pretrained(checkpoints[name], tgt_lang="zz_ZZ")("a", text_target="b")


def test_nllb_legacy_behaviour(checkpoints: dict[str, Path]) -> None:
    ours, theirs = _load_both(checkpoints["nllb"], legacy_behaviour=True)
    assert ours("Hello world").input_ids == theirs("Hello world").input_ids
    assert ours("Hello world").input_ids[-2:] == [ours.eos_token_id, ours.convert_tokens_to_ids("eng_Latn")]


def test_marian_specifics(checkpoints: dict[str, Path]) -> None:
    ours = AutoTokenizer.from_pretrained(checkpoints["marian"])
    assert isinstance(ours, MarianTokenizer) and ours.num_special_tokens_to_add() == 1
    ids = ours("Hello").input_ids
    assert ids[-1] == ours.eos_token_id
    # Source and target SentencePiece models segment differently.
    assert ours.tokenize("Die schnelle Füchsin") != ours(text_target="Die schnelle Füchsin").input_ids
    clone = copy.deepcopy(ours)
    assert dict(clone("Hello", text_target="Hallo")) == dict(ours("Hello", text_target="Hallo"))


def test_llama_defaults_and_pipeline(checkpoints: dict[str, Path]) -> None:
    ours, theirs = _load_both(checkpoints["llama"])
    assert ours.padding_side == "left" and ours.add_bos_token and not ours.add_eos_token
    text = "emoji 😀 byte fallback \x07 ✓"
    assert ours(text).input_ids == theirs(text).input_ids
    assert ours.decode(ours(text).input_ids, skip_special_tokens=True) == theirs.decode(
        theirs(text).input_ids, skip_special_tokens=True
    )
    ours.add_eos_token = True
    assert ours("a").input_ids[-1] == ours.eos_token_id


def test_missing_files_raise(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    marian = tmp_path / "marian"
    shutil.copytree(checkpoints["marian"], marian)
    (marian / "target.spm").unlink()
    with pytest.raises(ValueError, match=r"target\.spm"):
        AutoTokenizer.from_pretrained(marian)
    (marian / "vocab.json").unlink()
    with pytest.raises(ValueError, match=r"vocab\.json"):
        AutoTokenizer.from_pretrained(marian)
    (tmp_path / "nllb").mkdir()
    nllb = _write_config(tmp_path / "nllb", {"tokenizer_class": "NllbTokenizer"})
    with pytest.raises(ValueError, match=r"sentencepiece\.bpe\.model"):
        AutoTokenizer.from_pretrained(nllb)
    corrupt = tmp_path / "llama"
    corrupt.mkdir()
    (corrupt / "tokenizer.model").write_bytes(b"\x00\x01garbage")
    _write_config(corrupt, {"tokenizer_class": "LlamaTokenizer"})
    with pytest.raises(ValueError, match="SentencePiece model"):
        AutoTokenizer.from_pretrained(corrupt)


def test_byte_level_bpe_tokenizer_json_still_loads(tmp_path: Path) -> None:
    """Llama 3 / Qwen style: a tokenizer.json byte-level BPE needs no SentencePiece conversion."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(ENGLISH + GERMAN, trainer)
    backend.save(str(tmp_path / "tokenizer.json"))
    _write_config(
        tmp_path,
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<|end_of_text|>",
        },
    )
    ours, theirs = _load_both(tmp_path)
    for text in TEXTS:
        assert ours(text).input_ids == theirs(text).input_ids
        assert ours.decode(ours(text).input_ids) == theirs.decode(theirs(text).input_ids)


@pytest.mark.parametrize("options", [{}, {"add_prefix_space": True}])
def test_bart_vocab_merges_match_transformers(tmp_path: Path, options: dict[str, Any]) -> None:
    """BART / RoBERTa ship vocab.json + merges.txt: byte-level BPE framed as ``<s> ... </s>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(ENGLISH + GERMAN, trainer)
    backend.model.save(str(tmp_path))
    _write_config(tmp_path, {"tokenizer_class": "BartTokenizer"})
    ours, theirs = _load_both(tmp_path, **options)
    assert ours.special_tokens_map == theirs.special_tokens_map and len(ours) == len(theirs)
    for text in TEXTS:
        assert ours(text).input_ids == theirs(text).input_ids, text
        for skip in (False, True):
            ids = theirs(text).input_ids
            assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)
    assert ours("Hello", "world").input_ids == theirs("Hello", "world").input_ids
    assert dict(ours(TEXTS[2:6], padding=True)) == dict(theirs(TEXTS[2:6], padding=True))


def test_pegasus_hub_config(checkpoints: dict[str, Path]) -> None:
    """Hub Pegasus configs name both masks; Transformers 5 then swaps them in its vocabulary.

    Transformers 5's ``PegasusConverter.convert_from_spm`` lists ``mask_token`` before ``mask_token_sent``,
    so with ``mask_token="<mask_2>"`` it gives ``<mask_2>`` id 2 and ``<mask_1>`` id 3 (without the entries
    its swapped defaults cancel out). Pegasus checkpoints were trained with ``<mask_1>`` = 2 and
    ``<mask_2>`` = 3 (Transformers 4's ``PegasusTokenizer(Fast)``), which xlagen keeps; everything else
    matches Transformers 5, and its saved ``tokenizer.json`` loads as it stores.
    """
    ours, theirs = _load_both(checkpoints["pegasus_hub"])
    assert isinstance(ours, PegasusTokenizer) and ours.model_max_length == 512
    assert ours.convert_tokens_to_ids(["<mask_1>", "<mask_2>"]) == [2, 3]
    assert theirs.convert_tokens_to_ids(["<mask_1>", "<mask_2>"]) == [3, 2]  # the Transformers 5 swap
    assert ours.mask_token == theirs.mask_token == "<mask_2>" and ours.mask_token_id == 3
    assert ours.special_tokens_map == theirs.special_tokens_map
    assert sorted(ours.all_special_tokens) == sorted(theirs.all_special_tokens)
    assert (ours.vocab_size, len(ours), ours.unk_token_id) == (theirs.vocab_size, len(theirs), 105)
    swap = {2: 3, 3: 2}
    for text in [*TEXTS, "Summary: <mask_1> and <mask_2> <unk_7>."]:
        expected = [swap.get(i, i) for i in theirs(text).input_ids]
        assert ours(text).input_ids == expected, text
        for skip in (False, True):
            assert ours.decode(expected, skip_special_tokens=skip) == theirs.decode(
                theirs(text).input_ids, skip_special_tokens=skip
            )
    assert ours.convert_ids_to_tokens([0, 1, 4, 104, 105]) == [
        "<pad>",
        "</s>",
        "<unk_2>",
        "<unk_102>",
        "<unk>",
    ]


def test_pegasus_model_type_and_errors(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(checkpoints["pegasus"] / "spiece.model", bare)
    (bare / "config.json").write_text(json.dumps({"model_type": "pegasus"}))
    ours, theirs = _load_both(bare)
    assert isinstance(ours, PegasusTokenizer)
    assert ours(TEXTS[3]).input_ids == theirs(TEXTS[3]).input_ids
    (bare / "spiece.model").unlink()
    _write_config(bare, {"tokenizer_class": "PegasusTokenizer"})
    with pytest.raises(ValueError, match=r"pegasus.*spiece\.model"):
        AutoTokenizer.from_pretrained(bare)


def test_m2m100_languages_and_errors(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    ours, theirs = _load_both(checkpoints["m2m100"], src_lang="fr", tgt_lang="uk")
    assert ours("Hello").input_ids == theirs("Hello").input_ids
    assert dict(ours("Hello", text_target="Hallo")) == dict(theirs("Hello", text_target="Hallo"))
    assert ours.get_lang_id("de") == theirs.get_lang_id("de") == ours.vocab_size + 16
    assert ours.lang_code_to_id == theirs.lang_code_to_id and ours.get_lang_token("de") == "__de__"
    assert ours.num_special_tokens_to_add() == 2
    ours.src_lang = theirs.src_lang = "zu"
    assert ours("a b").input_ids == theirs("a b").input_ids
    with pytest.raises(ValueError, match="'xx'"):
        ours.src_lang = "xx"
    assert ours.src_lang == "zu"  # unchanged after the error
    with pytest.raises(ValueError, match="'zz'"):
        AutoTokenizer.from_pretrained(checkpoints["m2m100"], tgt_lang="zz")("a", text_target="b")
    with pytest.raises(ValueError, match="tgt_lang"):
        AutoTokenizer.from_pretrained(checkpoints["m2m100"], tgt_lang=None)("a", text_target="b")
    ours, theirs = _load_both(checkpoints["m2m100"], language_codes="wmt21", src_lang="is", tgt_lang="ja")
    assert dict(ours("Hello", text_target="Hallo")) == dict(theirs("Hello", text_target="Hallo"))
    with pytest.raises(ValueError, match="language_codes"):
        AutoTokenizer.from_pretrained(checkpoints["m2m100"], language_codes="m2m200")
    broken = tmp_path / "m2m100"
    shutil.copytree(checkpoints["m2m100"], broken)
    (broken / "vocab.json").unlink()
    with pytest.raises(ValueError, match=r"vocab\.json"):
        AutoTokenizer.from_pretrained(broken)
    (broken / "sentencepiece.bpe.model").unlink()
    with pytest.raises(ValueError, match=r"sentencepiece\.bpe\.model"):
        AutoTokenizer.from_pretrained(broken)


def test_blenderbot_vocab_merges(tmp_path: Path) -> None:
    """Blenderbot ships vocab.json + merges.txt: byte-level BPE with a prefix space, ``text </s>``.

    Transformers 5's ``BlenderbotTokenizer`` builds no post-processor from these files and so appends
    nothing; Transformers 4's appended ``</s>`` (its ``build_inputs_with_special_tokens``), which the
    models were trained with and xlagen keeps. A Transformers 5 ``save_pretrained`` copy (tokenizer.json)
    loads exactly as Transformers 5 loads it.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from xlagen.tokenization import BlenderbotTokenizer

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(ENGLISH + GERMAN, trainer)
    hub = tmp_path / "hub"
    hub.mkdir()
    backend.model.save(str(hub))
    _write_config(hub, {"tokenizer_class": "BlenderbotTokenizer"})
    ours, theirs = _load_both(hub)
    assert isinstance(ours, BlenderbotTokenizer) and type(theirs).__name__ == "BlenderbotTokenizer"
    assert ours.special_tokens_map == theirs.special_tokens_map and len(ours) == len(theirs)
    eos = ours.eos_token_id
    for text in TEXTS:
        assert ours(text).input_ids == [*theirs(text).input_ids, eos], text
        assert ours.tokenize(text) == theirs.tokenize(text), text
        for skip in (False, True):
            ids = [*theirs(text).input_ids, eos]
            assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)
    assert ours("Hello", "world").input_ids == [*theirs("Hello", "world").input_ids, eos]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.save_pretrained(tmp_path / "saved")
    ours, theirs = _load_both(tmp_path / "saved")
    assert isinstance(ours, BlenderbotTokenizer)
    for text in TEXTS:
        assert ours(text).input_ids == theirs(text).input_ids, text
    assert dict(ours(TEXTS[2:6], padding=True)) == dict(theirs(TEXTS[2:6], padding=True))
    (hub / "merges.txt").unlink()
    with pytest.raises((OSError, ValueError), match=r"merges\.txt"):
        AutoTokenizer.from_pretrained(hub)


# --------------------------------------------------------------------------------------------------
# BlenderbotSmall: vocab.json + merges.txt, a slow (Python) tokenizer in Transformers 5
# --------------------------------------------------------------------------------------------------

BLENDERBOT_SMALL_TEXTS = [
    *TEXTS,
    "  Hello   WORLD.\nI don't know (really)?",
    "x'\ny __newln__ z\n\n end\n",
    "__END__ __start__ a__end__b (a)(b)!! __null__",
    "\x1cab\x1c cd\u2003ef\u00a0gh",  # regex's \s (not U+001C) splits words, as in Transformers
    "ΣΑΣ İstanbul ÄPFEL",
]


def _blenderbot_small(directory: Path, config: dict[str, Any] | None) -> Path:
    """Blenderbot-90M's files: ``merges.txt`` over characters with ``</w>`` word ends, and ``vocab.json``
    with ``__null__``, ``__start__``, ``__end__``, ``__unk__``, ``__newln__`` first, then the pieces
    (``@@`` ending the non-final ones). A few pieces are left out so that they become ``__unk__``."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    directory.mkdir()
    backend = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(r"[.,!?()']"), "isolated")]
    )
    trainer = trainers.BpeTrainer(vocab_size=350, end_of_word_suffix="</w>", show_progress=False)
    backend.train_from_iterator([*ENGLISH, *GERMAN, "__newln__ " * 3] * 5, trainer)
    backend.model.save(str(directory))
    trained = json.loads((directory / "vocab.json").read_text("utf-8"))
    pieces = ["__null__", "__start__", "__end__", "__unk__", "__newln__"]
    for piece, _ in sorted(trained.items(), key=lambda kv: kv[1]):
        pieces.append(piece.removesuffix("</w>") if piece.endswith("</w>") else piece + "@@")
    pieces = list(dict.fromkeys(pieces))
    del pieces[60:63]
    vocab = {piece: index for index, piece in enumerate(pieces)}
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), "utf-8")
    if config is None:  # no tokenizer config: model_type decides
        (directory / "config.json").write_text(json.dumps({"model_type": "blenderbot-small"}), "utf-8")
        return directory
    return _write_config(directory, config)


@pytest.fixture(scope="module")
def blenderbot_small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A hub-style BlenderbotSmall directory (as facebook/blenderbot_small-90M), one known by its
    ``model_type`` only, and the Transformers 5 ``save_pretrained`` copy."""
    root = tmp_path_factory.mktemp("blenderbot_small")
    hub_config = {
        "tokenizer_class": "BlenderbotSmallTokenizer",
        "bos_token": "__start__",
        "eos_token": "__end__",
        "unk_token": "__unk__",
        "pad_token": "__null__",
        "model_max_length": 512,
    }
    dirs = {
        "hub": _blenderbot_small(root / "hub", hub_config),
        "model_type": _blenderbot_small(root / "model_type", None),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformers.AutoTokenizer.from_pretrained(dirs["hub"]).save_pretrained(root / "saved")
    dirs["saved"] = root / "saved"
    return dirs


@pytest.mark.parametrize("name", ["hub", "model_type", "saved"])
def test_blenderbot_small_matches_transformers(blenderbot_small: dict[str, Path], name: str) -> None:
    from xlagen.tokenization import BlenderbotSmallTokenizer

    ours, theirs = _load_both(blenderbot_small[name])
    assert isinstance(ours, BlenderbotSmallTokenizer) and type(theirs).__name__ == "BlenderbotSmallTokenizer"
    assert ours.special_tokens_map == theirs.special_tokens_map
    assert sorted(ours.all_special_tokens) == sorted(theirs.all_special_tokens)
    assert (ours.vocab_size, len(ours), ours.padding_side, ours.model_max_length) == (
        theirs.vocab_size,
        len(theirs),
        theirs.padding_side,
        theirs.model_max_length,
    )
    assert ours.get_vocab() == theirs.get_vocab()
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id", "mask_token_id"):
        assert getattr(ours, attr) == getattr(theirs, attr, None), attr
    for text in BLENDERBOT_SMALL_TEXTS:
        expected = theirs(text).input_ids
        assert ours(text).input_ids == expected, text
        assert ours.tokenize(text) == theirs.tokenize(text), text
        assert ours(text_target=text).input_ids == theirs(text_target=text).input_ids, text
        for skip in (False, True):
            assert ours.decode(expected, skip_special_tokens=skip) == theirs.decode(
                expected, skip_special_tokens=skip
            ), text
    assert theirs("Hello world!").input_ids[-1] != theirs.eos_token_id  # no special tokens are added
    assert ours("Hello", "world").input_ids == theirs("Hello", "world").input_ids
    ids = [0, 1, 5, 61, len(theirs) + 10]
    assert ours.convert_ids_to_tokens(ids) == theirs.convert_ids_to_tokens(ids)
    tokens = ["Hello", "hello", "__end__", "TH@@", "zzz", "__newln__"]
    assert ours.convert_tokens_to_ids(tokens) == theirs.convert_tokens_to_ids(tokens)
    sources, targets = BLENDERBOT_SMALL_TEXTS[2:6], BLENDERBOT_SMALL_TEXTS[12:16]
    for options in ({"padding": True}, {"padding": "max_length", "max_length": 24, "truncation": True}):
        got = ours(sources, text_target=targets, **options)
        want = theirs(sources, text_target=targets, **options)
        assert dict(got) == dict(want), options
        assert ours.batch_decode(got["labels"], skip_special_tokens=True) == theirs.batch_decode(
            want["labels"], skip_special_tokens=True
        )
    pairs = dict(ours(sources, targets, padding=True, truncation=True, max_length=12))
    assert pairs == dict(theirs(sources, targets, padding=True, truncation=True, max_length=12))


def test_blenderbot_small_save_and_errors(blenderbot_small: dict[str, Path], tmp_path: Path) -> None:
    ours = AutoTokenizer.from_pretrained(blenderbot_small["hub"])
    clone = copy.deepcopy(ours)
    assert clone(TEXTS[3]).input_ids == ours(TEXTS[3]).input_ids
    ours.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved" / "tokenizer.json").exists()
    again, theirs = _load_both(tmp_path / "saved")
    assert type(again) is type(ours) and type(theirs).__name__ == "BlenderbotSmallTokenizer"
    assert again.special_tokens_map == theirs.special_tokens_map == ours.special_tokens_map
    for text in BLENDERBOT_SMALL_TEXTS:
        assert again(text).input_ids == theirs(text).input_ids == ours(text).input_ids, text
    broken = tmp_path / "broken"
    shutil.copytree(blenderbot_small["hub"], broken)
    (broken / "merges.txt").unlink()
    with pytest.raises(ValueError, match=r"merges\.txt"):
        AutoTokenizer.from_pretrained(broken)
    (broken / "vocab.json").unlink()
    with pytest.raises(ValueError, match=r"vocab\.json"):
        AutoTokenizer.from_pretrained(broken)
    with pytest.raises(ValueError, match="xx"):
        AutoTokenizer.from_pretrained(blenderbot_small["hub"], unk_token="xx")
