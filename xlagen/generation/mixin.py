"""``GenerationMixin.generate()``, the front door: argument checks, shape buckets, the program to run.

Called eagerly (the usual case), ``generate`` checks every argument, pads the prompt batch up to
its bucket, and runs a program compiled once per bucket with XLA. Called inside the user's own
``tf.function`` (Transformers 4.x's recipe), it traces the same loop into their graph instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from xlagen.generation.beam_search import BeamSpec, beam_decode
from xlagen.generation.buckets import Buckets
from xlagen.generation.config import GenerationConfig
from xlagen.generation.loop import LoopSpec, config_processor_options, decode
from xlagen.generation.outputs import finish_beam, finish_decode
from xlagen.generation.programs import ProgramCache, model_fingerprint
from xlagen.generation.validation import as_seed, check_int, check_options, is_int, resolve_lengths


class GenerationMixin:
    """Adds ``generate`` to a model that implements the cached-decoding protocol."""

    buckets: Buckets = Buckets()

    @property
    def output_vocab_size(self) -> int:
        """Width of the logits: the decoder's vocabulary (Marian's may differ from the encoder's)."""
        return self.config.vocab_size

    def _init_generation_state(self) -> None:
        self._programs = ProgramCache(lambda: model_fingerprint(self), lambda: self.variables)

    def warmup(
        self,
        batch_sizes: tuple[int, ...] = (1,),
        prompt_lengths: tuple[int, ...] = (16,),
        max_new_tokens: int = 32,
        **generate_kwargs: Any,
    ) -> dict[str, Any]:
        """Compile the decoding programs of these buckets now, so later calls skip the first-call cost.

        Runs ``generate`` once per (batch size, prompt length) on placeholder prompts with the given
        options (the shape-changing ones matter: ``num_beams``, ``do_sample``, ``max_new_tokens``...).
        Decoder-only models only. Returns ``generation_stats()``.
        """
        if self.config.is_encoder_decoder:
            raise ValueError("warmup() builds decoder-only prompts; call generate() once per bucket instead")
        token = self.generation_config.bos_token_id or 0
        for batch in batch_sizes:
            for length in prompt_lengths:
                ids = np.full(
                    [check_int("batch_sizes", batch, 1), check_int("prompt_lengths", length, 1)], token
                )
                self.generate(ids, max_new_tokens=max_new_tokens, **generate_kwargs)
        return self.generation_stats()

    def generation_stats(self) -> dict[str, Any]:
        """Counters of the compiled-program cache (compilations, calls, program keys)."""
        return self._programs.as_dict()

    # -- argument resolution ------------------------------------------------------------------
    def _resolve_config(self, generation_config: GenerationConfig | None, kwargs: dict) -> GenerationConfig:
        config = generation_config if generation_config is not None else self.generation_config
        if not isinstance(config, GenerationConfig):
            raise TypeError(
                f"generation_config must be an xlagen GenerationConfig, got {type(config).__name__}"
            )
        return config.update(**kwargs)

    def _check_options(self, gc: GenerationConfig) -> None:
        """Check every option's type and range, before anything is traced."""
        check_options(gc, self.output_vocab_size)

    @staticmethod
    def _lengths(gc: GenerationConfig, prompt_len: int) -> tuple[int, int]:
        return resolve_lengths(gc, prompt_len)

    def _pad_id(self, gc: GenerationConfig) -> int:
        if gc.pad_token_id is not None:
            return int(gc.pad_token_id)
        return gc.eos_token_ids[0] if gc.eos_token_ids else 0

    def _params(
        self, gc: GenerationConfig, prompt_len: int, max_new: int, min_new: int, seed
    ) -> dict[str, Any]:
        """Per-call values, fed to the compiled program as tensors (changing them never recompiles)."""
        begin_index = prompt_len
        if prompt_len == 1 and gc.forced_bos_token_id is not None:
            begin_index += 1  # Transformers: begin suppression after a forced BOS
        return {
            "max_new_tokens": np.int32(max_new),
            "min_new_tokens": np.int32(min_new),
            "prompt_length": np.int32(prompt_len),
            "max_length": np.int32(prompt_len + max_new),
            "begin_index": np.int32(begin_index),
            "temperature": np.float32(gc.temperature if gc.do_sample else 1.0),
            "top_p": np.float32(gc.top_p if gc.top_p is not None else 1.0),
            "repetition_penalty": np.float32(gc.repetition_penalty),
            "seed": as_seed(seed) if gc.do_sample else np.zeros([2], np.uint32),
            "eos_token_ids": np.asarray(gc.eos_token_ids, np.int32).reshape([-1]),
            "pad_token_id": np.int32(self._pad_id(gc)),
            "length_penalty": np.float32(gc.length_penalty),
            "fill_token_id": np.int32(self._beam_fill_id(gc)),
        }

    @staticmethod
    def _beam_fill_id(gc: GenerationConfig) -> int:
        """What beam search writes after a sequence ends (Transformers: pad, else first eos, else -1)."""
        if not gc.eos_token_ids:
            return -1
        return int(gc.pad_token_id or gc.eos_token_ids[0])

    @staticmethod
    def _beam_spec(gc: GenerationConfig) -> BeamSpec | None:
        if gc.num_beams == 1:
            return None
        return BeamSpec(gc.num_beams, gc.num_return_sequences, gc.early_stopping)

    def _extra_processors(self, gc: GenerationConfig) -> tuple:
        """Hook: model-specific processor factories (see ``LoopSpec.extra_processors``)."""
        return ()

    def _prompt_probe(self, gc: GenerationConfig) -> tuple[int, tuple[int, ...]] | None:
        """Hook: ``LoopSpec.prompt_probe`` (token probabilities at a prompt position), or None."""
        return None

    def _spec(self, gc: GenerationConfig, capacity: int, min_new: int) -> LoopSpec:
        """The static part of the options: what the traced program's code and shapes depend on."""
        return LoopSpec(
            capacity=capacity,
            do_sample=gc.do_sample,
            top_k=int(gc.top_k or 0) if gc.do_sample else 0,
            use_top_p=bool(gc.do_sample and gc.top_p is not None and gc.top_p < 1.0),
            use_min_new_tokens=min_new > 0 and bool(gc.eos_token_ids),
            use_repetition_penalty=gc.repetition_penalty != 1.0,
            **config_processor_options(gc),
            output_scores=bool(gc.return_dict_in_generate and gc.output_scores),
            output_logprobs=gc.return_dict_in_generate,
            top_k_keep=1 + len(gc.eos_token_ids) if gc.num_beams > 1 else 1,
            extra_processors=tuple(self._extra_processors(gc)),
            prompt_probe=self._prompt_probe(gc),
        )

    @staticmethod
    def _run_loop(model, ids, mask, done, params, spec: LoopSpec, beam: BeamSpec | None, encoder_inputs):
        if beam is None:
            return decode(model, ids, mask, done, params, spec, encoder_inputs)
        return beam_decode(model, ids, mask, done, params, spec, beam, encoder_inputs)

    # -- entry point --------------------------------------------------------------------------
    def generate(
        self,
        input_ids=None,
        attention_mask=None,
        generation_config: GenerationConfig | None = None,
        seed=None,
        jit_compile: bool | None = None,
        decoder_input_ids=None,
        **kwargs,
    ):
        """Generate token ids ``[batch, prompt + new]``, with Transformers' arguments.

        Eagerly, the decoding program is compiled with XLA once per shape bucket (``jit_compile``
        False runs the same loop op by op, for debugging). Inside ``tf.function`` the loop is traced
        into the caller's graph and the output is padded to ``prompt + max_new_tokens``.
        Encoder-decoder models take the encoder input as ``input_ids`` and return decoder tokens
        starting with ``decoder_start_token_id`` (or ``decoder_input_ids``).

        With ``return_dict_in_generate=True`` the result is a ``GenerateOutput``: ``sequences``, and for
        greedy search and sampling ``token_logprobs`` [batch, new], the log-probability of each chosen
        token: ``log_softmax`` of the scores after the logits processors (suppressed, banned and forced
        tokens, penalties, Whisper's timestamp rules) and before the sampling warpers (temperature,
        top-k, top-p). It is the model's confidence in the token, the same at any temperature (what
        Whisper's fallback thresholds expect). In Transformers' terms: ``compute_transition_scores(
        normalize_logits=True)`` on the processed scores, taken before the warpers (its ``scores`` are
        after them; ``output_scores=True`` here returns those too). Beam search returns
        ``sequences_scores`` (the length-penalised sum of log-probabilities) instead.
        """
        if input_ids is None:
            input_ids = kwargs.pop("inputs", None)
        if input_ids is None:
            raise ValueError("generate() needs input_ids (the prompt token ids, shape [batch, length])")
        gc = self._resolve_config(generation_config, kwargs)
        self._check_options(gc)
        if not self.config.is_encoder_decoder:
            if decoder_input_ids is not None:
                raise ValueError("decoder_input_ids is only for encoder-decoder models")
            return self._generate(input_ids, attention_mask, None, gc, seed, jit_compile)
        encoder_inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        return self._generate(decoder_input_ids, None, encoder_inputs, gc, seed, jit_compile)

    def _decoder_start(self, gc: GenerationConfig, batch) -> Any:
        start = gc.decoder_start_token_id
        if start is None:
            start = gc.bos_token_id
        if not is_int(start):
            raise ValueError(
                f"decoder_start_token_id must be set to an int for {type(self).__name__}, got {start!r}"
            )
        return start

    def _generate(self, prompt, prompt_mask, encoder_inputs, gc: GenerationConfig, seed, jit_compile):
        """Shared by all models: ``prompt`` is what the decoder continues (None: the start token)."""
        symbolic = not tf.executing_eagerly() or any(
            tf.is_symbolic_tensor(t) for t in (prompt, *(encoder_inputs or {}).values()) if t is not None
        )
        if symbolic:
            return self._generate_symbolic(prompt, prompt_mask, encoder_inputs, gc, seed)
        return self._generate_eager(prompt, prompt_mask, encoder_inputs, gc, seed, jit_compile)

    def _check_shapes(self, ids_shape, mask_shape, name: str = "input_ids") -> None:
        if len(ids_shape) != 2:
            raise ValueError(f"{name} must be 2-D [batch, length], got shape {tuple(ids_shape)}")
        if mask_shape is not None and tuple(mask_shape) != tuple(ids_shape):
            raise ValueError(
                f"attention_mask shape {tuple(mask_shape)} differs from {name} shape {tuple(ids_shape)}"
            )
        if ids_shape[1] == 0 or ids_shape[0] == 0:
            raise ValueError(f"{name} is empty (shape {tuple(ids_shape)})")

    # -- inside the caller's tf.function ------------------------------------------------------
    def _symbolic_ids(self, ids, mask, name: str):
        ids = tf.convert_to_tensor(ids)
        if not ids.dtype.is_integer:
            raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype.name}")
        mask = tf.ones_like(ids, tf.int32) if mask is None else tf.convert_to_tensor(mask)
        self._check_shapes(ids.shape, mask.shape, name)
        if ids.shape[1] is None:
            raise ValueError(f"inside tf.function, {name} needs a static length (pad to a fixed shape)")
        return ids, mask

    def _generate_symbolic(self, prompt, prompt_mask, encoder_inputs, gc: GenerationConfig, seed):
        if encoder_inputs is not None:
            encoder_inputs = self._symbolic_encoder_inputs(encoder_inputs)
            batch = tf.shape(next(iter(encoder_inputs.values())))[0]
            if prompt is None:
                prompt = tf.fill([batch, 1], self._decoder_start(gc, batch))
        prompt, prompt_mask = self._symbolic_ids(
            prompt, prompt_mask, "input_ids" if encoder_inputs is None else "decoder_input_ids"
        )
        max_new, min_new = self._lengths(gc, prompt.shape[1])
        limit = self.max_positions
        if limit is not None and prompt.shape[1] + max_new > limit:
            raise ValueError(
                f"input length {prompt.shape[1]} + max_new_tokens={max_new} exceeds the model's {limit} positions"
            )
        if seed is None and gc.do_sample:
            seed = tf.random.uniform([2], 0, 2**31 - 1, dtype=tf.int64)
        params = self._params(gc, prompt.shape[1], max_new, min_new, seed)
        beam = self._beam_spec(gc)
        if gc.num_return_sequences > 1 and beam is None:
            n = gc.num_return_sequences
            prompt, prompt_mask = tf.repeat(prompt, n, axis=0), tf.repeat(prompt_mask, n, axis=0)
            if encoder_inputs is not None:
                encoder_inputs = {k: tf.repeat(v, n, axis=0) for k, v in encoder_inputs.items()}
        done = tf.zeros([tf.shape(prompt)[0]], tf.bool)
        spec = self._spec(gc, max_new, min_new)
        out = self._run_loop(self, prompt, prompt_mask, done, params, spec, beam, encoder_inputs)
        if beam is not None:
            return finish_beam(gc, prompt, out, max_new, eager=False)
        return finish_decode(gc, prompt, out)

    def _symbolic_encoder_inputs(self, encoder_inputs: dict) -> dict:
        ids, mask = self._symbolic_ids(
            encoder_inputs["input_ids"], encoder_inputs.get("attention_mask"), "input_ids"
        )
        return {"input_ids": ids, "attention_mask": mask}

    # -- eager: checks, buckets, compiled programs --------------------------------------------
    def _concrete_ids(self, ids, mask, name: str) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids.numpy() if tf.is_tensor(ids) else ids)
        if ids.dtype == object or not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
        mask = (
            np.ones_like(ids, np.int32)
            if mask is None
            else np.asarray(mask.numpy() if tf.is_tensor(mask) else mask)
        )
        self._check_shapes(ids.shape, mask.shape, name)
        if not np.isin(mask, (0, 1)).all():
            raise ValueError("attention_mask must contain only 0 and 1")
        self._check_vocab(ids, mask, name)
        return ids, mask.astype(np.int32)

    def _check_vocab(self, ids: np.ndarray, mask: np.ndarray, name: str) -> None:
        vocab = self.output_vocab_size if name == "decoder_input_ids" else self.config.vocab_size
        live = mask.astype(bool)
        empty = np.flatnonzero(~live.any(axis=1))
        if empty.size:
            raise ValueError(
                f"attention_mask rows {empty.tolist()} are all zeros: every prompt needs a token"
            )
        bad = live & ((ids < 0) | (ids >= vocab))
        if bad.any():
            row, col = map(int, np.argwhere(bad)[0])
            raise ValueError(
                f"{name}[{row}, {col}] = {int(ids[row, col])} is outside the vocabulary [0, {vocab}) "
                "at an attended position (attention_mask is 1 there)"
            )

    def _concrete_encoder_inputs(self, encoder_inputs: dict) -> dict[str, np.ndarray]:
        ids, mask = self._concrete_ids(
            encoder_inputs["input_ids"], encoder_inputs.get("attention_mask"), "input_ids"
        )
        return {"input_ids": ids, "attention_mask": mask}

    def _bucket_encoder_inputs(
        self, encoder_inputs: dict[str, np.ndarray], batch: int
    ) -> dict[str, np.ndarray]:
        """Pad encoder inputs to ``batch`` rows and their length to its bucket (right side, masked)."""
        ids, mask = encoder_inputs["input_ids"], encoder_inputs["attention_mask"]
        length = self.buckets.prompt(ids.shape[1])
        padded_ids = np.zeros([batch, length], np.int32)
        padded_mask = np.zeros([batch, length], np.int32)
        padded_ids[: ids.shape[0], : ids.shape[1]] = np.where(mask.astype(bool), ids, 0)
        padded_mask[: ids.shape[0], : ids.shape[1]] = mask
        padded_mask[ids.shape[0] :, 0] = 1  # filler rows attend to one token
        return {"input_ids": padded_ids, "attention_mask": padded_mask}

    def _generate_eager(self, prompt, prompt_mask, encoder_inputs, gc: GenerationConfig, seed, jit_compile):
        if encoder_inputs is not None:
            encoder_inputs = self._concrete_encoder_inputs(encoder_inputs)
            if prompt is None:
                batch = next(iter(encoder_inputs.values())).shape[0]
                prompt = np.full([batch, 1], self._decoder_start(gc, batch), np.int32)
            name = "decoder_input_ids"
        else:
            name = "input_ids"
        ids, mask = self._concrete_ids(prompt, prompt_mask, name)
        if encoder_inputs is not None and ids.shape[0] != next(iter(encoder_inputs.values())).shape[0]:
            raise ValueError(
                f"{name} has {ids.shape[0]} rows but the encoder input has a different batch size"
            )
        max_new, min_new = self._lengths(gc, ids.shape[1])
        longest = int(mask.sum(axis=1).max())
        limit = self.max_positions
        if limit is not None and longest + max_new > limit:
            raise ValueError(
                f"prompt of {longest} tokens + max_new_tokens={max_new} exceeds the model's "
                f"{limit} positions (config n_positions / max_position_embeddings)"
            )
        params = self._params(gc, ids.shape[1], max_new, min_new, seed)
        beam = self._beam_spec(gc)
        if gc.num_return_sequences > 1 and beam is None:
            n = gc.num_return_sequences
            ids, mask = np.repeat(ids, n, axis=0), np.repeat(mask, n, axis=0)
            if encoder_inputs is not None:
                encoder_inputs = {k: np.repeat(v, n, axis=0) for k, v in encoder_inputs.items()}
        batch, length = ids.shape
        jit = True if jit_compile is None else bool(jit_compile)
        self._programs.calls += 1
        if not jit:
            spec = self._spec(gc, max_new, min_new)
            done = tf.zeros([batch], tf.bool)
            out = self._run_loop(
                self, tf.constant(ids), tf.constant(mask), done, params, spec, beam, encoder_inputs
            )
        else:
            b_batch, b_len = self.buckets.batch_size(batch), self.buckets.prompt(length)
            spec = self._spec(gc, self.buckets.new(max_new), min_new)
            padded_ids = np.zeros([b_batch, b_len], np.int32)
            padded_mask = np.zeros([b_batch, b_len], np.int32)
            padded_ids[:batch, b_len - length :] = np.where(mask.astype(bool), ids, 0)
            padded_mask[:batch, b_len - length :] = mask
            padded_mask[batch:, -1] = 1  # filler rows: one real token so attention stays finite
            done = np.arange(b_batch) >= batch  # filler rows start finished
            if encoder_inputs is not None:
                encoder_inputs = self._bucket_encoder_inputs(encoder_inputs, b_batch)
            shapes = tuple(sorted((k, v.shape) for k, v in (encoder_inputs or {}).items()))
            program = self._program((b_batch, b_len, shapes, spec, beam))
            out = program(padded_ids, padded_mask, done, params, encoder_inputs)
        if beam is not None:
            return finish_beam(gc, ids, out, spec.capacity, eager=True)
        return finish_decode(gc, ids, out, steps=int(out.steps))

    def _program(self, key: tuple):
        """The compiled decoding program for one bucket; traced (and XLA-compiled) on first use."""
        spec, beam = key[-2:]

        def run(input_ids, attention_mask, done, params, encoder_inputs):
            return self._run_loop(self, input_ids, attention_mask, done, params, spec, beam, encoder_inputs)

        return self._programs.get(key, run)
