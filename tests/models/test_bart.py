"""The BART family (BART, mBART, Marian, Pegasus, Blenderbot, BlenderbotSmall, M2M100/NLLB) against
Transformers 5 PyTorch on the same random weights: logits, greedy and beam generations, eager and XLA."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf
import torch
import transformers

import xlagen

VOCAB = 96
TINY = dict(
    vocab_size=VOCAB,
    d_model=32,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=48,
    decoder_ffn_dim=48,
    max_position_embeddings=64,
    dropout=0.0,
    attention_dropout=0.0,
    activation_dropout=0.0,
)
# model_type -> (Transformers config class, model class, extra config). Between them the variants
# cover post- and pre-layernorm, the embedding norm (and BlenderbotSmall's norm before positions),
# learned positions with and without BART's offset, Marian/Pegasus sinusoids and fairseq sinusoids,
# scaled and unscaled embeddings, GELU / SiLU / ReLU, final logits bias, tied and untied tables.
VARIANTS = {
    "bart": ("BartConfig", "BartForConditionalGeneration", {}),
    "bart_untied": ("BartConfig", "BartForConditionalGeneration", {"tie_word_embeddings": False}),
    "mbart": (
        "MBartConfig",
        "MBartForConditionalGeneration",
        {"scale_embedding": True, "decoder_start_token_id": 2},
    ),
    "marian": (
        "MarianConfig",
        "MarianMTModel",
        {
            "activation_function": "swish",
            "scale_embedding": True,
            "pad_token_id": VOCAB - 1,
            "decoder_start_token_id": VOCAB - 1,
            "eos_token_id": 0,
            "forced_eos_token_id": 0,
        },
    ),
    "marian_unshared": (
        "MarianConfig",
        "MarianMTModel",
        {
            "activation_function": "swish",
            "scale_embedding": True,
            "pad_token_id": VOCAB - 1,
            "decoder_start_token_id": VOCAB - 1,
            "eos_token_id": 0,
            "share_encoder_decoder_embeddings": False,
            "decoder_vocab_size": VOCAB + 16,
        },
    ),
    "pegasus": (
        "PegasusConfig",
        "PegasusForConditionalGeneration",
        {"scale_embedding": True, "activation_function": "relu"},
    ),
    "blenderbot": ("BlenderbotConfig", "BlenderbotForConditionalGeneration", {}),
    "blenderbot_small": ("BlenderbotSmallConfig", "BlenderbotSmallForConditionalGeneration", {}),
    "m2m_100": (
        "M2M100Config",
        "M2M100ForConditionalGeneration",
        {"encoder_layerdrop": 0.0, "decoder_layerdrop": 0.0},
    ),
}
LENGTHS = [5, 11, 3, 8]
NEW = 12


def write_model(path, name: str, seed: int = 0):
    """Save a random model of variant ``name`` with Transformers 5 PyTorch; return it in eval mode.

    Norms and biases are perturbed off their initial values, and the final logits bias made non-zero,
    so loading bugs show in the logits.
    """
    config_cls, model_cls, extra = VARIANTS[name]
    config = getattr(transformers, config_cls)(**{**TINY, **extra})
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(config).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "layer_norm" in pname or "layernorm" in pname or pname.endswith(".bias"):
                p.add_(torch.randn_like(p) * 0.2)
            elif "embed_positions" in pname and p.requires_grad:
                p.normal_(0.0, 0.5)
        if hasattr(model, "final_logits_bias"):
            model.final_logits_bias.normal_(0.0, 0.5)
    model.save_pretrained(path)
    return model


def encoder_batch(rng: np.random.Generator, pad: int, lengths=LENGTHS):
    """A right-padded batch of encoder inputs ending in EOS-like ids, padded with ``pad``."""
    width = max(lengths)
    ids = np.full([len(lengths), width], pad, np.int64)
    mask = np.zeros([len(lengths), width], np.int64)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(3, VOCAB - 20, n)
        mask[row, :n] = 1
    return ids, mask


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def family(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    pt = write_model(path, request.param)
    model = xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(path)
    ids, mask = encoder_batch(np.random.default_rng(1), pt.config.pad_token_id)
    return SimpleNamespace(name=request.param, path=path, pt=pt, model=model, ids=ids, mask=mask)


def test_class_and_logits(family):
    config_cls, model_cls, _ = VARIANTS[family.name]
    assert type(family.model).__name__ == "TF" + model_cls
    rng = np.random.default_rng(2)
    dec_vocab = family.pt.config.get_text_config(decoder=True)
    dec_vocab = getattr(family.pt.config, "decoder_vocab_size", None) or family.pt.config.vocab_size
    dec = rng.integers(3, dec_vocab, [len(LENGTHS), 7])
    dec[:, 0] = family.pt.generation_config.decoder_start_token_id
    with torch.no_grad():
        ref = family.pt(
            input_ids=torch.tensor(family.ids),
            attention_mask=torch.tensor(family.mask),
            decoder_input_ids=torch.tensor(dec),
        ).logits.numpy()
    ours = family.model(family.ids, attention_mask=family.mask, decoder_input_ids=dec).logits.numpy()
    assert ours.shape == ref.shape
    diff = np.abs(ours - ref).max()
    assert diff <= 1e-4, f"{family.name}: max abs logits difference {diff}"


def torch_generate(pt, ids, mask, **kwargs) -> np.ndarray:
    with torch.no_grad():
        out = pt.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), do_sample=False, **kwargs)
    return out.numpy()


def assert_same_tokens(ours, ref, pad):
    ours = np.asarray(ours)
    width = max(ours.shape[1], ref.shape[1])

    def padded(a):
        return np.pad(a, [(0, 0), (0, width - a.shape[1])], constant_values=pad)

    np.testing.assert_array_equal(padded(ours), padded(ref))


# Eager (op-by-op) runs of the same loop cover one variant per position scheme and norm placement;
# every variant runs under XLA.
EAGER_VARIANTS = ("bart", "blenderbot_small", "marian_unshared", "m2m_100")
GENERATE_CASES = [
    pytest.param(name, jit, beams, id=f"{name}-{'xla' if jit else 'eager'}-beams{beams}")
    for name in sorted(VARIANTS)
    for jit in (True, False)
    for beams in (1, 4)
    if jit or name in EAGER_VARIANTS
]


@pytest.mark.parametrize(("family", "jit", "num_beams"), GENERATE_CASES, indirect=["family"])
def test_generate_matches_transformers(family, num_beams, jit):
    kwargs = dict(max_new_tokens=NEW, num_beams=num_beams)
    ref = torch_generate(family.pt, family.ids, family.mask, **kwargs)
    ours = family.model.generate(family.ids, attention_mask=family.mask, jit_compile=jit, **kwargs)
    assert_same_tokens(ours, ref, family.pt.generation_config.pad_token_id)


def test_generation_config_from_checkpoint(tmp_path):
    """BART's no_repeat_ngram_size / forced BOS and Marian's bad_words_ids=[[pad]] apply under XLA."""
    pt = write_model(tmp_path, "bart")
    gen = json.loads((tmp_path / "generation_config.json").read_text())
    gen.update(
        no_repeat_ngram_size=2, forced_bos_token_id=0, num_beams=2, bad_words_ids=[[1]], max_new_tokens=NEW
    )
    (tmp_path / "generation_config.json").write_text(json.dumps(gen))
    model = xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    ids, mask = encoder_batch(np.random.default_rng(3), 1)
    ref_model = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    ref = torch_generate(ref_model, ids, mask)
    ours = model.generate(ids, attention_mask=mask)
    assert_same_tokens(ours, ref, 1)
    assert (np.asarray(ours)[:, 1] == 0).all()  # forced BOS after the start token
    del pt


def test_generation_config_from_legacy_config_json(tmp_path):
    """Old checkpoints keep generation options in config.json (no generation_config.json)."""
    write_model(tmp_path, "marian")
    config = json.loads((tmp_path / "config.json").read_text())
    config.update(num_beams=3, bad_words_ids=[[VOCAB - 1]], max_length=10)
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "generation_config.json").unlink()
    model = xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert model.generation_config.num_beams == 3
    assert model.generation_config.bad_words_ids == [[VOCAB - 1]]
    ref_model = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    assert ref_model.generation_config.num_beams == 3
    ids, mask = encoder_batch(np.random.default_rng(4), VOCAB - 1)
    assert_same_tokens(
        model.generate(ids, attention_mask=mask), torch_generate(ref_model, ids, mask), VOCAB - 1
    )


def test_base_model_names_and_missing_final_logits_bias(tmp_path):
    """A file with every tied copy under its own name and without final_logits_bias still loads."""
    pt = write_model(tmp_path, "bart")
    from safetensors.numpy import load_file, save_file

    tensors = load_file(tmp_path / "model.safetensors")
    shared = tensors.pop("model.shared.weight", None)
    if shared is None:
        shared = tensors["model.encoder.embed_tokens.weight"]
    tensors["model.encoder.embed_tokens.weight"] = shared
    tensors["model.decoder.embed_tokens.weight"] = shared
    tensors["lm_head.weight"] = shared
    bias = tensors.pop("final_logits_bias")
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    model = xlagen.TFBartForConditionalGeneration.from_pretrained(tmp_path)
    np.testing.assert_array_equal(model.final_logits_bias.numpy(), 0.0)
    np.testing.assert_array_equal(model.encoder_embed.numpy(), shared)
    assert bias.shape == (1, VOCAB)
    del pt


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="activation_function"):
        xlagen.BartConfig(activation_function="nope")
    with pytest.raises(ValueError, match="d_model"):
        xlagen.MarianConfig(d_model=30, encoder_attention_heads=4)


@pytest.mark.parametrize("family", ["mbart", "marian"], indirect=True)
def test_generate_inside_tf_function(family):
    """generate() traced into a caller's tf.function gives the same tokens."""
    ids = tf.constant(family.ids[:2])
    mask = tf.constant(family.mask[:2])

    @tf.function
    def run(ids, mask):
        return family.model.generate(ids, attention_mask=mask, max_new_tokens=6)

    eager = family.model.generate(family.ids[:2], attention_mask=family.mask[:2], max_new_tokens=6)
    traced = run(ids, mask).numpy()
    assert_same_tokens(traced[:, : np.asarray(eager).shape[1]], np.asarray(eager), -1)


@pytest.mark.parametrize("name", ["bart", "mbart", "marian", "pegasus", "blenderbot", "blenderbot_small"])
def test_tf_model_h5_from_transformers_4_loads(tmp_path, name):
    """Transformers 4.57's TF classes wrote tf_model.h5 (scripts/make_tf_h5_fixtures.py): xlagen loads
    it alone with the logits and greedy tokens of Transformers 5 on the same weights (safetensors)."""
    import shutil
    from pathlib import Path

    fixture = Path(__file__).resolve().parent.parent / "fixtures" / "tf_h5" / name
    for file in ("config.json", "generation_config.json", "tf_model.h5"):
        shutil.copy(fixture / file, tmp_path / file)
    model = xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    pt = transformers.AutoModelForSeq2SeqLM.from_pretrained(fixture).eval()
    ids, mask = encoder_batch(np.random.default_rng(5), pt.config.pad_token_id)
    dec = np.random.default_rng(6).integers(3, VOCAB - 20, [len(LENGTHS), 5])
    with torch.no_grad():
        ref = pt(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            decoder_input_ids=torch.tensor(dec),
        ).logits.numpy()
    ours = model(ids, attention_mask=mask, decoder_input_ids=dec).logits.numpy()
    assert np.abs(ours - ref).max() <= 1e-4
    kwargs = dict(max_new_tokens=8, num_beams=1)
    ref_tokens = torch_generate(pt, ids, mask, **kwargs)
    assert_same_tokens(model.generate(ids, attention_mask=mask, **kwargs), ref_tokens, pt.config.pad_token_id)


def test_sharded_safetensors(tmp_path):
    """A checkpoint Transformers saved in shards (model.safetensors.index.json) loads by name."""
    pt = write_model(tmp_path / "full", "mbart")
    pt.save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    assert len(list((tmp_path / "sharded").glob("model-*.safetensors"))) > 1
    model = xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(tmp_path / "sharded")
    ids, mask = encoder_batch(np.random.default_rng(7), pt.config.pad_token_id)
    dec = np.full([len(LENGTHS), 1], pt.generation_config.decoder_start_token_id)
    with torch.no_grad():
        ref = pt(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            decoder_input_ids=torch.tensor(dec),
        )
    ours = model(ids, attention_mask=mask, decoder_input_ids=dec).logits.numpy()
    assert np.abs(ours - ref.logits.numpy()).max() <= 1e-4


def test_labels_loss_and_fit(tmp_path):
    """``labels`` give Transformers' loss (decoder input shifted right from them); Keras fit trains on it."""
    import keras

    pt = write_model(tmp_path, "marian")
    model = xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    ids, mask = encoder_batch(np.random.default_rng(8), pt.config.pad_token_id)
    labels = np.random.default_rng(9).integers(3, VOCAB - 20, [len(LENGTHS), 6])
    labels[0, -2:] = -100
    with torch.no_grad():
        ref = pt(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), labels=torch.tensor(labels))
    out = model(ids, attention_mask=mask, labels=labels)
    np.testing.assert_allclose(float(out["loss"]), float(ref.loss), rtol=1e-5)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    history = model.fit({"input_ids": ids, "attention_mask": mask, "labels": labels}, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
