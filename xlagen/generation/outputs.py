"""What ``generate`` returns: token ids, or a ``GenerateOutput`` dict, assembled from a loop's output.

Eagerly, bucket filler rows and unused steps are dropped; inside the caller's ``tf.function`` the
static shapes are kept (padded to ``prompt + max_new_tokens``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from xlagen.generation.beam_search import BeamOutput
from xlagen.generation.config import GenerationConfig
from xlagen.generation.loop import LoopOutput


class GenerateOutput(dict):
    """``generate(..., return_dict_in_generate=True)``: ``sequences``, ``token_logprobs`` [batch, new]
    (log-probability of each chosen token after the logits processors, before the sampling warpers:
    see ``generate``) and, with ``output_scores``, ``scores`` (one [batch, vocab] tensor of processed
    and warped scores per step, as in Transformers). Models that probe the prompt (``LoopSpec.
    prompt_probe``) add ``probe_probs`` [batch, k] (Whisper turns it into ``no_speech_prob``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def finish_decode(gc: GenerationConfig, prompt: np.ndarray | tf.Tensor, out: LoopOutput, steps=None):
    """Greedy/sampling results: token ids, or a GenerateOutput when return_dict_in_generate."""
    if steps is None:  # symbolic: keep the static shape
        new, scores, logprobs = out.tokens, out.scores, out.token_logprobs
    else:  # eager: drop bucket filler rows and unused steps
        rows = prompt.shape[0]
        new = np.asarray(out.tokens)[:rows, :steps]
        scores = None if out.scores is None else np.asarray(out.scores)[:rows, :steps]
        logprobs = np.asarray(out.token_logprobs)[:rows, :steps]
    fields = {"token_logprobs": logprobs}
    if out.probe is not None:
        fields["probe_probs"] = out.probe if steps is None else np.asarray(out.probe)[: prompt.shape[0]]
    return assemble(gc, prompt, new, scores, **fields)


def finish_beam(gc: GenerationConfig, prompt, out: BeamOutput, capacity: int, eager: bool):
    """Beam results: [batch * num_return_sequences, prompt + longest returned], like Transformers."""
    n = gc.num_return_sequences
    if eager:
        rows = prompt.shape[0]
        lengths = np.asarray(out.lengths)[:rows]
        new = np.asarray(out.sequences)[:rows, :, -capacity:][:, :, : int(lengths.max())]
        new = new.reshape(rows * n, -1)
        scores = np.asarray(out.sequence_scores)[:rows].reshape(-1)
        all_scores = (
            None if out.scores is None else np.asarray(out.scores)[: rows * gc.num_beams, : int(out.steps)]
        )
        prompt = np.repeat(np.asarray(prompt), n, axis=0)
        probe = None if out.probe is None else np.repeat(np.asarray(out.probe)[:rows], n, axis=0)
    else:
        new = tf.reshape(out.sequences[:, :, -capacity:], [-1, capacity])
        scores, all_scores = tf.reshape(out.sequence_scores, [-1]), out.scores
        prompt = tf.repeat(prompt, n, axis=0)
        probe = None if out.probe is None else tf.repeat(out.probe, n, axis=0)
    fields = {"sequences_scores": scores}
    if probe is not None:
        fields["probe_probs"] = probe
    return assemble(gc, prompt, new, all_scores, **fields)


def assemble(gc: GenerationConfig, prompt, new, step_scores, **fields) -> tf.Tensor | GenerateOutput:
    """``prompt + new`` token ids; with return_dict_in_generate a GenerateOutput holding them,
    ``fields`` (as tensors) and ``step_scores`` [rows, steps, vocab] as a per-step tuple."""
    sequences = tf.concat([tf.cast(prompt, tf.int32), tf.cast(new, tf.int32)], axis=1)
    if not gc.return_dict_in_generate:
        return sequences
    result = GenerateOutput(sequences=sequences, **{k: tf.convert_to_tensor(v) for k, v in fields.items()})
    if step_scores is not None:
        step_scores = tf.convert_to_tensor(step_scores)
        result["scores"] = tuple(step_scores[:, i] for i in range(step_scores.shape[1]))
    return result
