"""Fast tokenizers for xlagen, API-compatible with Hugging Face Transformers' fast tokenizers.

The heavy lifting (normalization, pre-tokenization, BPE/Unigram/WordPiece models, post-processing
templates, padding and truncation) is done by the Rust ``tokenizers`` library, exactly as in
Transformers. This module only reproduces Transformers' loading rules (``tokenizer.json``,
``tokenizer_config.json``, ``special_tokens_map.json``, GPT-2 ``vocab.json`` + ``merges.txt``, T5
``spiece.model`` via :mod:`xlagen.tokenization.sentencepiece`) and its
call conventions, so that code written against ``transformers.AutoTokenizer`` works after changing the
import only. ``transformers`` itself is never imported.

Typical use::

    tok = AutoTokenizer.from_pretrained(path, padding_side="left", pad_token="</s>")
    enc = tok(["TensorFlow is", "a b c"], padding=True, pad_to_multiple_of=8, return_tensors="tf")
    tok.batch_decode(enc.input_ids, skip_special_tokens=True)

Modules: ``fast`` (the tokenizer API), ``encoding`` (``BatchEncoding``), ``loaders`` (checkpoint
files to a ``tokenizers.Tokenizer`` and init arguments), ``sentencepiece`` (T5's ``spiece.model``
converted without the ``sentencepiece`` package), ``auto`` (``AutoTokenizer``), ``utils``.
"""

from tokenizers import AddedToken

from xlagen.tokenization.auto import AutoTokenizer
from xlagen.tokenization.encoding import BatchEncoding
from xlagen.tokenization.fast import GPT2TokenizerFast, PreTrainedTokenizerFast

__all__ = [
    "AddedToken",
    "AutoTokenizer",
    "BatchEncoding",
    "GPT2TokenizerFast",
    "PreTrainedTokenizerFast",
]
