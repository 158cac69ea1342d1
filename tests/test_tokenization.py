"""xlagen.tokenization against Hugging Face Transformers' fast tokenizers on small local tokenizers.

Every tokenizer is trained here (tokenizers library, a few ms) and saved with Transformers, so the
files are what Transformers writes; xlagen and ``transformers.AutoTokenizer`` then load the same
directory with the same keyword arguments and must agree on ids, masks and decoded strings.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from xlagen.tokenization import AutoTokenizer, BatchEncoding, GPT2TokenizerFast, PreTrainedTokenizerFast

CORPUS = [
    "TensorFlow is an end-to-end open source platform for machine learning.",
    "The quick brown fox jumps over the lazy dog. Hello world!",
    "a b c d e f g h i j k l m n o p",
    "Ünïcödé café naïve façade 日本語 emojis 🙂 and more text",
    "XLA compiles TensorFlow graphs into efficient kernels, isn't it?",
    "  spaces   everywhere\tand\nnewlines  ",
] * 10

TEXTS = [
    "",
    "TensorFlow is",
    "a b c",
    "Hello world!",
    "  leading and trailing spaces  ",
    "Ünïcödé café naïve 日本語 🙂",
    "tabs\tand\nnewlines",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Hello , world . It 's isn't",
]

GPT2_EOS = "<|endoftext|>"


# --------------------------------------------------------------------------------------------------
# fixtures: realistic tokenizer directories written by Transformers
# --------------------------------------------------------------------------------------------------


def _train_byte_level_bpe(special_tokens: list[str], vocab_size: int = 400) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok


@pytest.fixture(scope="module")
def gpt2_tokenizer_object() -> Tokenizer:
    tok = _train_byte_level_bpe([GPT2_EOS])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory, gpt2_tokenizer_object: Tokenizer) -> Path:
    """GPT-2 style: byte-level BPE, <|endoftext|> as bos/eos/unk, no pad token, tokenizer.json."""
    import transformers

    path = tmp_path_factory.mktemp("gpt2")
    hf = transformers.GPT2TokenizerFast(
        tokenizer_object=gpt2_tokenizer_object,
        bos_token=GPT2_EOS,
        eos_token=GPT2_EOS,
        unk_token=GPT2_EOS,
        model_max_length=16,
    )
    hf.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def gpt2_vocab_dir(tmp_path_factory: pytest.TempPathFactory, gpt2_tokenizer_object: Tokenizer) -> Path:
    """Original GPT-2 hub layout: vocab.json + merges.txt only (plus a small tokenizer_config.json)."""
    path = tmp_path_factory.mktemp("gpt2_vocab")
    gpt2_tokenizer_object.model.save(str(path))
    (path / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "GPT2Tokenizer", "model_max_length": 32})
    )
    return path


OPT_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


@pytest.fixture(scope="module")
def opt_tokenizer_object() -> Tokenizer:
    tok = _train_byte_level_bpe(OPT_SPECIALS)
    tok.post_processor = processors.TemplateProcessing(
        single="</s> $A", pair="</s> $A </s> $B", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    return tok


@pytest.fixture(scope="module")
def opt_dir(tmp_path_factory: pytest.TempPathFactory, opt_tokenizer_object: Tokenizer) -> Path:
    """OPT style tokenizer.json: GPT-2 BPE whose post-processor prepends </s> (bos)."""
    import transformers

    path = tmp_path_factory.mktemp("opt")
    hf = transformers.GPT2TokenizerFast(
        tokenizer_object=opt_tokenizer_object,
        bos_token="</s>",
        eos_token="</s>",
        unk_token="</s>",
        pad_token="<pad>",
    )
    hf.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def opt_vocab_dir(tmp_path_factory: pytest.TempPathFactory, opt_tokenizer_object: Tokenizer) -> Path:
    """OPT hub layout: vocab.json + merges.txt, add_bos_token in the config, AddedToken dicts."""
    path = tmp_path_factory.mktemp("opt_vocab")
    opt_tokenizer_object.model.save(str(path))

    def added(content: str) -> dict[str, Any]:
        return {
            "__type": "AddedToken",
            "content": content,
            "lstrip": False,
            "normalized": True,
            "rstrip": False,
            "single_word": False,
        }

    config = {
        "add_bos_token": True,
        "add_prefix_space": False,
        "bos_token": added("</s>"),
        "eos_token": added("</s>"),
        "unk_token": added("</s>"),
        "pad_token": added("<pad>"),
        "errors": "replace",
        "model_max_length": 1000000000000000019884624838656,
        "tokenizer_class": "GPT2Tokenizer",
    }
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    special_map = {"bos_token": added("</s>"), "eos_token": added("</s>"), "unk_token": added("</s>")}
    special_map["pad_token"] = added("<pad>")
    for value in special_map.values():
        value.pop("__type")
    (path / "special_tokens_map.json").write_text(json.dumps(special_map))
    return path


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """T5 style: Unigram model, Metaspace pre-tokenizer, </s> appended, <extra_id_*> sentinels."""
    import transformers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    trainer = trainers.UnigramTrainer(
        vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    tok.train_from_iterator(CORPUS, trainer)
    vocab = [tuple(item) for item in json.loads(tok.to_str())["model"]["vocab"]]
    hf = transformers.T5Tokenizer(vocab=vocab, extra_ids=3, model_max_length=24)
    path = tmp_path_factory.mktemp("t5")
    hf.save_pretrained(path)
    return path


DIR_FIXTURES = ["gpt2_dir", "gpt2_vocab_dir", "opt_dir", "opt_vocab_dir", "t5_dir"]


# --------------------------------------------------------------------------------------------------
# comparison helpers
# --------------------------------------------------------------------------------------------------


def _load_both(path: Path, **kwargs: Any) -> tuple[PreTrainedTokenizerFast, Any]:
    import transformers

    return AutoTokenizer.from_pretrained(path, **kwargs), transformers.AutoTokenizer.from_pretrained(
        str(path), **kwargs
    )


def _as_numpy(value: Any) -> Any:
    if isinstance(value, tf.Tensor):
        return value.numpy()
    return value


def _assert_same_encoding(ours: BatchEncoding, theirs: Any, return_tensors: str | None) -> None:
    assert isinstance(ours, BatchEncoding) and isinstance(ours, dict)
    assert sorted(ours.keys()) == sorted(theirs.keys())
    for key in theirs:
        mine, ref = ours[key], theirs[key]
        assert getattr(ours, key) is mine
        if return_tensors is None:
            assert mine == ref, key
        elif return_tensors == "np":
            assert isinstance(mine, np.ndarray) and mine.dtype == ref.dtype == np.int64, key
            np.testing.assert_array_equal(mine, ref)
        else:
            assert isinstance(mine, tf.Tensor) and mine.dtype == tf.int32, key
            np.testing.assert_array_equal(mine.numpy(), ref)


def _compare_call(ours: PreTrainedTokenizerFast, theirs: Any, text: Any, **kwargs: Any) -> BatchEncoding:
    """Call both tokenizers; for "tf" Transformers 5 (no TF support) is asked for "np" instead."""
    return_tensors = kwargs.get("return_tensors")
    hf_kwargs = dict(kwargs, return_tensors="np") if return_tensors == "tf" else kwargs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mine = ours(text, **kwargs)
        ref = theirs(text, **hf_kwargs)
    _assert_same_encoding(mine, ref, return_tensors)
    return mine


CALL_OPTIONS: list[dict[str, Any]] = [
    {},
    {"add_special_tokens": False},
    {"padding": True},
    {"padding": "longest", "return_tensors": "np"},
    {"padding": True, "return_tensors": "tf"},
    {"padding": True, "pad_to_multiple_of": 8, "return_tensors": "tf"},
    {"padding": "max_length", "max_length": 20},
    {"padding": "max_length", "max_length": 12, "pad_to_multiple_of": 8},
    {"padding": "max_length"},
    {"truncation": True, "max_length": 5},
    {"truncation": True},
    {"truncation": "only_first", "max_length": 4, "padding": True, "return_tensors": "np"},
    {"max_length": 3},
    {"truncation": True, "max_length": 8, "padding": "max_length", "pad_to_multiple_of": 4},
    {"padding": True, "padding_side": "left"},
    {"padding": True, "padding_side": "right", "return_tensors": "tf"},
    {"padding": True, "add_special_tokens": False, "return_length": True},
    {"padding": True, "return_attention_mask": False},
    {"padding": "do_not_pad", "truncation": "do_not_truncate"},
    {"padding": True, "return_special_tokens_mask": True, "return_offsets_mapping": True},
]

LOAD_OPTIONS: list[dict[str, Any]] = [
    {},
    {"padding_side": "left"},
    {"padding_side": "left", "pad_token": "</s>"},
    {"truncation_side": "left", "pad_token": "<pad>"},
    {"model_max_length": 6},
]


def _needs_pad(kwargs: dict[str, Any]) -> bool:
    return kwargs.get("padding", False) not in (False, "do_not_pad")


# --------------------------------------------------------------------------------------------------
# parity with Transformers
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", DIR_FIXTURES)
@pytest.mark.parametrize("load_kwargs", LOAD_OPTIONS, ids=lambda kw: ",".join(kw) or "defaults")
def test_call_matches_transformers(request: pytest.FixtureRequest, fixture: str, load_kwargs: dict) -> None:
    path = request.getfixturevalue(fixture)
    ours, theirs = _load_both(path, **load_kwargs)
    assert ours.pad_token == theirs.pad_token and ours.pad_token_id == theirs.pad_token_id
    assert ours.padding_side == theirs.padding_side and ours.truncation_side == theirs.truncation_side
    assert ours.model_max_length == theirs.model_max_length
    assert len(ours) == len(theirs) and ours.vocab_size == theirs.vocab_size
    texts = [*TEXTS, f"special {ours.eos_token} inside {ours.eos_token}"]
    for options in CALL_OPTIONS:
        if _needs_pad(options) and ours.pad_token is None:
            with pytest.raises(ValueError, match="pad_token"):
                ours(texts, **options)
            with pytest.raises(ValueError):
                theirs(texts, **options)
            continue
        _compare_call(ours, theirs, texts, **options)
        _compare_call(ours, theirs, texts[1], **options)
        _compare_call(ours, theirs, texts[0], **options)
        if options.get("return_tensors") is None:
            _compare_call(ours, theirs, texts[1], text_pair=texts[3], **options)
            _compare_call(ours, theirs, texts[:4], text_pair=texts[4:8], **options)


@pytest.mark.parametrize("fixture", DIR_FIXTURES)
def test_properties_and_vocab_match_transformers(request: pytest.FixtureRequest, fixture: str) -> None:
    ours, theirs = _load_both(request.getfixturevalue(fixture))
    assert ours.get_vocab() == theirs.get_vocab()
    assert ours.vocab_size == theirs.vocab_size and len(ours) == len(theirs)
    assert ours.special_tokens_map == theirs.special_tokens_map
    assert ours.all_special_tokens == theirs.all_special_tokens
    assert ours.all_special_ids == theirs.all_special_ids
    assert ours.extra_special_tokens == theirs.extra_special_tokens
    for name in ("bos", "eos", "unk", "pad", "sep", "cls", "mask"):
        assert getattr(ours, f"{name}_token") == getattr(theirs, f"{name}_token"), name
        assert getattr(ours, f"{name}_token_id") == getattr(theirs, f"{name}_token_id"), name
    assert {i: str(t) for i, t in ours.added_tokens_decoder.items()} == {
        i: str(t) for i, t in theirs.added_tokens_decoder.items()
    }
    ids = list(range(0, len(ours), 7))
    assert ours.convert_ids_to_tokens(ids) == theirs.convert_ids_to_tokens(ids)
    assert ours.convert_ids_to_tokens(ids, skip_special_tokens=True) == theirs.convert_ids_to_tokens(
        ids, skip_special_tokens=True
    )
    assert ours.convert_ids_to_tokens(5) == theirs.convert_ids_to_tokens(5)
    tokens = [*ours.convert_ids_to_tokens(ids), "definitely-not-a-token"]
    assert ours.convert_tokens_to_ids(tokens) == theirs.convert_tokens_to_ids(tokens)
    assert ours.convert_tokens_to_ids(tokens[1]) == theirs.convert_tokens_to_ids(tokens[1])
    for text in TEXTS:
        assert ours.tokenize(text) == theirs.tokenize(text)
        assert ours.encode(text) == theirs.encode(text)
        assert ours.encode(text, add_special_tokens=False) == theirs.encode(text, add_special_tokens=False)
    assert ours.num_special_tokens_to_add() == theirs.num_special_tokens_to_add()


@pytest.mark.parametrize("fixture", DIR_FIXTURES)
def test_decode_matches_transformers(request: pytest.FixtureRequest, fixture: str) -> None:
    path = request.getfixturevalue(fixture)
    for load_kwargs in (
        {"padding_side": "left", "pad_token": "</s>"},
        {"clean_up_tokenization_spaces": True},
    ):
        ours, theirs = _load_both(path, **load_kwargs)
        texts = [*TEXTS, f"special {ours.eos_token} inside"]
        pad = ours.pad_token is not None
        ids = theirs(texts, padding=pad)["input_ids"]
        for skip in (False, True):
            assert ours.batch_decode(ids, skip_special_tokens=skip) == theirs.batch_decode(
                ids, skip_special_tokens=skip
            )
            for row in ids:
                expected = theirs.decode(row, skip_special_tokens=skip)
                assert ours.decode(row, skip_special_tokens=skip) == expected
                assert ours.decode(np.asarray(row), skip_special_tokens=skip) == expected
                assert ours.decode(tf.constant(row, dtype=tf.int32), skip_special_tokens=skip) == expected
            for clean in (False, True):
                assert ours.batch_decode(
                    ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean
                ) == theirs.batch_decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean)
        if pad:
            tensors = ours(texts, padding=True, return_tensors="tf")["input_ids"]
            assert ours.batch_decode(tensors, skip_special_tokens=True) == theirs.batch_decode(
                ids, skip_special_tokens=True
            )
            assert ours.decode(tensors, skip_special_tokens=True) == theirs.decode(
                ids, skip_special_tokens=True
            )
            array = ours(texts, padding=True, return_tensors="np")["input_ids"]
            assert ours.batch_decode(array) == theirs.batch_decode(array)
        assert ours.decode(ids[1][0]) == theirs.decode(ids[1][0])
        assert ours.decode(np.int64(ids[1][0])) == theirs.decode(int(ids[1][0]))
        assert ours.decode([]) == theirs.decode([]) and ours.batch_decode([]) == theirs.batch_decode([])


def test_pairs_split_words_and_prefix_space_match_transformers(gpt2_dir: Path, t5_dir: Path) -> None:
    for path in (gpt2_dir, t5_dir):
        for load_kwargs in ({}, {"add_prefix_space": True, "pad_token": "<pad>"}):
            ours, theirs = _load_both(path, **load_kwargs)
            words = [t.split() or ["x"] for t in TEXTS]
            _compare_call(ours, theirs, words[1], is_split_into_words=True)
            _compare_call(ours, theirs, words, is_split_into_words=True)
            for truncation in ("longest_first", "only_first", "only_second"):
                for max_length in (6, 40):
                    kwargs = {"text_pair": TEXTS[1:5], "truncation": truncation, "max_length": max_length}
                    try:
                        theirs(TEXTS[5:9], **kwargs)
                    except Exception:  # tokenizers cannot truncate only one side that much
                        with pytest.raises(ValueError, match="truncate"):
                            ours(TEXTS[5:9], **kwargs)
                        continue
                    _compare_call(ours, theirs, TEXTS[5:9], **kwargs)
            _compare_call(ours, theirs, TEXTS[3], text_pair=TEXTS[4], return_token_type_ids=True)


def test_legacy_added_tokens_file_matches_transformers(tmp_path: Path, gpt2_vocab_dir: Path) -> None:
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((gpt2_vocab_dir / name).read_bytes())
    size = len(json.loads((tmp_path / "vocab.json").read_text()))
    (tmp_path / "added_tokens.json").write_text(json.dumps({"<new>": size, "<other>": size + 1}))
    ours, theirs = _load_both(tmp_path, pad_token="<new>")
    assert len(ours) == len(theirs) == size + 2
    _compare_call(ours, theirs, ["a <new> b<other>c", "TensorFlow is"], padding=True)


def test_pad_token_added_past_the_vocabulary(gpt2_dir: Path) -> None:
    ours, theirs = _load_both(gpt2_dir, padding_side="left", pad_token="</s>")
    base = ours.vocab_size
    assert ours.pad_token_id == theirs.pad_token_id == base
    assert len(ours) == len(theirs) == base + 1
    assert ours.vocab_size == theirs.vocab_size == base
    enc = ours(["TensorFlow is", "a b c"], pad_to_multiple_of=8, padding=True, return_tensors="tf")
    assert enc["input_ids"].shape == (2, 8) and enc.input_ids.dtype == tf.int32
    assert enc.attention_mask.dtype == tf.int32
    first = enc.input_ids.numpy()[0].tolist()
    assert first[0] == base and first[-1] != base  # left padding
    assert ours.batch_decode(enc.input_ids, skip_special_tokens=True) == ["TensorFlow is", "a b c"]
    ref = theirs(["TensorFlow is", "a b c"], pad_to_multiple_of=8, padding=True, return_tensors="np")
    np.testing.assert_array_equal(enc.input_ids.numpy(), ref["input_ids"])
    np.testing.assert_array_equal(enc.attention_mask.numpy(), ref["attention_mask"])


def test_gpt2_vocab_files_defaults(gpt2_vocab_dir: Path) -> None:
    ours = AutoTokenizer.from_pretrained(gpt2_vocab_dir)
    assert ours.bos_token == ours.eos_token == ours.unk_token == GPT2_EOS
    assert ours.eos_token_id == ours.convert_tokens_to_ids(GPT2_EOS) == 0
    assert ours.pad_token is None and ours.model_max_length == 32
    assert GPT2TokenizerFast is PreTrainedTokenizerFast


def test_opt_prepends_bos(opt_dir: Path, opt_vocab_dir: Path) -> None:
    for path in (opt_dir, opt_vocab_dir):
        ours = AutoTokenizer.from_pretrained(path)
        ids = ours("Hello world")["input_ids"]
        assert ids[0] == ours.bos_token_id == ours.convert_tokens_to_ids("</s>")
        assert ours("Hello world", add_special_tokens=False)["input_ids"] == ids[1:]


def test_t5_appends_eos(t5_dir: Path) -> None:
    ours = AutoTokenizer.from_pretrained(t5_dir)
    ids = ours("Hello world")["input_ids"]
    assert ids[-1] == ours.eos_token_id == 1
    assert "<extra_id_0>" in ours.all_special_tokens


@pytest.mark.parametrize("add_bos,add_eos", [(True, False), (False, True), (True, True)])
def test_add_bos_eos_token_kwargs(gpt2_dir: Path, opt_vocab_dir: Path, add_bos: bool, add_eos: bool) -> None:
    for path in (gpt2_dir, opt_vocab_dir):
        ours, theirs = _load_both(path, add_bos_token=add_bos, add_eos_token=add_eos)
        for text in TEXTS[:4]:
            assert ours(text)["input_ids"] == theirs(text)["input_ids"]
            assert ours(text, "pair text")["input_ids"] == theirs(text, "pair text")["input_ids"]


def test_add_special_tokens_and_add_tokens_match(gpt2_dir: Path) -> None:
    ours, theirs = _load_both(gpt2_dir)
    assert ours.add_special_tokens({"pad_token": "[PAD]"}) == theirs.add_special_tokens(
        {"pad_token": "[PAD]"}
    )
    assert ours.pad_token_id == theirs.pad_token_id == ours.vocab_size
    extra = {"additional_special_tokens": ["<tool>", "<call>"]}
    assert ours.add_special_tokens(extra) == theirs.add_special_tokens(extra)
    assert ours.add_tokens(["brandnewword", "TensorFlow"]) == theirs.add_tokens(
        ["brandnewword", "TensorFlow"]
    )
    assert ours.add_tokens("anotherword", special_tokens=True) == theirs.add_tokens(
        "anotherword", special_tokens=True
    )
    assert len(ours) == len(theirs) and ours.get_vocab() == theirs.get_vocab()
    assert ours.all_special_tokens == theirs.all_special_tokens
    assert ours.all_special_ids == theirs.all_special_ids
    texts = ["a <tool> b brandnewword [PAD] anotherword", "x<call>y", "TensorFlow is"]
    _compare_call(ours, theirs, texts, padding=True)
    ids = theirs(texts, padding=True)["input_ids"]
    for skip in (False, True):
        assert ours.batch_decode(ids, skip_special_tokens=skip) == theirs.batch_decode(
            ids, skip_special_tokens=skip
        )


def test_setting_pad_token_attributes(gpt2_dir: Path) -> None:
    ours, theirs = _load_both(gpt2_dir)
    ours.pad_token = ours.eos_token
    theirs.pad_token = theirs.eos_token
    assert ours.pad_token_id == theirs.pad_token_id
    ours.padding_side = theirs.padding_side = "left"
    _compare_call(ours, theirs, TEXTS, padding=True, return_tensors="np")
    ours.pad_token_id = 5
    assert ours.pad_token == ours.convert_ids_to_tokens(5)


@pytest.mark.parametrize("fixture", DIR_FIXTURES)
def test_save_pretrained_round_trip(
    request: pytest.FixtureRequest, fixture: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    source = request.getfixturevalue(fixture)
    original = AutoTokenizer.from_pretrained(
        source, padding_side="left", truncation_side="left", pad_token="</s>", model_max_length=10
    )
    original.add_tokens(["brandnewword"])
    saved = original.save_pretrained(tmp_path / "saved")
    assert sorted(Path(p).name for p in saved) == [
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    ours = AutoTokenizer.from_pretrained(tmp_path / "saved")
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "saved"))
    for loaded in (ours, theirs):
        assert loaded.padding_side == "left" and loaded.truncation_side == "left"
        assert loaded.model_max_length == 10
        assert loaded.pad_token == original.pad_token and loaded.pad_token_id == original.pad_token_id
        assert loaded.get_vocab() == original.get_vocab() and len(loaded) == len(original)
        assert loaded.all_special_tokens == original.all_special_tokens
    texts = [*TEXTS, "brandnewword </s> x"]
    for options in ({}, {"padding": True, "truncation": True}, {"padding": True, "return_tensors": "np"}):
        _compare_call(ours, theirs, texts, **options)
        expected = original(texts, **options)
        np.testing.assert_equal(dict(ours(texts, **options)), dict(expected))
    ids = ours(texts, padding=True)["input_ids"]
    assert ours.batch_decode(ids, skip_special_tokens=True) == theirs.batch_decode(
        ids, skip_special_tokens=True
    )
    assert ours.batch_decode(ids, skip_special_tokens=True) == original.batch_decode(
        ids, skip_special_tokens=True
    )


def test_load_by_cached_hub_name_and_single_file(
    gpt2_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (snapshot / name).write_bytes((gpt2_dir / name).read_bytes())
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    by_name = AutoTokenizer.from_pretrained("org/tiny", use_fast=True, revision="main")
    by_path = AutoTokenizer.from_pretrained(gpt2_dir)
    assert by_name("TensorFlow is") == by_path("TensorFlow is")
    single = AutoTokenizer.from_pretrained(gpt2_dir / "tokenizer.json", eos_token=GPT2_EOS)
    assert single.encode("TensorFlow is") == by_path.encode("TensorFlow is")
    assert single.eos_token_id == by_path.eos_token_id


def test_batch_encoding_behaviour(gpt2_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(gpt2_dir, pad_token=GPT2_EOS)
    enc = tok(["TensorFlow is", "a b c"], padding=True)
    assert enc.input_ids is enc["input_ids"] and enc.tokens(0) == enc[0].tokens
    assert enc[1].ids == enc.input_ids[1]
    with pytest.raises(AttributeError):
        _ = enc.not_a_key
    assert tok([])["input_ids"] == []
    single = tok("TensorFlow is", return_tensors="np")
    assert single.input_ids.shape == (1, len(tok("TensorFlow is").input_ids))
    empty = tok([""], add_special_tokens=False, return_tensors="tf")
    assert empty.input_ids.shape == (1, 0) and empty.input_ids.dtype == tf.int32
    import copy
    import pickle

    assert pickle.loads(pickle.dumps(enc)) == enc
    restored = pickle.loads(pickle.dumps(tok))
    assert restored(["TensorFlow is", "a b c"], padding=True) == enc
    assert tok.decode(enc) == tok.batch_decode(enc.input_ids)
    clone = copy.deepcopy(tok)
    clone.add_tokens(["zzzz-new"])
    assert len(clone) == len(tok) + 1


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------


def test_padding_without_pad_token_raises(gpt2_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(gpt2_dir)
    for kwargs in ({"padding": True}, {"padding": "longest"}, {"padding": "max_length", "max_length": 8}):
        with pytest.raises(ValueError, match="pad_token"):
            tok(["a", "b c"], **kwargs)
    tok.pad_token = "not-in-vocab"  # no unk fallback either -> no usable id
    tok.unk_token = None
    with pytest.raises(ValueError, match="pad_token"):
        tok(["a", "b c"], padding=True)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"padding": "bogus"}, ValueError, "padding"),
        ({"padding": 3}, ValueError, "padding"),
        ({"truncation": "bogus"}, ValueError, "truncation"),
        ({"padding": True, "pad_to_multiple_of": 0}, ValueError, "pad_to_multiple_of"),
        ({"padding": True, "pad_to_multiple_of": -8}, ValueError, "pad_to_multiple_of"),
        ({"padding": True, "pad_to_multiple_of": 2.5}, TypeError, "pad_to_multiple_of"),
        ({"truncation": True, "max_length": 0}, ValueError, "max_length"),
        ({"max_length": -3}, ValueError, "max_length"),
        ({"max_length": "8"}, TypeError, "max_length"),
        ({"padding": True, "return_tensors": "pt"}, ValueError, "return_tensors"),
        ({"padding": True, "return_tensors": "jax"}, ValueError, "return_tensors"),
        ({"padding": True, "padding_side": "middle"}, ValueError, "padding_side"),
        (
            {"padding": True, "truncation": True, "max_length": 10, "pad_to_multiple_of": 4},
            ValueError,
            "multiple",
        ),
        ({"return_tensors": "tf"}, ValueError, "padding"),
        ({"return_tensors": "np"}, ValueError, "padding"),
    ],
)
def test_invalid_call_arguments(gpt2_dir: Path, kwargs: dict, exc: type, match: str) -> None:
    tok = AutoTokenizer.from_pretrained(gpt2_dir, pad_token=GPT2_EOS)
    with pytest.raises(exc, match=match):
        tok(["TensorFlow is", "a b c d e f"], **kwargs)


@pytest.mark.parametrize("text", [123, None, [1, 2], ["a", None], [["a"], ["b"]], b"bytes"])
def test_invalid_text_raises(gpt2_dir: Path, text: Any) -> None:
    tok = AutoTokenizer.from_pretrained(gpt2_dir)
    with pytest.raises(TypeError, match="text"):
        tok(text)


def test_unexpected_call_keyword_raises(gpt2_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(gpt2_dir)
    with pytest.raises(TypeError):
        tok("a", return_overflowing_tokens=True)


def test_padding_side_validation(gpt2_dir: Path) -> None:
    with pytest.raises(ValueError, match="padding_side"):
        AutoTokenizer.from_pretrained(gpt2_dir, padding_side="middle")
    with pytest.raises(ValueError, match="truncation_side"):
        AutoTokenizer.from_pretrained(gpt2_dir, truncation_side="up")
    tok = AutoTokenizer.from_pretrained(gpt2_dir)
    tok.padding_side = "left"
    assert tok.padding_side == "left"
    with pytest.raises(ValueError, match="padding_side"):
        tok.padding_side = "center"


def test_missing_tokenizer_files(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(OSError) as info:
        AutoTokenizer.from_pretrained(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "tokenizer.json" in message and "vocab.json" in message
    (tmp_path / "tokenizer.model").write_bytes(b"\x00")  # LLaMA-style SentencePiece: not converted
    with pytest.raises(OSError, match=r"tokenizer\.json"):
        AutoTokenizer.from_pretrained(tmp_path)
    with pytest.raises(OSError):
        AutoTokenizer.from_pretrained(tmp_path / "does-not-exist")


def test_corrupt_files(gpt2_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad_json"
    bad.mkdir()
    (bad / "tokenizer.json").write_text('{"model": ')
    with pytest.raises(ValueError, match=r"tokenizer\.json"):
        AutoTokenizer.from_pretrained(bad)
    (bad / "tokenizer.json").write_text('{"model": {"type": "Nope"}}')
    with pytest.raises(ValueError, match=r"tokenizer\.json"):
        AutoTokenizer.from_pretrained(bad)
    (bad / "tokenizer.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"tokenizer\.json"):
        AutoTokenizer.from_pretrained(bad)
    bad_config = tmp_path / "bad_config"
    bad_config.mkdir()
    (bad_config / "tokenizer.json").write_bytes((gpt2_dir / "tokenizer.json").read_bytes())
    (bad_config / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"tokenizer_config\.json"):
        AutoTokenizer.from_pretrained(bad_config)
    bad_vocab = tmp_path / "bad_vocab"
    bad_vocab.mkdir()
    (bad_vocab / "vocab.json").write_text('{"a": "x"}')
    (bad_vocab / "merges.txt").write_text("#version: 0.2\n")
    with pytest.raises(ValueError, match=r"vocab\.json"):
        AutoTokenizer.from_pretrained(bad_vocab)


def test_decode_rejects_bad_input(gpt2_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(gpt2_dir)
    with pytest.raises(TypeError, match="token_ids"):
        tok.decode("not ids")
    with pytest.raises(TypeError):
        tok.decode([[[1, 2]]])
