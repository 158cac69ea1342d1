"""Beam search (and beam sampling) in fixed-shape tensors, so it compiles with XLA.

Same algorithm and stopping rules as Transformers' vectorised beam search: each step keeps the
``2 * num_beams`` (more with several EOS ids) best continuations, the best ``num_beams`` that did
not stop keep running, and those that stopped compete for the ``num_beams`` finished slots with a
length-penalised score. The KV cache holds ``batch * num_beams`` rows on axis 0 (each row may be
split in a fixed number of sub-rows, e.g. heads) and is reordered each step with one gather per
tensor, whatever the model's cache nest looks like.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf
from tensorflow.compiler.tf2xla.python.xla import dynamic_update_slice

from xlagen.generation import logits_process as lp
from xlagen.generation.loop import LoopSpec, build_processors, prefill
from xlagen.generation.sampling import uniform_noise

NEG = -1.0e9


class BeamSpec(NamedTuple):
    """Static beam options (part of the compiled program's key)."""

    num_beams: int
    num_return_sequences: int
    early_stopping: bool | str  # True, False or "never"


class BeamOutput(NamedTuple):
    sequences: tf.Tensor  # [batch, num_return, slots] prompt + generated, fill after the end
    sequence_scores: tf.Tensor  # [batch, num_return] length-penalised log-probabilities
    lengths: tf.Tensor  # [batch, num_return] generated tokens in each returned sequence
    steps: tf.Tensor
    scores: tf.Tensor | None  # [batch * num_beams, capacity, vocab] processed log-probs per step
    probe: tf.Tensor | None = None  # [batch, k] LoopSpec.prompt_probe's probabilities


def reorder_cache(cache, flat_index: tf.Tensor, beam_invariant: tuple[str, ...] = ()):
    """Pick cache rows (axis 0) for the surviving beams: one gather per tensor of the nest.

    Top-level entries named in ``beam_invariant`` (a model's ``beam_invariant_cache_keys``, e.g.
    cross-attention K/V) are identical for every beam of an input, and a beam's parent is always a
    beam of the same input, so they are left as they are instead of being copied every step.
    """
    if isinstance(cache, dict) and beam_invariant:
        return {
            name: part if name in beam_invariant else reorder_cache(part, flat_index)
            for name, part in cache.items()
        }
    return tf.nest.map_structure(lambda t: _gather_rows(t, flat_index), cache)


def _gather_rows(t: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """Rows ``index`` of ``t``, whose axis 0 holds len(index) rows, each possibly split in equal
    consecutive sub-rows ([batch * heads, L, D] self-attention caches): one gather of whole rows."""
    rows = tf.shape(index)[0]
    picked = tf.gather(tf.reshape(t, [rows, -1]), index, axis=0)
    return tf.reshape(picked, tf.shape(t))


def _gather_beams(tensor: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """tensor [B, N, ...], index [B, M] -> [B, M, ...]."""
    return tf.gather(tensor, index, batch_dims=1)


def beam_decode(
    model,
    input_ids: tf.Tensor,
    attention_mask: tf.Tensor,
    done: tf.Tensor,
    params: dict,
    spec: LoopSpec,
    beam: BeamSpec,
    encoder_inputs: dict | None = None,
) -> BeamOutput:
    """Beam search over left-padded prompts [B, Lp]; rows with ``done`` set are ignored fillers."""
    k = beam.num_beams
    input_ids = tf.cast(input_ids, tf.int32)
    attention_mask = tf.cast(attention_mask, tf.int32)
    batch = input_ids.shape[0] if input_ids.shape[0] is not None else tf.shape(input_ids)[0]
    prompt_len = tf.shape(input_ids)[1]
    capacity = spec.capacity
    vocab = model.output_vocab_size
    eos = tf.reshape(tf.cast(params["eos_token_ids"], tf.int32), [-1])
    keep = max(2, 1 + eos.shape[0]) * k  # enough candidates that k can always go on
    fill = tf.cast(params["fill_token_id"], tf.int32)
    length_penalty = params["length_penalty"]
    max_length = params["max_length"]
    prompt_width = params["prompt_length"]

    def expand(t):  # [B, ...] -> [B*K, ...], each row repeated K times (like repeat_interleave)
        return tf.repeat(t, k, axis=0)

    flat_ids, flat_mask = expand(input_ids), expand(attention_mask)
    # The encoder runs once per input. Its outputs stay one row per input when the model's
    # cross-attention shares them among the beams (``encoder_rows_shared_by_beams``, static batch);
    # otherwise they are repeated for the beams.
    enc = None if encoder_inputs is None else model.encode(**encoder_inputs)
    if enc is not None:
        static_rows = input_ids.shape[0] is not None and all(
            t.shape[0] is not None for t in tf.nest.flatten(enc)
        )
        if not (static_rows and getattr(model, "encoder_rows_shared_by_beams", False)):
            enc = tf.nest.map_structure(expand, enc)
    logits, cache, full_mask, next_position, probe = prefill(
        model, flat_ids, flat_mask, capacity, encoder_outputs=enc, probe=spec.prompt_probe
    )
    if probe is not None:  # every beam of an input shares its prompt: keep the first's
        probe = tf.reshape(probe, [batch, k, -1])[:, 0]
    processors = build_processors(spec, params, vocab)

    slots = flat_ids.shape[1] + capacity if flat_ids.shape[1] is not None else prompt_len + capacity
    running = tf.reshape(
        tf.concat([flat_ids, tf.fill([batch * k, capacity], fill)], axis=1), [batch, k, slots]
    )
    valid = tf.concat([flat_mask > 0, tf.zeros([batch * k, capacity], tf.bool)], axis=1)
    running_scores = tf.tile(tf.concat([[0.0], tf.fill([k - 1], NEG)], axis=0)[None, :], [batch, 1])
    finished = running
    finished_scores = tf.fill([batch, k], NEG)
    finished_len = tf.zeros([batch, k], tf.int32)
    is_finished = tf.tile(done[:, None], [1, k])
    unsatisfied = tf.logical_not(done)[:, None]
    top_mask = tf.range(keep) < k
    all_scores = tf.zeros([batch * k, capacity if spec.output_scores else 0, vocab])
    zero = tf.constant(0)

    def cond(step, running, valid, running_scores, finished, finished_scores, finished_len, is_finished,
             unsatisfied, hits, logits, cache, all_scores):  # fmt: skip
        improvement = tf.reduce_any(unsatisfied)
        open_beam = tf.logical_not(tf.logical_and(tf.reduce_all(is_finished), beam.early_stopping is True))
        continuation = tf.logical_not(tf.reduce_all(hits))
        return improvement & open_beam & continuation & (step < params["max_new_tokens"])

    def body(step, running, valid, running_scores, finished, finished_scores, finished_len, is_finished,
             unsatisfied, hits, logits, cache, all_scores):  # fmt: skip
        cur_len = prompt_width + step
        slot = prompt_len + step
        log_probs = tf.nn.log_softmax(tf.cast(logits[:, -1, :], tf.float32), axis=-1)
        state = lp.DecodeState(tf.reshape(running, [batch * k, slots]), valid, cur_len, step)
        log_probs = processors(log_probs, state)
        if spec.output_scores:
            all_scores = dynamic_update_slice(all_scores, log_probs[:, None, :], [zero, step, zero])
        accumulated = tf.reshape(
            tf.reshape(log_probs, [batch, k, vocab]) + running_scores[:, :, None], [batch, -1]
        )
        if spec.do_sample:  # sampling without replacement: Gumbel top-k, then order by score
            u = uniform_noise(params["seed"], step, tf.shape(accumulated))
            _, index = tf.math.top_k(accumulated - tf.math.log(-tf.math.log(u)), k=keep)
            top_scores = tf.gather(accumulated, index, batch_dims=1)
            top_scores, order = tf.math.top_k(top_scores, k=keep)
            index = tf.gather(index, order, batch_dims=1)
        else:
            top_scores, index = tf.math.top_k(accumulated, k=keep)
        parent = index // vocab
        token = index % vocab
        candidates = _gather_beams(running, parent)  # [B, keep, slots]
        candidates = dynamic_update_slice(candidates, token[:, :, None], [zero, zero, slot])
        hits = tf.reduce_any(tf.equal(token[:, :, None], eos[None, None, :]), axis=-1)
        hits = tf.logical_or(hits, cur_len + 1 >= max_length)

        # Beams that go on: the best `k` candidates that did not stop.
        live_scores = top_scores + tf.cast(hits, tf.float32) * NEG
        _, next_index = tf.math.top_k(live_scores, k=k)
        running = _gather_beams(candidates, next_index)
        running_scores = _gather_beams(live_scores, next_index)
        running_parent = _gather_beams(parent, next_index)

        # Beams that stopped compete for the finished slots with a length-penalised score.
        just_finished = tf.logical_and(hits, top_mask[None, :])
        gen_len = tf.cast(cur_len + 1 - prompt_width, tf.float32)
        penalised = top_scores / tf.pow(gen_len, length_penalty)
        full = tf.logical_and(tf.reduce_all(is_finished, axis=-1, keepdims=True), beam.early_stopping is True)
        penalised += tf.cast(full, tf.float32) * NEG
        penalised += tf.cast(tf.logical_not(unsatisfied), tf.float32) * NEG
        penalised += tf.cast(tf.logical_not(just_finished), tf.float32) * NEG
        merged_scores = tf.concat([finished_scores, penalised], axis=1)
        _, best = tf.math.top_k(merged_scores, k=k)
        finished = _gather_beams(tf.concat([finished, candidates], axis=1), best)
        finished_scores = _gather_beams(merged_scores, best)
        finished_len = _gather_beams(
            tf.concat([finished_len, tf.fill(tf.shape(hits), step + 1)], axis=1), best
        )
        is_finished = _gather_beams(tf.concat([is_finished, just_finished], axis=1), best)

        # Reorder the cache to the surviving beams, then feed their new tokens.
        flat_parent = tf.reshape(running_parent + tf.range(batch)[:, None] * k, [-1])
        cache = reorder_cache(cache, flat_parent, getattr(model, "beam_invariant_cache_keys", ()))
        valid = dynamic_update_slice(valid, tf.ones([batch * k, 1], tf.bool), [zero, slot])
        new_tokens = tf.reshape(tf.gather(running, slot, axis=2), [-1, 1])
        logits, cache = model.forward_cached(
            new_tokens, (next_position + step)[:, None], full_mask, cache, slot
        )

        # Could a running beam still beat the worst finished one? (Transformers' heuristic.)
        next_len = cur_len + 1
        if beam.early_stopping == "never":
            best_len = tf.where(length_penalty > 0.0, max_length - prompt_width, next_len - prompt_width)
        else:
            best_len = next_len - prompt_width
        best_running = running_scores[:, :1] / tf.pow(tf.cast(best_len, tf.float32), length_penalty)
        worst_finished = tf.where(is_finished, tf.reduce_min(finished_scores, axis=1, keepdims=True), NEG)
        unsatisfied = tf.logical_and(
            unsatisfied, tf.reduce_any(best_running > worst_finished, axis=-1, keepdims=True)
        )
        return (step + 1, running, valid, running_scores, finished, finished_scores, finished_len, is_finished,
                unsatisfied, hits, logits, cache, all_scores)  # fmt: skip

    hits = tf.zeros([batch, keep], tf.bool)
    loop_vars = (zero, running, valid, running_scores, finished, finished_scores, finished_len, is_finished,
                 unsatisfied, hits, logits, cache, all_scores)  # fmt: skip
    out = tf.while_loop(cond, body, loop_vars, maximum_iterations=capacity)
    step, finished, finished_scores, finished_len, all_scores = out[0], out[4], out[5], out[6], out[12]
    n = beam.num_return_sequences
    return BeamOutput(
        finished[:, :n],
        finished_scores[:, :n],
        finished_len[:, :n],
        step,
        all_scores if spec.output_scores else None,
        probe,
    )
