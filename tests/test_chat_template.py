"""Chat templates rendered by xlagen against Transformers' ``apply_chat_template`` on the same files."""

from __future__ import annotations

import json

import pytest
import transformers

import xlagen

TEMPLATES = [
    # ChatML-style (Qwen), with a default system message and loop controls
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are helpful.<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    # Llama-2 style: bos/eos variables, raise_exception, strip and tojson filters
    "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('roles must alternate user/assistant') }}{% endif %}"
    "{% if m['role'] == 'user' %}{{ bos_token + '[INST] ' + m['content'] | trim + ' [/INST]' }}"
    "{% else %}{{ ' ' + m['content'] | trim + ' ' + eos_token }}{% endif %}{% endfor %}"
    "{{ messages | length | tojson }}",
]


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("in_config", [True, False])
def test_chat_template_matches_transformers(gpt2_tokenizer_checkpoint, tmp_path, template, in_config):
    src, _ = gpt2_tokenizer_checkpoint
    hf = transformers.AutoTokenizer.from_pretrained(src)
    hf.chat_template = template
    hf.save_pretrained(tmp_path)
    if in_config:  # older checkpoints: the template inside tokenizer_config.json
        (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
        config = json.loads((tmp_path / "tokenizer_config.json").read_text())
        config["chat_template"] = template
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
        hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    ours = xlagen.AutoTokenizer.from_pretrained(tmp_path)
    messages = [
        {"role": "user", "content": " TensorFlow is "},
        {"role": "assistant", "content": "an open source platform"},
        {"role": "user", "content": "XLA compiles graphs"},
    ]
    for gen in (True, False):
        want = hf.apply_chat_template(messages, add_generation_prompt=gen, tokenize=False)
        assert ours.apply_chat_template(messages, add_generation_prompt=gen, tokenize=False) == want
        ids = hf.apply_chat_template(messages, add_generation_prompt=gen, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        assert ours.apply_chat_template(messages, add_generation_prompt=gen) == list(ids)


def test_template_errors_are_value_errors(gpt2_tokenizer_checkpoint):
    ours = xlagen.AutoTokenizer.from_pretrained(gpt2_tokenizer_checkpoint[0])
    with pytest.raises(ValueError, match="no chat template"):
        ours.apply_chat_template([{"role": "user", "content": "hi"}])
    with pytest.raises(ValueError, match="roles must alternate"):
        ours.apply_chat_template([{"role": "assistant", "content": "x"}], chat_template=TEMPLATES[1])
