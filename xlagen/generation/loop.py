"""The decoding loop: prefill the static KV cache, then one ``tf.while_loop`` of decode steps.

It works on any model offering the cached-decoding protocol:

* ``init_cache(batch, max_length[, encoder_outputs])`` -> a nest of tensors, batch rows on axis 0
  (a row may span several consecutive sub-rows, e.g. one per head),
* ``forward_cached(ids, positions, attention_mask, cache, cache_index)`` -> (last logits, cache),
* ``encode(**encoder_inputs)`` (encoder-decoder models only), run once.

Every shape in here is static, so the same code runs eagerly, as a graph, or compiled by XLA.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf
from tensorflow.compiler.tf2xla.python.xla import dynamic_update_slice

from xlagen.generation import logits_process as lp
from xlagen.generation.sampling import greedy, sample
from xlagen.generation.validation import is_int


class LoopSpec(NamedTuple):
    """What changes the traced program (shapes and code paths). Values live in ``params``."""

    capacity: int  # new-token slots in the cache and output buffer
    do_sample: bool = False
    top_k: int = 0  # 0: off
    use_top_p: bool = False
    use_min_new_tokens: bool = False
    use_repetition_penalty: bool = False
    no_repeat_ngram_size: int = 0
    bad_words_ids: tuple[tuple[int, ...], ...] = ()
    suppress_tokens: tuple[int, ...] = ()
    begin_suppress_tokens: tuple[int, ...] = ()
    forced_bos_token_id: int | None = None
    forced_eos_token_ids: tuple[int, ...] = ()
    output_scores: bool = False
    output_logprobs: bool = False  # per-token log-probabilities (return_dict_in_generate)
    top_k_keep: int = 1  # min_tokens_to_keep of the warpers
    # Model-specific processors (e.g. Whisper's timestamp rules): hashable factories called as
    # ``factory(params, vocab_size) -> LogitsProcessor``, applied after the standard processors.
    extra_processors: tuple = ()
    # (anchor token, token ids): the probabilities (softmax of the raw logits) of these tokens at the
    # first prompt position holding the anchor, from the prefill (Whisper's no-speech probability).
    prompt_probe: tuple[int, tuple[int, ...]] | None = None


class LoopOutput(NamedTuple):
    tokens: tf.Tensor  # [batch, capacity] generated ids, pad after a row finished
    steps: tf.Tensor  # scalar: decode steps run
    scores: tf.Tensor | None  # [batch, capacity, vocab] processed scores (output_scores)
    # [batch, capacity] log-probability of each chosen token: log_softmax of the scores after the
    # logits processors (suppressions, penalties, forced tokens, timestamp rules), before the sampling
    # warpers (temperature, top-k, top-p), so it measures the model's own confidence at any temperature.
    token_logprobs: tf.Tensor | None
    probe: tf.Tensor | None = None  # [batch, len(ids)] probabilities of LoopSpec.prompt_probe


def config_processor_options(gc) -> dict:
    """The ``LoopSpec`` fields that come from a generation config alone (banned and suppressed tokens,
    forced tokens, n-gram blocking): shared by ``generate`` and the server's slot engine."""
    forced_eos = gc.forced_eos_token_id
    if forced_eos is not None:
        forced_eos = (forced_eos,) if is_int(forced_eos) else tuple(forced_eos)
    return dict(
        no_repeat_ngram_size=int(gc.no_repeat_ngram_size or 0),
        bad_words_ids=tuple(tuple(w) for w in gc.bad_words_ids or ()),
        suppress_tokens=tuple(gc.suppress_tokens or ()),
        begin_suppress_tokens=tuple(gc.begin_suppress_tokens or ()),
        forced_bos_token_id=gc.forced_bos_token_id,
        forced_eos_token_ids=forced_eos or (),
    )


def build_processors(
    spec: LoopSpec, params: dict, vocab_size: int, warpers: bool = True
) -> lp.LogitsProcessorList:
    """Processors, then (when sampling and ``warpers``) the warpers, in Transformers' order."""
    procs = lp.LogitsProcessorList()
    if spec.use_repetition_penalty:
        procs.append(lp.RepetitionPenaltyLogitsProcessor(params["repetition_penalty"]))
    if spec.no_repeat_ngram_size > 0:
        procs.append(lp.NoRepeatNGramLogitsProcessor(spec.no_repeat_ngram_size))
    if spec.bad_words_ids:
        procs.append(lp.NoBadWordsLogitsProcessor(spec.bad_words_ids))
    if spec.use_min_new_tokens:
        procs.append(
            lp.MinNewTokensLogitsProcessor(params["min_new_tokens"], params["eos_token_ids"], vocab_size)
        )
    if spec.forced_bos_token_id is not None:
        procs.append(lp.ForcedBOSTokenLogitsProcessor(spec.forced_bos_token_id))
    if spec.forced_eos_token_ids:
        procs.append(lp.ForcedEOSTokenLogitsProcessor(spec.forced_eos_token_ids, params["max_length"]))
    if spec.suppress_tokens:
        procs.append(lp.SuppressTokensLogitsProcessor(spec.suppress_tokens, vocab_size))
    if spec.begin_suppress_tokens:
        procs.append(
            lp.SuppressTokensAtBeginLogitsProcessor(
                spec.begin_suppress_tokens, params["begin_index"], vocab_size
            )
        )
    for factory in spec.extra_processors:
        procs.append(factory(params, vocab_size))
    if warpers:
        procs.extend(build_warpers(spec, params))
    return procs


def build_warpers(spec: LoopSpec, params: dict) -> lp.LogitsProcessorList:
    """The sampling warpers (temperature, top-k, top-p): they shape the draw, not the model's scores."""
    procs = lp.LogitsProcessorList()
    if spec.do_sample:
        procs.append(lp.TemperatureLogitsWarper(params["temperature"]))
        if spec.top_k > 0:
            procs.append(lp.TopKLogitsWarper(spec.top_k, spec.top_k_keep))
        if spec.use_top_p:
            procs.append(lp.TopPLogitsWarper(params["top_p"], spec.top_k_keep))
    return procs


def prefill(
    model,
    input_ids,
    attention_mask,
    capacity: int,
    encoder_inputs: dict | None = None,
    encoder_outputs=None,
    probe: tuple[int, tuple[int, ...]] | None = None,
):
    """Allocate the cache for prompt + ``capacity`` slots and run the prompt through it.

    Encoder-decoder models get ``encoder_outputs``, or compute them here from ``encoder_inputs``.
    ``probe``: see ``LoopSpec.prompt_probe`` (one more logits row per prompt).

    Returns (last logits [B, 1, V], cache, attention mask over all slots [B, L], next position [B],
    probe probabilities [B, k] or None).
    """
    batch = input_ids.shape[0] if input_ids.shape[0] is not None else tf.shape(input_ids)[0]
    prompt_len = input_ids.shape[1] if input_ids.shape[1] is not None else tf.shape(input_ids)[1]
    full_mask = tf.concat([attention_mask, tf.ones([tf.shape(input_ids)[0], capacity], tf.int32)], axis=1)
    positions = tf.maximum(tf.cumsum(attention_mask, axis=1) - 1, 0)
    if encoder_outputs is None and encoder_inputs is not None:
        encoder_outputs = model.encode(**encoder_inputs)
    if encoder_outputs is None:
        cache = model.init_cache(batch, prompt_len + capacity)
    else:
        cache = model.init_cache(batch, prompt_len + capacity, encoder_outputs)
    probs = None
    if probe is None:
        logits, cache = model.forward_cached(input_ids, positions, full_mask, cache, 0)
    else:
        anchor, ids = probe
        at = tf.argmax(tf.cast(tf.equal(input_ids, anchor), tf.int32), axis=1, output_type=tf.int32)
        last = tf.fill(tf.shape(at), tf.cast(prompt_len, tf.int32) - 1)
        both, cache = model.forward_cached(
            input_ids, positions, full_mask, cache, 0, last_only=tf.stack([at, last], axis=1)
        )
        logits = both[:, 1:]
        probs = tf.gather(tf.nn.softmax(tf.cast(both[:, 0], tf.float32)), list(ids), axis=-1)
    return logits, cache, full_mask, tf.reduce_sum(attention_mask, axis=1), probs


def decode(
    model,
    input_ids: tf.Tensor,
    attention_mask: tf.Tensor,
    done: tf.Tensor,
    params: dict,
    spec: LoopSpec,
    encoder_inputs: dict | None = None,
) -> LoopOutput:
    """Greedy search or sampling: up to ``params['max_new_tokens']`` tokens after left-padded prompts.

    Encoder-decoder models run ``model.encode(**encoder_inputs)`` once; its outputs seed the cache
    (``model.init_cache(batch, length, encoder_outputs)``: cross-attention keys/values live there).
    """
    input_ids = tf.cast(input_ids, tf.int32)
    attention_mask = tf.cast(attention_mask, tf.int32)
    batch, prompt_len = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
    capacity = spec.capacity
    pad = tf.cast(params["pad_token_id"], tf.int32)
    eos = tf.reshape(tf.cast(params["eos_token_ids"], tf.int32), [-1])
    vocab_size = model.output_vocab_size
    logits, cache, full_mask, next_position, probe = prefill(
        model, input_ids, attention_mask, capacity, encoder_inputs, probe=spec.prompt_probe
    )
    processors = build_processors(spec, params, vocab_size, warpers=False)
    warpers = build_warpers(spec, params)

    tokens = tf.concat([input_ids, tf.fill([batch, capacity], pad)], axis=1)
    valid = tf.concat([attention_mask > 0, tf.zeros([batch, capacity], tf.bool)], axis=1)
    scores_out = tf.zeros([batch, capacity if spec.output_scores else 0, vocab_size])
    logprobs = tf.zeros([batch, capacity if spec.output_logprobs else 0])
    zero = tf.constant(0)

    def cond(step, tokens, valid, done, logits, cache, scores_out, logprobs):
        return tf.logical_and(step < params["max_new_tokens"], tf.logical_not(tf.reduce_all(done)))

    def body(step, tokens, valid, done, logits, cache, scores_out, logprobs):
        state = lp.DecodeState(tokens, valid, params["prompt_length"] + step, step)
        processed = processors(tf.cast(logits[:, -1, :], tf.float32), state)
        scores = warpers(processed, state) if spec.do_sample else processed
        chosen = sample(scores, params["seed"], step) if spec.do_sample else greedy(scores)
        chosen = tf.where(done, pad, chosen)
        slot = prompt_len + step
        tokens = dynamic_update_slice(tokens, chosen[:, None], [zero, slot])
        valid = dynamic_update_slice(valid, tf.ones([batch, 1], tf.bool), [zero, slot])
        if spec.output_scores:
            scores_out = dynamic_update_slice(scores_out, scores[:, None, :], [zero, step, zero])
        if spec.output_logprobs:
            chosen_logprob = tf.gather(tf.nn.log_softmax(processed), chosen, batch_dims=1)
            logprobs = dynamic_update_slice(
                logprobs, tf.where(done, 0.0, chosen_logprob)[:, None], [zero, step]
            )
        done = tf.logical_or(done, tf.reduce_any(tf.equal(chosen[:, None], eos[None, :]), axis=1))
        logits, cache = model.forward_cached(
            chosen[:, None], (next_position + step)[:, None], full_mask, cache, slot
        )
        return step + 1, tokens, valid, done, logits, cache, scores_out, logprobs

    loop_vars = (zero, tokens, valid, done, logits, cache, scores_out, logprobs)
    step, tokens, _, _, _, _, scores_out, logprobs = tf.while_loop(
        cond, body, loop_vars, maximum_iterations=capacity
    )
    scores_out = scores_out if spec.output_scores else None
    return LoopOutput(tokens[:, prompt_len:], step, scores_out, logprobs, probe)
