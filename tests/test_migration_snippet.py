"""The Transformers 4.x TF recipe runs with only the import changed (issue: xlagen core)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch
import transformers


def reference(path, pt_model, prompts, max_new_tokens):
    tok = transformers.AutoTokenizer.from_pretrained(path, padding_side="left", pad_token="</s>")
    enc = tok(prompts, pad_to_multiple_of=8, padding=True, return_tensors="pt")
    ids = enc["input_ids"].clone()
    ids[enc["attention_mask"] == 0] = 0  # torch's embedding would reject the out-of-vocabulary pad id
    with torch.no_grad():
        out = pt_model.generate(
            input_ids=ids, attention_mask=enc["attention_mask"], max_new_tokens=max_new_tokens, pad_token_id=0
        )
    return out.numpy()[:, enc["input_ids"].shape[1] :]


def test_snippet_with_only_the_import_changed(gpt2_tokenizer_checkpoint):
    path, pt_model = gpt2_tokenizer_checkpoint
    DIR = str(path)
    # --- the user's code, as in the issue ----------------------------------------------------
    from xlagen import AutoTokenizer, TFAutoModelForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(DIR, padding_side="left", pad_token="</s>")
    model = TFAutoModelForCausalLM.from_pretrained(DIR)
    xla_generate = tf.function(model.generate, jit_compile=True)
    inputs = tokenizer(["TensorFlow is"], pad_to_multiple_of=8, padding=True, return_tensors="tf")
    tokens = xla_generate(**inputs, max_new_tokens=32)
    text = tokenizer.decode(tokens[0], skip_special_tokens=True)
    # -------------------------------------------------------------------------------------------
    assert tokenizer.pad_token_id == model.config.vocab_size  # </s> was added past the embedding table
    assert inputs["input_ids"].shape == (1, 8) and inputs["input_ids"].dtype == tf.int32
    assert text.startswith("TensorFlow is")
    new = tokens.numpy()[:, 8:]
    ref = reference(path, pt_model, ["TensorFlow is"], 32)
    assert new.shape == (1, 32)
    np.testing.assert_array_equal(new[:, : ref.shape[1]], ref)


@pytest.mark.parametrize("mode", ["eager", "graph", "xla", "auto"])
def test_batch_of_prompts_in_every_mode(gpt2_tokenizer_checkpoint, mode):
    path, pt_model = gpt2_tokenizer_checkpoint
    from xlagen import AutoTokenizer, TFAutoModelForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(path), padding_side="left", pad_token="</s>")
    model = TFAutoModelForCausalLM.from_pretrained(str(path))
    prompts = ["TensorFlow is", "XLA compiles TensorFlow graphs into", "Generation"]
    inputs = tokenizer(prompts, pad_to_multiple_of=8, padding=True, return_tensors="tf")
    if mode == "eager":
        tokens = model.generate(**inputs, max_new_tokens=32, jit_compile=False)
    elif mode == "auto":
        tokens = model.generate(**inputs, max_new_tokens=32)
    else:
        tokens = tf.function(model.generate, jit_compile=mode == "xla")(**inputs, max_new_tokens=32)
    width = inputs["input_ids"].shape[1]
    new = tokens.numpy()[:, width:]
    ref = reference(path, pt_model, prompts, 32)
    live = ref != 0  # rows Transformers finished early are padded there
    np.testing.assert_array_equal(new[:, : ref.shape[1]][live], ref[live])
    texts = tokenizer.batch_decode(tokens, skip_special_tokens=True)
    assert [t.startswith(p) for t, p in zip(texts, prompts)] == [True] * 3
