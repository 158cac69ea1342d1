"""Fast tokenizers for xlagen, API-compatible with Hugging Face Transformers' fast tokenizers.

The heavy lifting (normalization, pre-tokenization, BPE/Unigram/WordPiece models, post-processing
templates, padding and truncation) is done by the Rust ``tokenizers`` library, exactly as in
Transformers. This module only reproduces Transformers' loading rules (``tokenizer.json``,
``tokenizer_config.json``, ``special_tokens_map.json``, GPT-2 ``vocab.json`` + ``merges.txt``, T5
``spiece.model``, Llama ``tokenizer.model``, mBART / NLLB ``sentencepiece.bpe.model`` via
:mod:`xlagen.tokenization.sentencepiece`, Marian's ``source.spm`` / ``target.spm``) and its
call conventions, so that code written against ``transformers.AutoTokenizer`` works after changing the
import only. ``transformers`` itself is never imported.

Typical use::

    tok = AutoTokenizer.from_pretrained(path, padding_side="left", pad_token="</s>")
    enc = tok(["TensorFlow is", "a b c"], padding=True, pad_to_multiple_of=8, return_tensors="tf")
    tok.batch_decode(enc.input_ids, skip_special_tokens=True)

Modules: ``fast`` (the tokenizer API), ``encoding`` (``BatchEncoding``), ``loaders`` (checkpoint
files to a ``tokenizers.Tokenizer`` and init arguments), ``sentencepiece`` (SentencePiece models
converted to ``tokenizers`` pipelines), ``seq2seq`` (Marian, mBART, mBART-50, NLLB, BlenderbotSmall and Llama classes:
language codes, ``text_target``), ``auto`` (``AutoTokenizer``), ``utils``.
"""

from tokenizers import AddedToken

from xlagen.tokenization.auto import AutoTokenizer
from xlagen.tokenization.encoding import BatchEncoding
from xlagen.tokenization.fast import GPT2TokenizerFast, PreTrainedTokenizerFast
from xlagen.tokenization.seq2seq import (
    BlenderbotSmallTokenizer,
    BlenderbotTokenizer,
    BlenderbotTokenizerFast,
    LlamaTokenizer,
    LlamaTokenizerFast,
    M2M100Tokenizer,
    MarianTokenizer,
    MBart50Tokenizer,
    MBart50TokenizerFast,
    MBartTokenizer,
    MBartTokenizerFast,
    NllbTokenizer,
    NllbTokenizerFast,
    PegasusTokenizer,
    PegasusTokenizerFast,
)

__all__ = [
    "AddedToken",
    "AutoTokenizer",
    "BatchEncoding",
    "GPT2TokenizerFast",
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
    "PreTrainedTokenizerFast",
]
