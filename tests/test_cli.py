"""The command line on a tiny checkpoint (with a tokenizer) written by Transformers."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

import xlagen
from xlagen.cli import chat_prompts, main


def test_generate_greedy_and_timing(gpt2_tokenizer_checkpoint, capsys):
    path, _ = gpt2_tokenizer_checkpoint
    assert (
        main(["generate", "--model", str(path), "TensorFlow is", "XLA", "--max-new-tokens", "6", "--timing"])
        == 0
    )
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("TensorFlow is") and lines[1].startswith("XLA")
    assert "first call" in err and "warm" in err and "compilations: 1" in err


def test_generate_sampling_is_reproducible(gpt2_tokenizer_checkpoint, capsys):
    path, _ = gpt2_tokenizer_checkpoint
    args = ["generate", "--model", str(path), "TensorFlow is", "--do-sample", "--seed", "3", "--top-p", "0.9"]
    main(args)
    first = capsys.readouterr().out
    main(args)
    assert capsys.readouterr().out == first


def test_bad_arguments_are_reported(gpt2_tokenizer_checkpoint, capsys, tmp_path):
    path, _ = gpt2_tokenizer_checkpoint
    assert main(["generate", "--model", str(path), "hi", "--do-sample", "--top-p", "2"]) == 2
    assert "top_p" in capsys.readouterr().err
    assert main(["generate", "--model", str(tmp_path), "hi"]) == 2
    assert "config.json" in capsys.readouterr().err


def test_default_demo_model_prints_real_words(capsys):
    """The bundled demo GPT-2 (scripts/train_demo_model.py) continues a prompt in KJV English."""
    assert main(["generate", "And God said", "--max-new-tokens", "16"]) == 0
    words = capsys.readouterr().out.lower().replace(",", " ").replace(".", " ").split()
    common = {"the", "and", "unto", "of", "he", "said", "him", "lord", "god", "that", "i", "thee", "thou"}
    assert sum(w in common for w in words[3:]) >= 4, words


# -- Llama-family directories with a byte-level BPE tokenizer.json --------------------------------

QWEN_TEMPLATE = (  # Qwen2.5's, without the tool-calling branches
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- elif message.role == 'assistant' %}{{- '<|im_start|>assistant\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
LLAMA3_TEMPLATE = (  # Llama 3's: bos variable, trimmed contents, a namespace, header tokens
    "{{- bos_token }}{%- set ns = namespace(system='') %}"
    "{%- if messages[0]['role'] == 'system' %}{%- set ns.system = messages[0]['content'] | trim %}"
    "{%- set messages = messages[1:] %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\n\\n' + ns.system + '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
SPECIALS = [
    "<s>",
    "</s>",
    "<|im_start|>",
    "<|im_end|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]
CORPUS = [
    "TensorFlow compiles the decoding loop with XLA, once per shape.",
    "Llama, Mistral and Qwen share one core: rotary positions, grouped queries, RMSNorm.",
    "The quick brown fox jumps over the lazy dog. Hello there! How are you today?",
]


def write_family_with_tokenizer(path, family: str, template: str | None = None):
    """A tiny random ``family`` checkpoint and a byte-level BPE tokenizer.json trained here (the
    template, if any, in tokenizer_config.json's ``chat_template``); returns the torch model."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from tests.models.test_llama import write_llama

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(CORPUS * 4, trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="<|im_end|>" if template else "</s>"
    )
    tokenizer.save_pretrained(path)
    (path / "chat_template.jinja").unlink(missing_ok=True)
    if template is not None:
        config = json.loads((path / "tokenizer_config.json").read_text())
        config["chat_template"] = template
        (path / "tokenizer_config.json").write_text(json.dumps(config))
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=None)
    return write_llama(path, seed=7, family=family, vocab_size=len(tokenizer), **ids)


def greedy_reference(pt_model, path, ids: list[int], new: int) -> str:
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    with torch.no_grad():
        out = pt_model.generate(
            torch.tensor([ids]),
            max_new_tokens=new,
            do_sample=False,
            pad_token_id=tokenizer.eos_token_id,
        )
    return tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "qwen3"])
def test_generate_llama_family_directory(family, tmp_path, capsys):
    pt_model = write_family_with_tokenizer(tmp_path, family)
    prompt = "The quick brown fox"
    assert main(["generate", "--model", str(tmp_path), prompt, "--max-new-tokens", "8"]) == 0
    ids = transformers.AutoTokenizer.from_pretrained(tmp_path)(prompt)["input_ids"]
    assert capsys.readouterr().out == prompt + greedy_reference(pt_model, tmp_path, ids, 8) + "\n"


@pytest.mark.parametrize(("family", "template"), [("qwen2", QWEN_TEMPLATE), ("llama", LLAMA3_TEMPLATE)])
def test_generate_chat_renders_the_template_like_transformers(family, template, tmp_path, capsys):
    pt_model = write_family_with_tokenizer(tmp_path, family, template)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    ours = xlagen.AutoTokenizer.from_pretrained(tmp_path)
    prompts = ["Hello there!", "  How are you today?  "]
    for system in (None, " Be brief. "):
        head = [] if system is None else [{"role": "system", "content": system}]
        want = [
            hf.apply_chat_template(
                [*head, {"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
            )
            for p in prompts
        ]
        assert chat_prompts(ours, prompts, system) == want
    args = ["generate", "--model", str(tmp_path), prompts[0], "--chat", "--system", "Be brief."]
    assert main([*args, "--max-new-tokens", "6"]) == 0
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompts[0]}]
    ids = hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    assert capsys.readouterr().out == greedy_reference(pt_model, tmp_path, ids, 6) + "\n"


def test_system_needs_chat(gpt2_tokenizer_checkpoint, capsys):
    path, _ = gpt2_tokenizer_checkpoint
    assert main(["generate", "--model", str(path), "hi", "--system", "x"]) == 2
    assert "--system only applies with --chat" in capsys.readouterr().err
    assert main(["generate", "--model", str(path), "hi", "--chat"]) == 2
    assert "no chat template" in capsys.readouterr().err


def _seq2seq_with_tokenizer(path, kind: str):
    """A tokenizer directory built by the tokenizer tests plus a random Transformers 5 model of that family."""
    import warnings

    from tests.models.test_bart import TINY
    from tests.test_tokenization_seq2seq import NLLB_LANGUAGE_CODES, _fairseq, _marian

    path = path / kind
    if kind == "marian":
        _marian(path)
        tok = transformers.AutoTokenizer.from_pretrained(path)
        pad = tok.pad_token_id
        config = transformers.MarianConfig(
            **{**TINY, "vocab_size": len(tok)}, pad_token_id=pad, decoder_start_token_id=pad, eos_token_id=0
        )
        model_cls = transformers.MarianMTModel
    else:  # NLLB: an M2M100 model with NllbTokenizer's language codes
        _fairseq(
            path, "NllbTokenizer", {"src_lang": "eng_Latn", "additional_special_tokens": NLLB_LANGUAGE_CODES}
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tok = transformers.AutoTokenizer.from_pretrained(path)
        config = transformers.M2M100Config(
            **{**TINY, "vocab_size": len(tok)},
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.eos_token_id,
            encoder_layerdrop=0.0,
            decoder_layerdrop=0.0,
        )
        model_cls = transformers.M2M100ForConditionalGeneration
    torch.manual_seed(0)
    pt_model = model_cls(config).eval()
    pt_model.save_pretrained(path)
    return pt_model, path


@pytest.mark.parametrize("kind", ["marian", "nllb"])
def test_translate_matches_transformers(kind, tmp_path, capsys):
    pt_model, tmp_path = _seq2seq_with_tokenizer(tmp_path, kind)
    texts = ["Where is the train station?", "Hello"]
    languages = [] if kind == "marian" else ["--src-lang", "eng_Latn", "--tgt-lang", "deu_Latn"]
    assert main(["translate", "--model", str(tmp_path), *texts, *languages, "--max-new-tokens", "8"]) == 0
    tok = transformers.AutoTokenizer.from_pretrained(
        tmp_path, **({} if kind == "marian" else {"src_lang": "eng_Latn"})
    )
    extra = {} if kind == "marian" else {"forced_bos_token_id": tok.convert_tokens_to_ids("deu_Latn")}
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = pt_model.generate(**batch, max_new_tokens=8, do_sample=False, **extra)
    want = [tok.decode(row, skip_special_tokens=True) for row in out]
    assert capsys.readouterr().out == "".join(f"{line}\n" for line in want)
    if kind == "nllb":
        assert (out[:, 1] == extra["forced_bos_token_id"]).all()


def test_translate_errors(tmp_path, gpt2_tokenizer_checkpoint, capsys):
    _, model_dir = _seq2seq_with_tokenizer(tmp_path, "nllb")
    assert main(["translate", "--model", str(model_dir), "hi", "--tgt-lang", "xxx_Zzzz"]) == 2
    assert "xxx_Zzzz" in capsys.readouterr().err
    path, _ = gpt2_tokenizer_checkpoint
    assert main(["translate", "--model", str(path), "hi"]) == 2
    assert "not an encoder-decoder" in capsys.readouterr().err
    assert main(["generate", "--model", str(path), "hi", "--tgt-lang", "de"]) == 2
    assert "translation" in capsys.readouterr().err
