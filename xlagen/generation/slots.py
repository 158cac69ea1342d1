"""Continuous batching in fixed XLA shapes: a static KV cache of S decode slots, two compiled programs.

``generate`` runs one batch from prefill to the last token inside one ``tf.while_loop``. A server
cannot: requests arrive and leave at any time. Here each batch row of one static cache is a *slot*
that holds one request at a time, and the model protocol of ``generate`` (``init_cache``,
``forward_cached``, ``encode``) is driven by two programs instead of one loop:

* ``insert``: prefill a few waiting prompts of one length bucket (with the same ``loop.prefill`` as
  ``generate``), then copy their cache rows into free slots whose indices are traced values (one
  compile per bucket, not per slot). A prompt's left padding is rolled away on the way in, so every
  slot holds its tokens from cache slot 0 and can use all ``max_length`` slots.
* ``step``: advance every live slot by up to ``steps_per_call`` tokens (one ``tf.while_loop``),
  with the same logits processors and sampler as ``generate``. Per-request options (temperature,
  top-k, top-p, seed, penalties, token budgets) are per-slot tensors, so mixing requests never
  recompiles.

All state lives in ``tf.Variable``s updated in place by the compiled programs (XLA aliases a
variable's buffer with its update: the cache is never copied per call). Python only picks slots,
reads the new tokens and frees finished requests (see ``xlagen.serving.scheduler``).

Cache layout contract: self-attention leaves are rank 3, ``[batch * heads, length, head_dim]``
(``layers.kv_cache``); other leaves (cross-attention keys/values, encoder masks) have the batch on
axis 0 and are zero-padded to the slot cache's shape (masks pad with 0 = not attended).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf
from tensorflow.compiler.tf2xla.python.xla import dynamic_update_slice

from xlagen.generation import logits_process as lp
from xlagen.generation.loop import LoopSpec, build_processors, config_processor_options, prefill
from xlagen.generation.programs import ProgramCache, model_fingerprint
from xlagen.generation.sampling import greedy, sample
from xlagen.generation.validation import is_int

# Per-slot request options: name -> (dtype, default). Each is a [slots] variable (seed: [slots, 2]).
SLOT_OPTIONS: dict[str, tuple[tf.DType, Any]] = {
    "do_sample": (tf.bool, False),
    "temperature": (tf.float32, 1.0),
    "top_k": (tf.int32, 0),  # 0: off
    "top_p": (tf.float32, 1.0),
    "seed": (tf.int64, 0),
    "sample_row": (tf.int32, 0),  # row number hashed into the draws (the choice index of the request)
    "repetition_penalty": (tf.float32, 1.0),
    "presence_penalty": (tf.float32, 0.0),
    "frequency_penalty": (tf.float32, 0.0),
    "max_new_tokens": (tf.int32, 1),
    "min_new_tokens": (tf.int32, 0),
    "ignore_eos": (tf.bool, False),
}


@dataclass
class SlotRequest:
    """One request to insert: prompt token ids (decoder-only) or encoder ids (encoder-decoder)."""

    slot: int
    prompt: list[int]
    options: dict[str, Any]


class StepOutput(NamedTuple):
    """What one ``step`` call produced, as NumPy arrays over all slots (``insert``: over its requests)."""

    tokens: np.ndarray  # [rows, steps_per_call] int32: new tokens (the first ``counts[s]`` are real)
    logprobs: np.ndarray  # [slots, steps_per_call] float32: log-probability of each under the model
    top_ids: np.ndarray  # [slots, steps_per_call, top_logprobs] int32: most likely ids at each step
    top_logprobs: np.ndarray  # [slots, steps_per_call, top_logprobs] float32
    counts: np.ndarray  # [slots] int32: tokens produced by this call
    finished: np.ndarray  # [slots] bool: the slot's request has ended (EOS, its budget or the cache)
    stop_reasons: np.ndarray  # [slots] int32: 1 = end-of-sequence token, 2 = length


STOP_EOS, STOP_LENGTH = 1, 2


def pow2_buckets(smallest: int, largest: int) -> tuple[int, ...]:
    """Powers of two from ``smallest`` below ``largest``, then ``largest`` itself."""
    sizes, size = [], max(1, smallest)
    while size < largest:
        sizes.append(size)
        size *= 2
    sizes.append(largest)
    return tuple(sizes)


class SlotEngine:
    """``slots`` decode slots over one static cache of ``max_length`` token slots per row.

    ``prompt_buckets`` are the prefill lengths (decoder prompts, or encoder inputs for
    encoder-decoder models), ``prefill_batch_sizes`` how many waiting prompts of one bucket are
    prefilled together. ``steps_per_call`` tokens per ``step`` call spread the cost of returning to
    Python; ``top_logprobs`` alternatives are returned for every token (OpenAI's ``logprobs``).
    """

    def __init__(
        self,
        model,
        slots: int = 8,
        max_length: int | None = None,
        steps_per_call: int = 4,
        prompt_buckets: tuple[int, ...] | None = None,
        prefill_batch_sizes: tuple[int, ...] = (1, 4),
        top_logprobs: int = 5,
        max_encoder_length: int = 512,
    ) -> None:
        for name, value, low in (("slots", slots, 1), ("steps_per_call", steps_per_call, 1)):
            if not is_int(value) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.model = model
        self.encoder_decoder = bool(model.config.is_encoder_decoder)
        limit = model.max_positions
        if max_length is None:
            max_length = min(limit or 1024, 1024)
        if not is_int(max_length) or max_length < 2 or (limit is not None and max_length > limit):
            raise ValueError(f"max_length must be an integer in [2, {limit}], got {max_length!r}")
        self.slots, self.max_length, self.steps_per_call = slots, max_length, steps_per_call
        self.top_logprobs = top_logprobs
        self.vocab_size = model.output_vocab_size
        gc = model.generation_config
        self.eos_token_ids = list(gc.eos_token_ids)
        pad = gc.pad_token_id if gc.pad_token_id is not None else (self.eos_token_ids or [0])[0]
        self.pad_token_id = int(pad)
        self.decoder_start_token_id = gc.decoder_start_token_id
        if self.encoder_decoder:
            self.max_encoder_length = self._encoder_length_limit(max_encoder_length)
            largest = self.max_encoder_length
        else:
            largest = max_length - 1
        self.prompt_buckets = tuple(sorted(set(prompt_buckets or pow2_buckets(16, largest))))
        if self.prompt_buckets[-1] > largest or self.prompt_buckets[0] < 1:
            raise ValueError(f"prompt_buckets must lie in [1, {largest}], got {self.prompt_buckets}")
        self.prefill_batch_sizes = tuple(sorted(set(min(b, slots) for b in prefill_batch_sizes)))
        # Decode programs attend over the first W cache slots, W the smallest window past every live
        # slot's next writes: one program per window.
        self.windows = pow2_buckets(min(64, max_length), max_length)
        self._positions = np.zeros([slots], np.int64)  # host mirror of each slot's next cache slot
        self._spec = self._static_spec(gc)
        with tf.init_scope():
            self._make_state()
        self._programs = ProgramCache(self._fingerprint, self._variables)

    # -- state ------------------------------------------------------------------------------------
    def _encoder_length_limit(self, requested: int) -> int:
        features = getattr(self.model, "main_input_name", "input_ids") == "input_features"
        if features:
            raise ValueError("the slot engine runs text encoder-decoders (T5); Whisper uses its pipeline")
        return int(requested)

    def _make_state(self) -> None:
        s, length = self.slots, self.max_length

        def var(value, dtype=None):
            return tf.Variable(tf.cast(value, dtype) if dtype else value, trainable=False)

        if self.encoder_decoder:
            ids = tf.zeros([1, self.max_encoder_length], tf.int32)
            enc = self.model.encode(input_ids=ids, attention_mask=tf.zeros_like(ids))
            enc = {k: tf.repeat(v, s, axis=0) for k, v in enc.items()}
            cache = self.model.init_cache(s, length, enc)
        else:
            cache = self.model.init_cache(s, length)
        self._cache = tf.nest.map_structure(var, cache)
        self._tokens = var(tf.zeros([s, length], tf.int32))
        self._mask = var(tf.zeros([s, length], tf.int32))
        self._next = var(tf.zeros([s], tf.int32))  # chosen, not yet run through the model
        self._write = var(tf.zeros([s], tf.int32))  # next cache slot (also the next position id)
        self._prompt_len = var(tf.zeros([s], tf.int32))
        self._generated = var(tf.zeros([s], tf.int32))
        self._finished = var(tf.ones([s], tf.bool))
        self._options = {
            name: var(tf.fill([s, 2] if name == "seed" else [s], tf.cast(default, dtype)))
            for name, (dtype, default) in SLOT_OPTIONS.items()
        }

    def _variables(self) -> list:
        """Every variable the programs capture, in a fixed order (the trace store matches them)."""
        state = [self._tokens, self._mask, self._next, self._write, self._prompt_len, self._generated]
        options = [self._options[name] for name in SLOT_OPTIONS]
        return [*self.model.variables, *tf.nest.flatten(self._cache), *state, self._finished, *options]

    def _fingerprint(self) -> str:
        """What the traced programs depend on besides their key and inputs (see ``ProgramCache``)."""
        settings = (
            self.slots,
            self.max_length,
            self.steps_per_call,
            self.top_logprobs,
            self.eos_token_ids,
            self.pad_token_id,
            self.decoder_start_token_id,
            getattr(self, "max_encoder_length", None),
            self._spec,
            sorted(SLOT_OPTIONS.items(), key=lambda kv: kv[0]),
        )
        return f"SlotEngine {settings!r} " + model_fingerprint(self.model)

    def _static_spec(self, gc) -> LoopSpec:
        """The model's own generation-config processors (shared with ``generate``); per-request
        values (penalties, warpers, budgets) are added per slot in ``_choose``."""
        return LoopSpec(
            capacity=self.max_length,
            use_min_new_tokens=bool(self.eos_token_ids),
            **config_processor_options(gc),
        )

    # -- programs ---------------------------------------------------------------------------------
    @property
    def compilations(self) -> int:
        """Programs traced and compiled so far (constant once every bucket and window was seen)."""
        return self._programs.compilations

    def _insert_fn(self, ids, mask, slots, options, encoder_inputs):
        """Prefill ``ids`` [B, P] (left-padded) and copy the rows into ``slots`` [B] (duplicates of
        a row may repeat its slot: filler rows of a prefill batch write the same data twice)."""
        batch, width = ids.shape
        length = self.max_length
        logits, cache, _, n_real, _ = prefill(self.model, ids, mask, 0, encoder_inputs)
        shift = width - n_real  # left padding to roll away: real tokens land at slots 0 .. n-1
        src = tf.range(length)[None, :] + shift[:, None]  # [B, L] source column of each cache slot
        inside = src < width

        def place(var: tf.Variable, new: tf.Tensor) -> None:
            per_row = new.shape[0] // batch
            rows = tf.reshape(slots[:, None] * per_row + tf.range(per_row)[None, :], [-1, 1])
            if new.shape.rank == 3 and new.shape[1] == width and var.shape[1] == length:
                cols = tf.repeat(src, per_row, axis=0)
                new = tf.gather(new, tf.minimum(cols, width - 1), axis=1, batch_dims=1)
                new = tf.where(tf.repeat(inside, per_row, axis=0)[..., None], new, tf.zeros_like(new))
            else:
                pads = [[0, 0]] + [[0, v - n] for v, n in zip(var.shape[1:], new.shape[1:])]
                new = tf.pad(new, pads)
            var.assign(tf.tensor_scatter_nd_update(var, rows, tf.cast(new, var.dtype)))

        tf.nest.map_structure(place, self._cache, cache)
        at = slots[:, None]
        col = tf.minimum(src, width - 1)
        real_ids = tf.where(inside, tf.gather(ids, col, batch_dims=1), 0)
        valid = tf.range(length)[None, :] < n_real[:, None]
        self._tokens.scatter_nd_update(at, real_ids)
        self._mask.scatter_nd_update(at, tf.cast(valid, tf.int32))
        self._write.scatter_nd_update(at, n_real)
        self._prompt_len.scatter_nd_update(at, n_real)
        for name, value in options.items():
            self._options[name].scatter_nd_update(at, value)
        # The first token comes from the prefill's logits, so it streams right after the insert.
        zeros = tf.zeros_like(n_real)
        state = lp.DecodeState(real_ids, valid, n_real[:, None], zeros[:, None], tf.zeros_like(valid))
        live = tf.ones_like(valid[:, 0])
        picked = self._pick(tf.cast(logits[:, -1, :], tf.float32), state, options, live)
        chosen = picked[0]
        generated = zeros + 1
        finished, stop = self._ended(chosen, generated, n_real, options, live, tf.zeros_like(zeros))
        self._next.scatter_nd_update(at, chosen)
        self._generated.scatter_nd_update(at, generated)
        self._finished.scatter_nd_update(at, finished)
        return tuple(t[:, None] for t in picked) + (generated, finished, stop)

    def _pick(self, logits, state: lp.DecodeState, opts: dict, live: tf.Tensor):
        """The chosen tokens with their log-probabilities under the model and the top alternatives."""
        chosen = self._choose(logits, state, opts, live)
        logp = tf.nn.log_softmax(logits)
        top_lp, top_ids = tf.math.top_k(logp, k=self.top_logprobs)
        chosen = tf.where(live, chosen, self.pad_token_id)
        return chosen, tf.gather(logp, chosen, batch_dims=1), top_ids, top_lp

    def _ended(self, chosen, generated, write, opts, live, stop):
        """(finished, stop reason) after a token: EOS (unless ignored), the budget, or no cache slot
        left to run the token through."""
        eos = tf.constant(self.eos_token_ids or [-1], tf.int32)
        is_eos = tf.reduce_any(tf.equal(chosen[:, None], eos[None, :]), axis=1)
        ended_eos = live & is_eos & tf.logical_not(opts["ignore_eos"])
        ended_len = live & ~ended_eos & ((generated >= opts["max_new_tokens"]) | (write >= self.max_length))
        stop = tf.where(ended_eos, STOP_EOS, tf.where(ended_len, STOP_LENGTH, stop))
        return ended_eos | ended_len, stop

    def _begin_index(self, prompt_len: tf.Tensor) -> tf.Tensor:
        """Transformers' ``begin_suppress_tokens`` index: the prompt length, one more after a forced BOS."""
        if self._spec.forced_bos_token_id is None:
            return prompt_len
        return prompt_len + tf.cast(tf.equal(prompt_len, 1), tf.int32)

    def _choose(self, logits, state: lp.DecodeState, opts: dict, live: tf.Tensor):
        """The next token of every slot: the model's processors, then the request's penalties and
        (for sampling slots) warpers, then argmax or a seeded draw. Costly parts run only when a
        live slot asks for them (``tf.cond``)."""
        column = {k: v[:, None] for k, v in opts.items() if k != "seed"}
        params = {
            "min_new_tokens": column["min_new_tokens"],
            "eos_token_ids": tf.constant(self.eos_token_ids or [-1], tf.int32),
            "max_length": state.cur_len - state.step + column["max_new_tokens"],
            "begin_index": self._begin_index(state.cur_len - state.step),
        }
        scores = build_processors(self._spec, params, self.vocab_size)(logits, state)
        penalties = lp.LogitsProcessorList(
            [
                lp.RepetitionPenaltyLogitsProcessor(column["repetition_penalty"]),
                lp.PresenceFrequencyPenaltyLogitsProcessor(
                    column["presence_penalty"], column["frequency_penalty"]
                ),
            ]
        )
        penalised = live & (
            (opts["repetition_penalty"] != 1.0)
            | (opts["presence_penalty"] != 0.0)
            | (opts["frequency_penalty"] != 0.0)
        )
        scores = tf.cond(tf.reduce_any(penalised), lambda: penalties(scores, state), lambda: scores)
        warpers = lp.LogitsProcessorList(
            [
                lp.TemperatureLogitsWarper(column["temperature"]),
                lp.TopKLogitsWarper(column["top_k"]),
                lp.TopPLogitsWarper(column["top_p"]),
            ]
        )

        def draw():
            drawn = sample(warpers(scores, state), opts["seed"], state.step[:, 0], opts["sample_row"])
            return tf.where(opts["do_sample"], drawn, greedy(scores))

        sampling = tf.reduce_any(live & opts["do_sample"])
        return tf.cond(sampling, draw, lambda: greedy(scores))

    def _is_self_attention(self, leaf) -> bool:
        return leaf.shape.rank == 3 and leaf.shape[1] == self.max_length

    def _step_fn(self, active, window: int):
        """Up to ``k`` decode steps over the first ``window`` cache slots: the host picks the smallest
        window past every live slot's last write, so attention reads what is in use, not the whole
        cache (at 512 slots that was ~50 % of a GPT-2 step at 8 slots)."""
        s, k = self.slots, self.steps_per_call
        opts = {name: v.read_value() for name, v in self._options.items()}
        prompt_len = self._prompt_len.read_value()
        zero = tf.constant(0)
        slot_ids = tf.range(s)
        top = self.top_logprobs

        def body(i, cache, nxt, tokens, mask, write, generated, finished, stop, outs):
            live = tf.logical_and(active, tf.logical_not(finished))
            at = tf.stack([slot_ids, tf.minimum(write, window - 1)], axis=1)
            tokens = tf.tensor_scatter_nd_update(tokens, at, tf.where(live, nxt, tf.gather_nd(tokens, at)))
            mask = tf.tensor_scatter_nd_update(mask, at, tf.where(live, 1, tf.gather_nd(mask, at)))
            logits, cache = self.model.forward_cached(
                nxt[:, None], write[:, None], mask, cache, tf.minimum(write, window - 1)
            )
            write = write + tf.cast(live, tf.int32)
            valid = mask > 0
            state = lp.DecodeState(
                tokens,
                valid,
                (prompt_len + generated)[:, None],
                generated[:, None],
                tf.logical_and(valid, tf.range(window)[None, :] >= prompt_len[:, None]),
            )
            picked = self._pick(tf.cast(logits[:, -1, :], tf.float32), state, opts, live)
            generated = generated + tf.cast(live, tf.int32)
            ended, stop = self._ended(picked[0], generated, write, opts, live, stop)
            finished = finished | ended
            nxt = tf.where(live, picked[0], nxt)
            column = tf.stack([slot_ids, tf.fill([s], i)], 1)
            outs = tuple(
                tf.tensor_scatter_nd_update(buf, column, val) for buf, val in zip(outs[:4], picked)
            ) + (outs[4] + tf.cast(live, tf.int32),)
            return i + 1, cache, nxt, tokens, mask, write, generated, finished, stop, outs

        def cond(i, cache, nxt, tokens, mask, write, generated, finished, stop, outs):
            return tf.logical_and(i < k, tf.reduce_any(tf.logical_and(active, tf.logical_not(finished))))

        outs = (
            tf.fill([s, k], self.pad_token_id),
            tf.zeros([s, k]),
            tf.zeros([s, k, top], tf.int32),
            tf.zeros([s, k, top]),
            tf.zeros([s], tf.int32),
        )

        def view(v):
            value = v.read_value()
            return value[:, :window] if self._is_self_attention(value) else value

        cache = tf.nest.map_structure(view, self._cache)
        loop_vars = (
            zero,
            cache,
            self._next.read_value(),
            self._tokens.read_value()[:, :window],
            self._mask.read_value()[:, :window],
            self._write.read_value(),
            self._generated.read_value(),
            self._finished.read_value(),
            tf.zeros([s], tf.int32),
            outs,
        )
        _, cache, nxt, tokens, mask, write, generated, finished, stop, outs = tf.while_loop(
            cond, body, loop_vars, maximum_iterations=k
        )

        def store(v, t):
            if t.shape[1] != v.shape[1]:  # a window: written back in place
                t = dynamic_update_slice(v.read_value(), t, tf.zeros([t.shape.rank], tf.int32))
            v.assign(t)

        tf.nest.map_structure(store, self._cache, cache)
        self._next.assign(nxt)
        store(self._tokens, tokens)
        store(self._mask, mask)
        self._write.assign(write)
        self._generated.assign(generated)
        self._finished.assign(finished)
        return outs + (finished, stop)

    # -- host API ---------------------------------------------------------------------------------
    def bucket(self, length: int) -> int:
        """The prefill bucket of a prompt of ``length`` tokens (ValueError past the largest)."""
        for size in self.prompt_buckets:
            if size >= length:
                return size
        raise ValueError(
            f"prompt of {length} tokens is longer than the largest bucket {self.prompt_buckets[-1]}"
        )

    def prefill_batch(self, n: int) -> int:
        """The prefill batch size used for ``n`` waiting prompts of one bucket (at most the largest)."""
        for size in self.prefill_batch_sizes:
            if size >= n:
                return size
        return self.prefill_batch_sizes[-1]

    def option_values(self, options: dict[str, Any]) -> dict[str, Any]:
        """Every slot option, defaults filled in (unknown names raise)."""
        unknown = set(options) - set(SLOT_OPTIONS)
        if unknown:
            raise ValueError(f"unknown slot options: {sorted(unknown)}")
        values = {name: options.get(name, default) for name, (_, default) in SLOT_OPTIONS.items()}
        seed = np.asarray(values["seed"], np.int64).reshape(-1)
        values["seed"] = np.concatenate([seed, np.zeros([2 - seed.size], np.int64)])[:2]
        return values

    def insert(self, requests: list[SlotRequest]) -> StepOutput:
        """Prefill ``requests`` (one bucket, at most the largest prefill batch) into their slots and
        choose each one's first token. The output's rows are the requests' (not the slots'): one
        token each, and whether that token already ended the request."""
        if not requests or len(requests) > self.prefill_batch_sizes[-1]:
            raise ValueError(f"insert takes 1..{self.prefill_batch_sizes[-1]} requests, got {len(requests)}")
        width = self.bucket(max(len(r.prompt) for r in requests))
        batch = self.prefill_batch(len(requests))
        rows = list(requests) + [requests[0]] * (batch - len(requests))  # filler: row 0 again
        ids = np.zeros([batch, width], np.int32)
        mask = np.zeros([batch, width], np.int32)
        for j, r in enumerate(rows):
            if not 0 <= r.slot < self.slots:
                raise ValueError(f"slot {r.slot} is outside 0..{self.slots - 1}")
            if self.encoder_decoder:
                ids[j, : len(r.prompt)] = r.prompt
                mask[j, : len(r.prompt)] = 1
            else:
                ids[j, width - len(r.prompt) :] = r.prompt
                mask[j, width - len(r.prompt) :] = 1
        values = [self.option_values(r.options) for r in rows]
        options = {
            name: np.asarray([v[name] for v in values], dtype.as_numpy_dtype)
            for name, (dtype, _) in SLOT_OPTIONS.items()
        }
        slots = np.asarray([r.slot for r in rows], np.int32)
        for r in requests:
            self._positions[r.slot] = 1 if self.encoder_decoder else len(r.prompt)
        program = self._programs.get(("insert", batch, width), self._insert_fn)
        if self.encoder_decoder:  # the decoder starts from its start token; the prompt is encoded
            decoder = np.full([batch, 1], self.decoder_start_token_id, np.int32)
            encoder_inputs = {"input_ids": ids, "attention_mask": mask}
            out = program(decoder, np.ones_like(decoder), slots, options, encoder_inputs)
        else:
            out = program(ids, mask, slots, options, None)
        return StepOutput(*(np.asarray(t)[: len(requests)] for t in out))

    def step(self, active: np.ndarray) -> StepOutput:
        """Advance the ``active`` [slots] bool slots by up to ``steps_per_call`` tokens."""
        active = np.asarray(active, bool)
        reach = int(self._positions[active].max()) + self.steps_per_call if active.any() else 0
        window = next((w for w in self.windows if w >= reach), self.windows[-1])
        program = self._programs.get(("step", window), lambda a: self._step_fn(a, window))
        out = program(active)
        tokens, logprobs, top_ids, top_lp, counts, finished, stop = (np.asarray(t) for t in out)
        self._positions += counts
        return StepOutput(tokens, logprobs, top_ids, top_lp, counts, finished, stop)

    def warmup(self) -> int:
        """Compile every program (each prefill bucket and batch size, and the decode step) now, on
        placeholder prompts in slot 0. Returns the number of compilations."""
        for width in self.prompt_buckets:
            for batch in self.prefill_batch_sizes:
                token = self.eos_token_ids[0] if self.eos_token_ids else 0
                self.insert([SlotRequest(0, [token] * width, {})] * batch)
        first = np.eye(self.slots, dtype=bool)[0]
        for window in self.windows:  # slot 0 placed so that each window is the one needed
            self._positions[0] = max(0, window - self.steps_per_call)
            self.step(first)
        return self.compilations
