"""The Keras training path: compile(jit_compile=True) + fit on a tiny GPT-2 lowers the loss."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

import xlagen


def test_fit_with_xla_lowers_loss():
    keras.utils.set_random_seed(0)
    config = xlagen.GPT2Config(vocab_size=32, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    model = xlagen.TFGPT2LMHeadModel(config)
    # A learnable pattern: each row counts up from a random start, modulo the vocabulary.
    starts = np.random.default_rng(0).integers(0, 32, [64, 1])
    ids = (starts + np.arange(16)[None, :]) % 32
    data = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=True)
    before = float(model.evaluate(data, ids, batch_size=16, verbose=0))
    history = model.fit(data, ids, batch_size=16, epochs=8, verbose=0)
    after = float(model.evaluate(data, ids, batch_size=16, verbose=0))
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert after < 0.5 * before, (before, after)
    # The trained model continues the pattern.
    out = model.generate(tf.constant([[5, 6, 7, 8]]), max_new_tokens=4, eos_token_id=None).numpy()
    assert out[0, 4:].tolist() == [9, 10, 11, 12]


def test_fit_with_compiled_keras_loss_and_predict():
    keras.utils.set_random_seed(1)
    config = xlagen.GPT2Config(vocab_size=16, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    model = xlagen.TFGPT2LMHeadModel(config)
    ids = np.random.default_rng(1).integers(0, 16, [8, 8])
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True
    )
    history = model.fit(ids[:, :-1], ids[:, 1:], batch_size=4, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    predicted = model.predict(ids, batch_size=4, verbose=0)
    assert predicted["logits"].shape == (8, 8, 16)
