"""The decoding loop: prefill the static KV cache, then one ``tf.while_loop`` of decode steps.

It works on any model offering the cached-decoding protocol:

* ``init_cache(batch, max_length)`` -> a nest of tensors with batch on axis 0,
* ``forward_cached(ids, positions, attention_mask, cache, cache_index)`` -> (last logits, cache).

Every shape in here is static, so the same code runs eagerly, as a graph, or compiled by XLA.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf
from tensorflow.compiler.tf2xla.python.xla import dynamic_update_slice

from xlagen.generation.logits_process import (
    LogitsProcessorList,
    MinNewTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from xlagen.generation.sampling import greedy, sample


class LoopSpec(NamedTuple):
    """What changes the traced program (shapes and code paths). Values live in ``params``."""

    capacity: int  # new-token slots in the cache and output buffer
    do_sample: bool
    top_k: int  # 0: off
    use_top_p: bool
    use_min_new_tokens: bool


def build_processors(spec: LoopSpec, params: dict[str, tf.Tensor], vocab_size: int) -> LogitsProcessorList:
    """Processors then (when sampling) warpers, in Transformers' order."""
    procs = LogitsProcessorList()
    if spec.use_min_new_tokens:
        procs.append(
            MinNewTokensLogitsProcessor(params["min_new_tokens"], params["eos_token_ids"], vocab_size)
        )
    if spec.do_sample:
        procs.append(TemperatureLogitsWarper(params["temperature"]))
        if spec.top_k > 0:
            procs.append(TopKLogitsWarper(spec.top_k))
        if spec.use_top_p:
            procs.append(TopPLogitsWarper(params["top_p"]))
    return procs


def decode(
    model,
    input_ids: tf.Tensor,
    attention_mask: tf.Tensor,
    done: tf.Tensor,
    params: dict,
    spec: LoopSpec,
    encoder_inputs: dict | None = None,
):
    """Generate up to ``params['max_new_tokens']`` tokens after left-padded prompts.

    Encoder-decoder models run ``model.encode(**encoder_inputs)`` once; its outputs seed the cache
    (``model.init_cache(batch, length, encoder_outputs)``: cross-attention keys/values live there).

    Returns (tokens [batch, capacity] padded with the pad id, number of steps run).
    """
    input_ids = tf.cast(input_ids, tf.int32)
    attention_mask = tf.cast(attention_mask, tf.int32)
    batch, prompt_len = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
    static_batch = input_ids.shape[0] if input_ids.shape[0] is not None else batch
    static_len = input_ids.shape[1] if input_ids.shape[1] is not None else prompt_len
    capacity = spec.capacity
    pad = tf.cast(params["pad_token_id"], tf.int32)
    eos = tf.reshape(tf.cast(params["eos_token_ids"], tf.int32), [-1])
    vocab_size = model.config.vocab_size

    full_mask = tf.concat([attention_mask, tf.ones([batch, capacity], tf.int32)], axis=1)
    positions = tf.maximum(tf.cumsum(attention_mask, axis=1) - 1, 0)
    next_position = tf.reduce_sum(attention_mask, axis=1)  # position of the first new token
    if encoder_inputs is None:
        cache = model.init_cache(static_batch, static_len + capacity)
    else:
        cache = model.init_cache(static_batch, static_len + capacity, model.encode(**encoder_inputs))
    logits, cache = model.forward_cached(input_ids, positions, full_mask, cache, 0)
    processors = build_processors(spec, params, vocab_size)
    tokens = tf.fill([batch, capacity], pad)

    def cond(step, tokens, done, logits, cache):
        return tf.logical_and(step < params["max_new_tokens"], tf.logical_not(tf.reduce_all(done)))

    def body(step, tokens, done, logits, cache):
        scores = processors(tf.cast(logits[:, -1, :], tf.float32), tokens, step)
        chosen = sample(scores, params["seed"], step) if spec.do_sample else greedy(scores)
        chosen = tf.where(done, pad, chosen)
        tokens = dynamic_update_slice(tokens, chosen[:, None], [tf.constant(0), step])
        done = tf.logical_or(done, tf.reduce_any(tf.equal(chosen[:, None], eos[None, :]), axis=1))
        logits, cache = model.forward_cached(
            chosen[:, None], (next_position + step)[:, None], full_mask, cache, prompt_len + step
        )
        return step + 1, tokens, done, logits, cache

    step, tokens, done, _, _ = tf.while_loop(
        cond, body, (tf.constant(0), tokens, done, logits, cache), maximum_iterations=capacity
    )
    return tokens, step
