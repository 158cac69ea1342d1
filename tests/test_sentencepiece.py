"""Loading a T5 ``spiece.model`` without ``tokenizer.json`` (xlagen.tokenization.sentencepiece).

A tiny Unigram SentencePiece model is trained here with T5's special-token layout, put in a directory
the way T5 checkpoints ship it (``spiece.model`` + ``tokenizer_config.json``, no ``tokenizer.json``),
and xlagen must agree with ``transformers.T5TokenizerFast``, which converts the same file itself.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest

from xlagen.tokenization import AutoTokenizer
from xlagen.tokenization.sentencepiece import convert_t5_sentencepiece

spm = pytest.importorskip("sentencepiece")

CORPUS = [
    "TensorFlow is an end-to-end open source platform for machine learning.",
    "The quick brown fox jumps over the lazy dog. Hello world!",
    "Ünïcödé café naïve façade 日本語 and more text 12345 67.89",
    "XLA compiles TensorFlow graphs into efficient kernels, isn't it?",
    "Machine translation models learn to map sentences between languages using attention.",
    "Summarize: the weather today is sunny with a chance of rain in the evening.",
    "Numbers like 3.14159, 2024 and 1,000,000 appear in financial reports every quarter.",
    "She sells sea shells by the sea shore; peter piper picked a peck of pickled peppers.",
    "Translate English to German: How old are you? Where is the train station?",
    "Gradient descent updates parameters by following the negative gradient of the loss.",
    "Les élèves étudient à l'école pendant que les professeurs préparent leurs leçons.",
    "Running, jumping, swimming and climbing are popular outdoor activities for children.",
] * 20

TEXTS = [
    "",
    " ",
    "Hello world!",
    "translate English to German: The house is wonderful.",
    "  leading and trailing spaces  ",
    "extra    spaces   inside",
    "tabs\tand\nnewlines\r\nhere",
    "Ünïcödé café naïve façade 日本語 🙂 Ｆｕｌｌｗｉｄｔｈ ＡＢＣ ﬁ ½",
    "Numbers: 3.14159, 2024, 1,000,000 and -42",
    "The <extra_id_0> walks in <extra_id_1> park",
    "<extra_id_0>",
    "<extra_id_0><extra_id_1> x",
    "word<extra_id_99>word",
    "text with </s> inside and <pad> too <unk>",
    "zzqxj unknown-ish ✓ ∑ ☃",
    "The quick brown fox jumps over the lazy dog. " * 3,
]

T5_CONFIG = {
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "extra_ids": 100,
    "additional_special_tokens": [f"<extra_id_{i}>" for i in range(100)],
    "model_max_length": 512,
    "tokenizer_class": "T5Tokenizer",
}


def _train(directory: Path, model_type: str = "unigram", **options: Any) -> Path:
    prefix = directory / f"sp_{model_type}"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS),
        model_prefix=str(prefix),
        vocab_size=300,
        hard_vocab_limit=False,
        model_type=model_type,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        minloglevel=2,
        **options,
    )
    return prefix.with_suffix(".model")


@pytest.fixture(scope="module")
def spiece_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("spm"))


def _t5_dir(path: Path, model: Path, config: dict[str, Any] | None) -> Path:
    path.mkdir()
    shutil.copy(model, path / "spiece.model")
    if config is not None:
        (path / "tokenizer_config.json").write_text(json.dumps(config))
    assert not (path / "tokenizer.json").exists()
    return path


def _load_both(path: Path, **kwargs: Any) -> tuple[Any, Any]:
    import transformers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = transformers.T5TokenizerFast.from_pretrained(str(path), **kwargs)
    ours = AutoTokenizer.from_pretrained(path, **kwargs)
    assert not (path / "tokenizer.json").exists()
    return ours, theirs


CONFIGS = {
    "t5_config": T5_CONFIG,
    "no_config": None,
    "extra_ids_7": {"extra_ids": 7, "tokenizer_class": "T5TokenizerFast"},
}


@pytest.mark.parametrize("config_name", list(CONFIGS))
def test_spiece_matches_transformers(tmp_path: Path, spiece_model: Path, config_name: str) -> None:
    ours, theirs = _load_both(_t5_dir(tmp_path / "t5", spiece_model, CONFIGS[config_name]))

    assert len(ours) == len(theirs)
    assert ours.vocab_size == theirs.vocab_size
    assert ours.get_vocab() == theirs.get_vocab()
    assert (ours.eos_token, ours.unk_token, ours.pad_token) == ("</s>", "<unk>", "<pad>")
    assert (ours.eos_token_id, ours.unk_token_id, ours.pad_token_id) == (
        theirs.eos_token_id,
        theirs.unk_token_id,
        theirs.pad_token_id,
    )
    assert set(ours.all_special_tokens) == set(theirs.all_special_tokens)
    extra_ids = (CONFIGS[config_name] or {}).get("extra_ids", 100)
    sentinel_ids = ours.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(extra_ids)])
    assert sentinel_ids == list(range(len(ours) - 1, len(ours) - 1 - extra_ids, -1))
    assert sentinel_ids == theirs.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(extra_ids)])

    for text in TEXTS:
        mine, ref = ours(text), theirs(text)
        assert mine["input_ids"] == ref["input_ids"], text
        assert mine["attention_mask"] == ref["attention_mask"], text
        assert ours.tokenize(text) == theirs.tokenize(text), text
        ids = mine["input_ids"]
        assert ours.decode(ids) == theirs.decode(ids), text
        assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True), (
            text
        )

    for kwargs in ({"padding": True}, {"padding": "max_length", "max_length": 40, "truncation": True}):
        mine, ref = ours(TEXTS, **kwargs), theirs(TEXTS, **kwargs)
        assert mine["input_ids"] == ref["input_ids"]
        assert mine["attention_mask"] == ref["attention_mask"]
        assert ours.batch_decode(mine["input_ids"], skip_special_tokens=True) == theirs.batch_decode(
            ref["input_ids"], skip_special_tokens=True
        )
        assert ours.batch_decode(mine["input_ids"]) == theirs.batch_decode(ref["input_ids"])
    pair_ours = ours("question: where?", "context: here.")
    pair_theirs = theirs("question: where?", "context: here.")
    assert pair_ours["input_ids"] == pair_theirs["input_ids"]
    assert pair_ours["input_ids"][-1] == ours.eos_token_id


def test_spiece_load_kwargs(tmp_path: Path, spiece_model: Path) -> None:
    ours, theirs = _load_both(
        _t5_dir(tmp_path / "t5", spiece_model, T5_CONFIG), padding_side="left", model_max_length=8
    )
    assert ours.padding_side == "left" and ours.model_max_length == 8
    for kwargs in ({"padding": True}, {"padding": True, "truncation": True}):
        mine, ref = ours(TEXTS, **kwargs), theirs(TEXTS, **kwargs)
        assert mine["input_ids"] == ref["input_ids"]
        assert mine["attention_mask"] == ref["attention_mask"]
    assert ours("Hello", return_tensors="tf")["input_ids"].shape[0] == 1


def test_spiece_legacy_false_prepends_only_first_chunk(spiece_model: Path) -> None:
    legacy = convert_t5_sentencepiece(spiece_model, extra_ids=2)
    first = convert_t5_sentencepiece(spiece_model, extra_ids=2, legacy=False)
    text = "Hello<extra_id_0>world"
    assert legacy.encode(text).tokens[-4:] == ["▁w", "or", "ld", "</s>"]
    assert first.encode(text).tokens[-4:] == ["w", "or", "ld", "</s>"]
    assert legacy.encode("Hello world").ids == first.encode("Hello world").ids


def test_bpe_spiece_is_rejected(tmp_path: Path) -> None:
    model = _train(tmp_path, model_type="bpe")
    with pytest.raises(ValueError, match="BPE"):
        convert_t5_sentencepiece(model)
    path = _t5_dir(tmp_path / "bpe", model, {"tokenizer_class": "T5Tokenizer"})
    with pytest.raises(ValueError, match=r"SentencePiece BPE model.*Unigram"):
        AutoTokenizer.from_pretrained(path)


def test_spiece_errors(tmp_path: Path, spiece_model: Path) -> None:
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "spiece.model").write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match="SentencePiece model"):
        AutoTokenizer.from_pretrained(corrupt)
    # Other models that ship a spiece.model post-process differently: still ask for a tokenizer.json.
    albert = _t5_dir(tmp_path / "albert", spiece_model, {"tokenizer_class": "AlbertTokenizer"})
    with pytest.raises(OSError, match=r"AlbertTokenizer.*tokenizer\.json"):
        AutoTokenizer.from_pretrained(albert)
    # Pegasus's spiece.model has its own conversion (tests/test_tokenization_seq2seq.py): </s> appended.
    pegasus = _t5_dir(tmp_path / "pegasus", spiece_model, None)
    (pegasus / "config.json").write_text(json.dumps({"model_type": "pegasus"}))
    pegasus_tok = AutoTokenizer.from_pretrained(pegasus)
    assert type(pegasus_tok).__name__ == "PegasusTokenizer"
    assert pegasus_tok.convert_ids_to_tokens([0, 1, 2, 3, 4]) == [
        "<pad>",
        "</s>",
        "<mask_1>",
        "<mask_2>",
        "<unk_2>",
    ]
    assert pegasus_tok("Hello").input_ids[-1] == 1
    t5 = _t5_dir(tmp_path / "t5", spiece_model, None)
    (t5 / "config.json").write_text(json.dumps({"model_type": "t5"}))
    assert AutoTokenizer.from_pretrained(t5)("Hello").input_ids[-1] == 1
