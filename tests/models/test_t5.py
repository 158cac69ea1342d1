"""T5 (original and v1.1) against Hugging Face Transformers (PyTorch) on the same random weights."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
import transformers
from safetensors.numpy import load_file, save_file

import xlagen

FIXTURES = Path(__file__).parent.parent / "fixtures" / "tf_h5"
TINY_T5 = dict(
    vocab_size=128,
    d_model=32,
    d_kv=8,
    d_ff=64,
    num_layers=2,
    num_heads=4,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=20,
    decoder_start_token_id=0,
)
VARIANTS = {
    "t5": {},  # ReLU, tied head with d_model**-0.5 output scaling
    "t5_v11": {"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False},  # gated-gelu, own head
}
ENCODER_LENGTHS = [3, 9, 14, 1]
NEW = 40  # shares the 64-token XLA program with the full-length runs at 33 and 64
FULL_LENGTHS = (8, 33, 64, 100)


def write_t5(path, seed: int = 0, **overrides) -> transformers.T5ForConditionalGeneration:
    """Save a random T5 (PyTorch) to ``path``; return the eval-mode torch model.

    Weights are perturbed so loading bugs show and greedy outputs depend on history and position:
    layer norms off 1, a strong relative position bias, larger attention/FF outputs, and a small
    shared embedding (a large tied one makes the model repeat its last token). An untied config gets a
    head distinct from the embedding (Transformers 5 creates T5 tied and unties only on load).
    """
    config = transformers.T5Config(**{**TINY_T5, **overrides})
    torch.manual_seed(seed)
    model = transformers.T5ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
            elif "relative_attention_bias" in name:
                p.normal_(0.0, 2.0)
            elif name.endswith(("o.weight", "wo.weight")):
                p.mul_(5.0)
            elif name.endswith("q.weight"):
                p.mul_(3.0)
        model.shared.weight.mul_(0.1)
        if overrides.get("tie_word_embeddings") is False:
            model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.shared.weight))
    model.save_pretrained(path)
    return model


def encoder_batch(
    rng: np.random.Generator, lengths=ENCODER_LENGTHS, vocab: int = 128, width: int | None = None
):
    """A right-padded batch of encoder inputs (how tokenizers pad for T5)."""
    width = width or max(lengths)
    ids = np.zeros([len(lengths), width], np.int64)
    mask = np.zeros([len(lengths), width], np.int64)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(2, vocab, n)
        mask[row, :n] = 1
    return ids, mask


def torch_logits(pt_model, ids, mask, dec):
    with torch.no_grad():
        out = pt_model(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            decoder_input_ids=torch.tensor(dec),
        )
    return out.logits.numpy()


def assert_logits_match(model, pt_model, ids, mask, dec, tol=1e-4):
    ref = torch_logits(pt_model, ids, mask, dec)
    ours = model(tf.constant(ids), attention_mask=tf.constant(mask), decoder_input_ids=tf.constant(dec))
    diff = np.abs(ours.logits.numpy() - ref).max()
    assert diff <= tol, f"max abs logits difference {diff}"


def torch_generate(pt_model, ids, mask, **kwargs) -> np.ndarray:
    with torch.no_grad():
        out = pt_model.generate(
            torch.tensor(ids), attention_mask=torch.tensor(mask), do_sample=False, **kwargs
        )
    return out.numpy()


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def t5(request, tmp_path_factory):
    """One tiny checkpoint per variant: its directory, the torch model, the xlagen model and a batch."""
    path = tmp_path_factory.mktemp(request.param)
    pt_model = write_t5(path, **VARIANTS[request.param])
    model = xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(path)
    ids, mask = encoder_batch(np.random.default_rng(1))
    return SimpleNamespace(name=request.param, path=path, pt=pt_model, model=model, ids=ids, mask=mask)


@pytest.fixture(scope="module")
def reference(t5):
    return torch_generate(t5.pt, t5.ids, t5.mask, max_new_tokens=NEW)


@pytest.fixture(scope="module")
def full_reference(t5):
    """Greedy tokens with eos disabled, so every run produces all of its max_new_tokens."""
    out = torch_generate(t5.pt, t5.ids, t5.mask, max_new_tokens=max(FULL_LENGTHS), eos_token_id=None)
    assert out.shape[1] == 1 + max(FULL_LENGTHS)
    return out


def test_config_and_head_follow_the_variant(t5):
    model = t5.model
    assert isinstance(model, xlagen.TFT5ForConditionalGeneration)
    assert model.max_positions is None
    if t5.name == "t5":
        assert model.config.scale_decoder_outputs and model.lm_head is None
    else:
        assert not model.config.scale_decoder_outputs and model.lm_head is not None
        assert model.config.dense_act_fn == "gelu_new" and model.config.is_gated_act
        head = model.checkpoint_variables()["lm_head.weight"].numpy()
        np.testing.assert_array_equal(head, t5.pt.lm_head.weight.detach().numpy())


def test_logits_match_transformers_on_padded_encoder_batch(t5):
    dec = np.random.default_rng(2).integers(2, 128, [len(ENCODER_LENGTHS), 7])
    dec[:, 0] = 0
    assert_logits_match(t5.model, t5.pt, t5.ids, t5.mask, dec)


def test_encoder_padding_is_masked(t5):
    """Extra right padding of the encoder input does not change the logits."""
    dec = np.zeros([len(ENCODER_LENGTHS), 1], np.int64)
    ids, mask = np.pad(t5.ids, [(0, 0), (0, 5)]), np.pad(t5.mask, [(0, 0), (0, 5)])
    a = t5.model(tf.constant(t5.ids), attention_mask=tf.constant(t5.mask), decoder_input_ids=tf.constant(dec))
    b = t5.model(tf.constant(ids), attention_mask=tf.constant(mask), decoder_input_ids=tf.constant(dec))
    np.testing.assert_allclose(a.logits.numpy(), b.logits.numpy(), atol=1e-5)


@pytest.mark.parametrize("mode", ["eager", "xla"])
def test_greedy_matches_transformers(t5, reference, mode):
    jit = {"eager": False, "xla": None}[mode]
    out = t5.model.generate(t5.ids, attention_mask=t5.mask, max_new_tokens=NEW, jit_compile=jit)
    np.testing.assert_array_equal(out.numpy(), reference)


def test_greedy_matches_transformers_in_user_xla_function(t5, reference):
    fn = tf.function(t5.model.generate, jit_compile=True)
    out = fn(
        tf.constant(t5.ids, tf.int32), attention_mask=tf.constant(t5.mask, tf.int32), max_new_tokens=NEW
    ).numpy()
    assert out.shape == (
        len(ENCODER_LENGTHS),
        1 + NEW,
    )  # static shape, padded like Transformers' XLA generate
    np.testing.assert_array_equal(out[:, : reference.shape[1]], reference)
    assert (out[:, reference.shape[1] :] == t5.model.generation_config.pad_token_id).all()


@pytest.mark.parametrize("length", FULL_LENGTHS)
def test_full_length_generation_matches_transformers(t5, full_reference, length):
    """Transformers 4.x TF's XLA T5 drifted as max_length grew; every length must give HF's tokens."""
    out = t5.model.generate(t5.ids, attention_mask=t5.mask, max_new_tokens=length, eos_token_id=None)
    np.testing.assert_array_equal(out.numpy(), full_reference[:, : 1 + length])


def test_decoder_prompt_matches_transformers(t5):
    """A user decoder prompt sits left-padded in a bucket: slot-based relative bias must still be exact."""
    dec = np.random.default_rng(3).integers(2, 128, [len(ENCODER_LENGTHS), 3])
    dec[:, 0] = 0
    ref = torch_generate(t5.pt, t5.ids, t5.mask, max_new_tokens=NEW, decoder_input_ids=torch.tensor(dec))
    out = t5.model.generate(t5.ids, attention_mask=t5.mask, max_new_tokens=NEW, decoder_input_ids=dec)
    np.testing.assert_array_equal(out.numpy(), ref)


def test_save_pretrained_round_trips_through_transformers(t5, tmp_path):
    t5.model.save_pretrained(tmp_path)
    reloaded = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path).eval()
    dec = np.random.default_rng(4).integers(0, 128, [len(ENCODER_LENGTHS), 5])
    assert_logits_match(t5.model, reloaded, t5.ids, t5.mask, dec)
    again = xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    state = t5.model.state_dict()
    assert sorted(again.state_dict()) == sorted(state)
    for name, value in state.items():
        np.testing.assert_array_equal(again.state_dict()[name], value)


def test_labels_give_transformers_loss(t5):
    labels = np.random.default_rng(5).integers(2, 128, [len(ENCODER_LENGTHS), 6])
    labels[0, 4:] = -100
    with torch.no_grad():
        ref = t5.pt(
            input_ids=torch.tensor(t5.ids), attention_mask=torch.tensor(t5.mask), labels=torch.tensor(labels)
        )
    out = t5.model({"input_ids": t5.ids, "attention_mask": t5.mask, "labels": labels})
    np.testing.assert_allclose(out.logits.numpy(), ref.logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(float(out.loss), float(ref.loss), rtol=1e-5)


def test_same_encoder_bucket_does_not_recompile(tmp_path):
    write_t5(tmp_path, seed=6)
    model = xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    rng = np.random.default_rng(6)
    ids, mask = encoder_batch(rng, [5, 9, 3])
    model.generate(ids, attention_mask=mask, max_new_tokens=10)
    assert model.generation_stats()["compilations"] == 1
    ids2, mask2 = encoder_batch(rng, [12, 2, 6, 16])  # encoder length 16, batch 4: same buckets (16, 4)
    model.generate(ids2, attention_mask=mask2, max_new_tokens=12)
    stats = model.generation_stats()
    assert stats["compilations"] == 1 and stats["calls"] == 2


@pytest.mark.parametrize("name", ["t5", "t5_v11", "t5_sharded"])
def test_tf_model_h5_from_transformers_4_loads(tmp_path, name):
    """tf_model.h5 (single or sharded) written by Transformers 4.57 TF gives the logits Transformers 5
    (PyTorch) computes from the safetensors of the same weights."""
    fixture = FIXTURES / name
    for path in fixture.iterdir():
        if path.name == "config.json" or path.name.startswith("tf_model"):
            shutil.copy(path, tmp_path / path.name)
    model = xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    pt_model = transformers.T5ForConditionalGeneration.from_pretrained(fixture).eval()
    rng = np.random.default_rng(7)
    ids, mask = encoder_batch(rng, [6, 11, 2])
    dec = rng.integers(0, 128, [3, 5])
    assert_logits_match(model, pt_model, ids, mask, dec)


def test_checkpoint_layouts_of_other_writers(tmp_path, caplog):
    """Transformers 4.x config (tie_word_embeddings false, no scale flag), embedding copies under
    ``encoder/decoder.embed_tokens.weight``, the unused decoder cross-attention bias, and a file whose
    only embedding is ``encoder.embed_tokens.weight`` all load to the same model."""
    src = tmp_path / "src"
    pt_model = write_t5(src, seed=8, **VARIANTS["t5_v11"])
    tensors = load_file(src / "model.safetensors")
    config = json.loads((src / "config.json").read_text())
    config["tie_word_embeddings"] = False
    config.pop("scale_decoder_outputs")
    extra = {
        "encoder.embed_tokens.weight": tensors["shared.weight"],
        "decoder.embed_tokens.weight": tensors["shared.weight"],
        "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight": np.zeros(
            [8, 4], np.float32
        ),
    }
    only_copies = {k: v for k, v in tensors.items() if k != "shared.weight"}
    only_copies["encoder.embed_tokens.weight"] = tensors["shared.weight"]
    rng = np.random.default_rng(8)
    ids, mask = encoder_batch(rng, [4, 7])
    dec = rng.integers(0, 128, [2, 4])
    for i, state in enumerate([{**tensors, **extra}, only_copies]):
        path = tmp_path / str(i)
        path.mkdir()
        (path / "config.json").write_text(json.dumps(config))
        save_file(state, path / "model.safetensors", metadata={"format": "pt"})
        with caplog.at_level(logging.WARNING, logger="xlagen"):
            model = xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(path)
        assert "unexpected" not in caplog.text
        assert not model.config.scale_decoder_outputs and model.lm_head is not None
        assert_logits_match(model, pt_model, ids, mask, dec)


def test_other_feed_forward_activation(tmp_path):
    pt_model = write_t5(tmp_path, seed=9, feed_forward_proj="gated-silu", num_decoder_layers=3)
    model = xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert len(model.decoder.blocks) == 3 and model.config.dense_act_fn == "silu"
    rng = np.random.default_rng(9)
    ids, mask = encoder_batch(rng, [5, 2])
    assert_logits_match(model, pt_model, ids, mask, rng.integers(0, 128, [2, 4]))


@pytest.mark.parametrize(
    ("overrides", "option"),
    [
        ({"feed_forward_proj": "gated-mystery"}, "feed_forward_proj"),
        ({"feed_forward_proj": "gelu-relu"}, "feed_forward_proj"),
        ({"is_encoder_decoder": False}, "is_encoder_decoder"),
        ({"relative_attention_num_buckets": 0}, "relative_attention_num_buckets"),
        ({"relative_attention_max_distance": 2}, "relative_attention_max_distance"),
        ({"d_kv": 0}, "d_kv"),
    ],
)
def test_unsupported_config_is_rejected(overrides, option):
    with pytest.raises(ValueError, match=option):
        xlagen.T5Config(**{**TINY_T5, **overrides})


def test_relative_buckets_match_transformers():
    from transformers.models.t5.modeling_t5 import T5Attention

    from xlagen.models.t5.modeling import relative_position_bucket

    relative = torch.arange(-600, 601)
    for num_buckets, max_distance in [(32, 128), (8, 16), (8, 20), (16, 40)]:
        for bidirectional in (True, False):
            ref = T5Attention._relative_position_bucket(relative, bidirectional, num_buckets, max_distance)
            ours = relative_position_bucket(
                tf.constant(relative.numpy(), tf.int32), num_buckets, max_distance, bidirectional
            )
            np.testing.assert_array_equal(ours.numpy(), ref.numpy())


def test_predict_and_fit_walk_the_output(tmp_path):
    keras.utils.set_random_seed(0)
    config = xlagen.T5Config(**{**TINY_T5, "num_layers": 1, "dropout_rate": 0.0})
    model = xlagen.TFT5ForConditionalGeneration(config)
    rng = np.random.default_rng(10)
    ids = rng.integers(2, 128, [8, 6])
    labels = (ids + 1) % 128
    data = {"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": labels}
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    history = model.fit(data, batch_size=4, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids), "decoder_input_ids": labels}
    predicted = model.predict(inputs, batch_size=4, verbose=0)
    assert predicted["logits"].shape == (8, 6, 128)
