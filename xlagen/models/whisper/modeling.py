"""Whisper (speech-to-text encoder-decoder) as a Keras model with TensorFlow numerics.

Weights keep Hugging Face's state-dict names and PyTorch layouts (``model.encoder.conv1.weight``
``[out, in, k]``, linear weights ``[out, in]``), so safetensors, ``tf_model.h5`` and (through
``xlagen.loading.ctranslate2``) CTranslate2 checkpoints all load by name.

The encoder reads log-mel features ``[batch, num_mel_bins, 2 * max_source_positions]`` (3000 frames
for 30 s of audio): two GELU convolutions (the second with stride 2), positions added from the
checkpoint's ``embed_positions`` table, pre-LN Transformer blocks. The decoder has learned positions,
causal self-attention, cross-attention on the encoder output and a projection tied to its token
embedding. For ``generate`` the cross-attention keys/values are computed once per utterance and kept
in the cache next to the static self-attention buffers.
"""

from __future__ import annotations

import math
import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from xlagen.generation.config import GenerationConfig
from xlagen.generation.programs import ProgramCache, model_fingerprint
from xlagen.modeling_utils import (
    ModelOutput,
    Seq2SeqLMTraining,
    TFPreTrainedModel,
    _register_output_tree,
    seq2seq_lm_loss,
    shift_tokens_right,
)
from xlagen.models.activations import ACTIVATIONS, gelu_exact
from xlagen.models.layers import (
    DecoderLayer,
    EncoderLayer,
    LayerNorm,
    WeightLayer,
    causal_allowed,
    kv_caches,
    linear,
    output_positions,
    shape_list,
)
from xlagen.models.whisper.configuration import WhisperConfig
from xlagen.models.whisper.decoding import Renormalize, TimestampRules, decoder_prompt, special_tokens


class Seq2SeqLMOutput(ModelOutput):
    """Output of an encoder-decoder call: ``logits`` [batch, length, vocab], ``encoder_last_hidden_state``."""


_register_output_tree(Seq2SeqLMOutput)


def conv1d(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor, stride: int) -> tf.Tensor:
    """PyTorch ``Conv1d(kernel_size=3, padding=1)`` on channels-last ``x`` [B, T, C_in]; weight [out, in, k]."""
    x = tf.pad(x, [[0, 0], [1, 1], [0, 0]])
    kernel = tf.transpose(weight, [2, 1, 0])  # -> [k, in, out]
    return tf.nn.conv1d(x, kernel, stride=stride, padding="VALID") + bias


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> np.ndarray:
    """Whisper's fixed encoder position table [length, channels]: sines then cosines."""
    if channels % 2:
        raise ValueError(f"sinusoidal positions need an even number of channels, got {channels}")
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv = np.exp(-increment * np.arange(channels // 2, dtype=np.float64))
    scaled = np.arange(length, dtype=np.float64)[:, None] * inv[None, :]
    return np.concatenate([np.sin(scaled), np.cos(scaled)], axis=1).astype(np.float32)


def whisper_layer(config: WhisperConfig, prefix: str, init, decoder: bool) -> EncoderLayer:
    """One pre-layernorm block (the shared ``EncoderLayer`` / ``DecoderLayer``); Whisper's ``k_proj``
    has no bias."""
    heads = config.decoder_attention_heads if decoder else config.encoder_attention_heads
    ffn = config.decoder_ffn_dim if decoder else config.encoder_ffn_dim
    cls = DecoderLayer if decoder else EncoderLayer
    return cls(
        prefix,
        config.d_model,
        heads,
        ffn,
        ACTIVATIONS[config.activation_function],
        normalize_before=True,
        dropout=config.dropout,
        attention_dropout=config.attention_dropout,
        activation_dropout=config.activation_dropout,
        init=init,
        attention_biases=("q", "v", "out"),
        name=f"{'decoder' if decoder else 'encoder'}_layer_{prefix.rsplit('.', 1)[-1]}",
    )


class TFWhisperForConditionalGeneration(Seq2SeqLMTraining, TFPreTrainedModel):
    """Whisper with its language-modelling head ``proj_out`` (tied to ``model.decoder.embed_tokens``)."""

    # Cache entries shared by all beams of an input: beam search does not reorder them.
    beam_invariant_cache_keys = ("cross",)
    # Cross-attention takes one encoder row per input for all its beams (``layers.attend``), so
    # beam search neither repeats the encoder output per beam nor reads the same K/V K times.
    encoder_rows_shared_by_beams = True

    config_class = WhisperConfig
    main_input_name = "input_features"

    def __init__(self, config: WhisperConfig, **kw) -> None:
        super().__init__(config, **kw)
        c = config.d_model
        init = keras.initializers.RandomNormal(stddev=config.init_std)
        self.encoder_stem = WeightLayer(name="encoder_stem")
        self.conv1_w = self.encoder_stem.new_weight(
            "model.encoder.conv1.weight", (c, config.num_mel_bins, 3), init
        )
        self.conv1_b = self.encoder_stem.new_weight("model.encoder.conv1.bias", (c,))
        self.conv2_w = self.encoder_stem.new_weight("model.encoder.conv2.weight", (c, c, 3), init)
        self.conv2_b = self.encoder_stem.new_weight("model.encoder.conv2.bias", (c,))
        self.enc_pos = self.encoder_stem.new_weight(
            "model.encoder.embed_positions.weight",
            (config.max_source_positions, c),
            keras.initializers.Constant(sinusoids(config.max_source_positions, c)),
        )
        self.encoder_stem.built = True
        self.encoder_layers = [
            whisper_layer(config, f"model.encoder.layers.{i}", init, decoder=False)
            for i in range(config.encoder_layers)
        ]
        self.encoder_norm = LayerNorm("model.encoder.layer_norm", c, 1e-5, name="encoder_layer_norm")
        self.embeddings = WeightLayer(name="decoder_embeddings")
        self.embed_tokens = self.embeddings.new_weight(
            "model.decoder.embed_tokens.weight", (config.vocab_size, c), init
        )
        self.dec_pos = self.embeddings.new_weight(
            "model.decoder.embed_positions.weight", (config.max_target_positions, c), init
        )
        self.embeddings.built = True
        self.decoder_layers = [
            whisper_layer(config, f"model.decoder.layers.{i}", init, decoder=True)
            for i in range(config.decoder_layers)
        ]
        self.decoder_norm = LayerNorm("model.decoder.layer_norm", c, 1e-5, name="decoder_layer_norm")
        if config.tie_word_embeddings:
            self.proj_out = None
        else:
            self.proj_out = WeightLayer(name="proj_out")
            self.proj_out_w = self.proj_out.new_weight("proj_out.weight", (config.vocab_size, c), init)
            self.proj_out.built = True
        self.dropout = keras.layers.Dropout(config.dropout)
        self.built = True

    # Checkpoints store the tied head once (under the embedding); a copy in the file is ignored.
    ignored_checkpoint_keys = (r"^proj_out\.weight$",)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, config=None, **kwargs):
        """Load a Hugging Face checkpoint directory, or a CTranslate2 Whisper directory (model.bin)."""
        from xlagen.loading.ctranslate2 import is_ctranslate2_dir
        from xlagen.loading.hub import resolve_pretrained_dir
        from xlagen.models.whisper.ctranslate2 import load_ctranslate2_whisper

        try:
            directory = resolve_pretrained_dir(pretrained_model_name_or_path)
        except OSError:
            directory = None
        if directory is not None and is_ctranslate2_dir(directory):
            for unsupported in ("from_pt", "cache_dir", "revision", "token", "use_auth_token"):
                kwargs.pop(unsupported, None)
            return load_ctranslate2_whisper(directory, model_class=cls, config=config, **kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, config=config, **kwargs)

    # -- encoder --------------------------------------------------------------------------------
    def encode(self, input_features=None, training=False, encoder_hidden_states=None) -> dict[str, tf.Tensor]:
        """Run the audio encoder on ``input_features`` [B, n_mels, frames]; returns a dict of outputs.

        ``last_hidden_state`` is [B, max_source_positions, d_model]. Given ``encoder_hidden_states``
        (an earlier result, as ``generate(encoder_outputs=...)`` passes it), that is returned as is.
        """
        if encoder_hidden_states is not None:
            return {"last_hidden_state": tf.cast(encoder_hidden_states, self.conv1_w.dtype)}
        x = tf.transpose(tf.cast(input_features, self.conv1_w.dtype), [0, 2, 1])  # [B, frames, mels]
        x = gelu_exact(conv1d(x, self.conv1_w, self.conv1_b, 1))
        x = gelu_exact(conv1d(x, self.conv2_w, self.conv2_b, 2))
        h = self.dropout(x + self.enc_pos, training=training)
        for layer in self.encoder_layers:
            h = layer(h, training=training)
        return {"last_hidden_state": self.encoder_norm(h)}

    def _check_features_shape(self, shape, dtype_name: str, name: str = "input_features") -> None:
        c = self.config
        want = (c.num_mel_bins, c.num_frames)
        if len(shape) != 3:
            raise ValueError(
                f"{name} must be 3-D [batch, num_mel_bins={want[0]}, frames={want[1]}], got shape {tuple(shape)}"
            )
        got = tuple(shape[1:])
        if any(g is not None and g != w for g, w in zip(got, want)):
            raise ValueError(
                f"{name} has shape {tuple(shape)} but this model takes [batch, {want[0]}, {want[1]}] "
                f"(num_mel_bins={c.num_mel_bins}; {want[1]} frames = 2 * max_source_positions, i.e. audio "
                "padded or cut to 30 s by the feature extractor)"
            )
        if shape[0] == 0:
            raise ValueError(f"{name} is empty (shape {tuple(shape)})")
        if dtype_name not in ("float16", "bfloat16", "float32", "float64"):
            raise TypeError(f"{name} must hold floating-point log-mel features, got dtype {dtype_name}")

    # -- forward (all positions) ------------------------------------------------------------------
    def _embed(self, ids, positions, training=False):
        vocab, n_pos = self.config.vocab_size, self.config.max_target_positions
        ids = tf.clip_by_value(tf.cast(ids, tf.int32), 0, vocab - 1)
        pos = tf.clip_by_value(tf.cast(positions, tf.int32), 0, n_pos - 1)
        return self.dropout(
            tf.gather(self.embed_tokens, ids) + tf.gather(self.dec_pos, pos), training=training
        )

    def _logits(self, h):
        weight = self.embed_tokens if self.proj_out is None else self.proj_out_w
        return linear(h, weight)

    def call(
        self,
        input_features=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        decoder_position_ids=None,
        encoder_outputs=None,
        labels=None,
        attention_mask=None,
        training=False,
    ) -> Seq2SeqLMOutput:
        """Logits for every decoder position, like Transformers' ``WhisperForConditionalGeneration(...)``.

        ``input_features`` [B, n_mels, frames] (or a dict of all inputs, as Keras ``fit`` passes);
        ``decoder_input_ids`` [B, T], or ``labels`` alone (shifted right behind the start token).
        ``attention_mask`` (over feature frames) is accepted and ignored, as in Transformers.
        """
        if isinstance(input_features, dict):
            inputs = dict(input_features)
            input_features = inputs.get("input_features")
            decoder_input_ids = inputs.get("decoder_input_ids", decoder_input_ids)
            decoder_attention_mask = inputs.get("decoder_attention_mask", decoder_attention_mask)
            decoder_position_ids = inputs.get("decoder_position_ids", decoder_position_ids)
            labels = inputs.get("labels", labels)
        if encoder_outputs is None:
            if input_features is None:
                raise ValueError("input_features (or encoder_outputs) is required")
            features = tf.convert_to_tensor(input_features)
            self._check_features_shape(features.shape, features.dtype.name)
            encoder_outputs = self.encode(features, training=training)
        enc = (
            encoder_outputs["last_hidden_state"] if isinstance(encoder_outputs, dict) else encoder_outputs[0]
        )
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("decoder_input_ids (or labels) is required")
            decoder_input_ids = self._shift_right(labels)
        ids = tf.convert_to_tensor(decoder_input_ids)
        b, t = tf.shape(ids)[0], tf.shape(ids)[1]
        mask = decoder_attention_mask
        if mask is None:
            mask = tf.ones([b, t], tf.int32)
        pos = decoder_position_ids
        if pos is None:
            pos = tf.broadcast_to(tf.range(t)[None, :], [b, t])
        h = self._embed(ids, pos, training)
        allowed = causal_allowed(mask, 0, t)
        for layer in self.decoder_layers:
            kv = layer.encoder_attn.key_value(enc)
            h, _ = layer(h, allowed, kv, training=training)
        logits = self._logits(self.decoder_norm(h))
        out = Seq2SeqLMOutput(logits=logits, encoder_last_hidden_state=enc)
        if labels is not None:
            out["loss"] = seq2seq_lm_loss(logits, labels)
        return out

    def _shift_right(self, labels):
        pad = self.config.pad_token_id if self.config.pad_token_id is not None else 0
        return shift_tokens_right(labels, self.config.decoder_start_token_id, pad)

    # -- cached decoding protocol (used by xlagen.generation) -----------------------------------
    def init_cache(self, batch_size: int, max_length: int, encoder_outputs: dict) -> dict:
        """Self-attention K/V buffers of ``max_length`` slots and cross-attention K/V of the encoder output."""
        c = self.config
        heads = c.decoder_attention_heads
        enc = encoder_outputs["last_hidden_state"]
        return {
            "self": kv_caches(c.decoder_layers, batch_size, heads, max_length, c.d_model // heads),
            "cross": tuple(layer.encoder_attn.key_value(enc) for layer in self.decoder_layers),
        }

    def forward_cached(self, input_ids, position_ids, attention_mask, cache, cache_index, last_only=True):
        """Run decoder tokens [B, T] at cache slots ``cache_index``.. and return (logits, new cache).

        ``attention_mask`` [B, max_length] covers every self-attention slot; logits are for the last
        position only when ``last_only``, else for all T.
        """
        t = shape_list(input_ids)[1]
        h = self._embed(input_ids, position_ids)
        allowed = causal_allowed(attention_mask, cache_index, t)
        new_self = []
        for layer, layer_cache, kv in zip(self.decoder_layers, cache["self"], cache["cross"]):
            h, layer_cache = layer(h, allowed, kv, cache=layer_cache, cache_index=cache_index)
            new_self.append(layer_cache)
        h = output_positions(h, last_only)
        logits = self._logits(self.decoder_norm(h))
        return logits, {"self": tuple(new_self), "cross": cache["cross"]}

    @property
    def max_positions(self) -> int:
        return self.config.max_target_positions

    # -- generate -------------------------------------------------------------------------------
    def generate(
        self,
        input_features=None,
        generation_config: GenerationConfig | None = None,
        seed=None,
        jit_compile: bool | None = None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        attention_mask=None,
        language: str | list[str] | None = None,
        task: str | None = None,
        return_timestamps: bool | None = None,
        encoder_outputs=None,
        max_initial_timestamp_index: int | None = None,
        renormalize_scores: bool = False,
        return_no_speech_prob: bool = False,
        **kwargs,
    ):
        """Transcribe log-mel ``input_features`` [B, n_mels, frames] into token ids [B, prompt + new].

        The decoder prompt is ``decoder_input_ids`` when given, else ``<|startoftranscript|>``, then
        for multilingual models the language and task tokens (``language`` detected per row from
        the audio when not given, as Transformers does), then ``<|notimestamps|>`` unless
        ``return_timestamps``. With ``return_timestamps`` the output interleaves timestamp tokens
        with the text under Whisper's timestamp rules (``max_initial_timestamp_index``: latest
        first timestamp, in 0.02 s steps; default the generation config's, else 50 = 1 s).
        ``encoder_outputs`` (``last_hidden_state`` [B, positions, d_model], e.g. from ``encode``)
        replaces ``input_features`` to decode the same audio again without re-encoding it.
        ``renormalize_scores``: processed scores become log-probabilities again after masking (the
        reference implementation's beam scores; Transformers leaves them unnormalised).
        ``return_no_speech_prob``: the result is a ``GenerateOutput`` with ``no_speech_prob`` [rows],
        the probability of ``<|nospeech|>`` right after ``<|startoftranscript|>`` (softmax of the raw
        logits, as the reference computes it), taken from the same prompt pass at one extra row.
        Other options go to the generation engine as for text models (``num_beams``, sampling...).
        ``attention_mask`` over feature frames is accepted and ignored (short-form, as in Transformers).
        """
        del attention_mask
        if input_features is None:
            input_features = kwargs.pop("inputs", None)
        if encoder_outputs is not None:
            if input_features is not None:
                raise ValueError("pass either input_features or encoder_outputs, not both")
            hidden = encoder_outputs
            if isinstance(hidden, dict):
                hidden = hidden["last_hidden_state"]
            elif isinstance(hidden, list | tuple):
                hidden = hidden[0]
            encoder_inputs = {"encoder_hidden_states": hidden}
        elif input_features is None:
            raise ValueError("generate() needs input_features (log-mel features [batch, n_mels, frames])")
        else:
            encoder_inputs = {"input_features": input_features}
        gc = self._resolve_config(generation_config, kwargs)
        self._check_options(gc)
        tokens = special_tokens(self)
        if return_timestamps:
            if tokens.timestamp_begin is None:
                raise ValueError(
                    "return_timestamps=True needs a vocabulary with timestamp tokens after <|notimestamps|> "
                    "(generation_config.no_timestamps_token_id)"
                )
            index = max_initial_timestamp_index
            if index is None:
                index = gc._extra.get("max_initial_timestamp_index", 50)
            if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
                raise ValueError(f"max_initial_timestamp_index must be an int >= 0 or None, got {index!r}")
            gc._extra["_xlagen_whisper_rules"] = TimestampRules(
                tokens.eot, tokens.no_timestamps, tokens.timestamp_begin, index, bool(renormalize_scores)
            )
        elif renormalize_scores:
            gc._extra["_xlagen_whisper_rules"] = Renormalize()
        if return_no_speech_prob:
            if tokens.no_speech is None:
                raise ValueError("return_no_speech_prob=True: this vocabulary has no <|nospeech|> token")
            gc._extra["_xlagen_whisper_probe"] = (tokens.sot, (tokens.no_speech,))
            gc.return_dict_in_generate = True
        symbolic = not tf.executing_eagerly() or any(
            tf.is_symbolic_tensor(t) for t in encoder_inputs.values()
        )
        if decoder_input_ids is None:
            batch_size = (
                tf.shape(next(iter(encoder_inputs.values())))[0]
                if symbolic
                else int(np.shape(next(iter(encoder_inputs.values())))[0])
            )
            languages: list[Any] = [language] if not isinstance(language, list | tuple) else list(language)
            if tokens.multilingual and language is None:
                if symbolic:
                    raise ValueError(
                        "language detection runs eagerly: inside tf.function pass language= (e.g. 'en')"
                    )
                languages = [
                    int(i) for i in np.asarray(self.detect_language(**self._detect_inputs(encoder_inputs)))
                ]
            elif len(languages) not in (1, batch_size):
                raise ValueError(f"language has {len(languages)} entries for a batch of {batch_size}")
            prompts = [
                self.decoder_prompt_ids(
                    gc, language=lang, task=task, return_timestamps=bool(return_timestamps)
                )
                for lang in languages
            ]
            if symbolic:
                decoder_input_ids = tf.tile(tf.constant(prompts, tf.int32), [batch_size // len(prompts), 1])
            else:
                decoder_input_ids = np.tile(np.asarray(prompts, np.int32), [batch_size // len(prompts), 1])
        elif language is not None or task is not None:
            raise ValueError("pass either decoder_input_ids or language/task, not both")
        out = self._generate(decoder_input_ids, decoder_attention_mask, encoder_inputs, gc, seed, jit_compile)
        if return_no_speech_prob:
            out["no_speech_prob"] = out.pop("probe_probs")[:, 0]
        return out

    def _prompt_probe(self, gc: GenerationConfig) -> tuple[int, tuple[int, ...]] | None:
        return getattr(gc, "_extra", {}).get("_xlagen_whisper_probe")

    def _extra_processors(self, gc: GenerationConfig) -> tuple:
        rules = getattr(gc, "_extra", {}).get("_xlagen_whisper_rules")
        return () if rules is None else (rules,)

    @staticmethod
    def _detect_inputs(encoder_inputs: dict) -> dict:
        if "encoder_hidden_states" in encoder_inputs:
            return {"encoder_outputs": encoder_inputs["encoder_hidden_states"]}
        return {"input_features": encoder_inputs["input_features"]}

    def detect_language(
        self,
        input_features=None,
        encoder_outputs=None,
        generation_config: GenerationConfig | None = None,
        num_segment_frames: int | None = None,
        return_probs: bool = False,
    ):
        """Most likely language token id per row [B], from one decoder step after ``<|startoftranscript|>``
        (only language tokens compete), like Transformers' ``detect_language``. With ``return_probs``
        also the probabilities [B, languages] over ``generation_config.lang_to_id``'s tokens (id order).
        """
        gc = generation_config or self.generation_config
        tokens = special_tokens(self)
        lang_ids = sorted(int(i) for _, i in tokens.languages)
        if not lang_ids:
            raise ValueError("this Whisper model has no language tokens (generation_config.lang_to_id)")
        if (input_features is None) == (encoder_outputs is None):
            raise ValueError("pass exactly one of input_features or encoder_outputs")
        if encoder_outputs is None:
            features = tf.convert_to_tensor(input_features)
            frames = num_segment_frames or self.config.num_frames
            features = features[:, :, :frames]
            self._check_features_shape(features.shape, features.dtype.name)
            hidden = self._compiled_encode(tf.cast(features, tf.float32))
        else:
            hidden = encoder_outputs
            if isinstance(hidden, dict):
                hidden = hidden["last_hidden_state"]
            elif isinstance(hidden, list | tuple):
                hidden = hidden[0]
            hidden = tf.convert_to_tensor(hidden, tf.float32)
        start = int(self._decoder_start(gc, None))
        ids = tf.fill([tf.shape(hidden)[0], 1], start)
        logits = self._compiled_first_logits(hidden, ids, tf.zeros([tf.shape(hidden)[0]], tf.int32))
        lang_logits = tf.gather(logits, lang_ids, axis=-1)
        best = tf.gather(
            tf.constant(lang_ids, tf.int32), tf.argmax(lang_logits, axis=-1, output_type=tf.int32)
        )
        if return_probs:
            return best, tf.nn.softmax(lang_logits, axis=-1)
        return best

    @property
    def _aux_programs(self) -> ProgramCache:
        """Programs besides ``generate``'s (not counted in ``generation_stats``): the encoder and
        the first-logits pass of the pipeline, one per input shape, traced once (trace store too)."""
        cache = self.__dict__.get("_aux_program_cache")
        if cache is None:
            cache = ProgramCache(lambda: model_fingerprint(self), lambda: self.variables)
            self.__dict__["_aux_program_cache"] = cache
        return cache

    @property
    def _compiled_encode(self):
        """``encode`` compiled with XLA (one program per batch size)."""
        return self._aux_programs.get("encode", lambda f: self.encode(f)["last_hidden_state"])

    @property
    def _compiled_first_logits(self):
        """XLA program: decoder logits [B, vocab] at position ``index`` [B] of ``ids`` [B, T] (no cache)."""

        def run(hidden, ids, index):
            out = self(encoder_outputs={"last_hidden_state": hidden}, decoder_input_ids=ids)
            return tf.gather(out["logits"], index, batch_dims=1)

        return self._aux_programs.get("first_logits", run)

    # -- word alignment (xlagen.models.whisper.alignment) ------------------------------------------
    @property
    def alignment_heads(self) -> tuple[tuple[int, int], ...]:
        """The (decoder layer, head) pairs whose cross-attention follows the speech in time: the
        generation config's ``alignment_heads``, else every head of the last half of the layers."""
        from xlagen.models.whisper.alignment import alignment_heads

        return alignment_heads(self)

    def alignment_outputs(self, hidden, ids, heads, text_vocab: int) -> tuple[tf.Tensor, tf.Tensor]:
        """A teacher-forced decoder pass over ``ids`` [B, T] on the encoder output ``hidden``.

        Returns the cross-attention scores [B, len(heads), T, positions] of ``heads`` ((layer, head)
        pairs; scaled, before the softmax) and the probability [B, T] of each next token among the
        first ``text_vocab`` tokens (the reference's text-token probabilities; 0 at the last
        position and where the next token is not a text token)."""
        ids = tf.cast(ids, tf.int32)
        b, t = shape_list(ids)
        h = self._embed(ids, tf.broadcast_to(tf.range(t)[None, :], [b, t]))
        allowed = causal_allowed(tf.ones([b, t], tf.int32), 0, t)
        picked: dict[tuple[int, int], tf.Tensor] = {}
        for index, layer in enumerate(self.decoder_layers):
            kv = layer.encoder_attn.key_value(hidden)
            wanted = [head for lay, head in heads if lay == index]
            if wanted:
                h, _, scores = layer(h, allowed, kv, return_cross_scores=True)
                picked.update({(index, head): scores[:, head] for head in wanted})
            else:
                h, _ = layer(h, allowed, kv)
        weights = tf.stack([picked[(lay, head)] for lay, head in heads], axis=1)
        head_weight = self.embed_tokens if self.proj_out is None else self.proj_out_w
        logprobs = tf.nn.log_softmax(linear(self.decoder_norm(h), head_weight[:text_vocab]), axis=-1)
        following = ids[:, 1:]
        text = following < text_vocab
        probs = tf.exp(
            tf.gather(logprobs[:, :-1], tf.where(text, following, 0)[..., None], batch_dims=2)[..., 0]
        )
        probs = tf.concat([tf.where(text, probs, 0.0), tf.zeros([b, 1], probs.dtype)], axis=1)
        return weights, probs

    def _compiled_alignment(self, hidden, ids, heads, text_vocab: int) -> tuple[tf.Tensor, tf.Tensor]:
        """``alignment_outputs`` as an XLA program of its own (one per heads, vocabulary and shape):
        normal decoding never runs it. Callers pad ``ids`` to a few fixed lengths (causal
        attention: padding after the tokens changes nothing before it)."""
        heads = tuple((int(lay), int(head)) for lay, head in heads)
        program = self._aux_programs.get(
            ("alignment", heads, int(text_vocab)),
            lambda hid, tok: self.alignment_outputs(hid, tok, heads, text_vocab),
        )
        return program(tf.convert_to_tensor(hidden, tf.float32), tf.convert_to_tensor(ids, tf.int32))

    def decoder_prompt_ids(
        self,
        generation_config: GenerationConfig | None = None,
        language: str | int | None = None,
        task: str | None = None,
        return_timestamps: bool = False,
    ) -> list[int]:
        """The default decoder prompt: start token, [language, task,] and no-timestamps unless timestamps."""
        gc = generation_config or self.generation_config
        extra: dict[str, Any] = getattr(gc, "_extra", {})
        tokens = special_tokens(self)
        if tokens.multilingual and language is None:
            raise ValueError(
                "this Whisper model is multilingual: pass language= (e.g. 'en'), or call generate() "
                "without it to detect the language"
            )
        if extra.get("is_multilingual") is None and not tokens.languages and extra.get("forced_decoder_ids"):
            forced = sorted((int(p), i) for p, i in extra["forced_decoder_ids"])
            if any(i is None for _, i in forced):
                raise ValueError(
                    "generation_config.forced_decoder_ids has an unset (language) token; pass language="
                )
            return [int(self._decoder_start(gc, None)), *(int(i) for _, i in forced)]
        return decoder_prompt(tokens, language, task, timestamps=return_timestamps)

    # -- encoder-input hooks of the generation engine -----------------------------------------------
    def _check_hidden_shape(self, shape) -> None:
        c = self.config
        want = (c.max_source_positions, c.d_model)
        if len(shape) != 3 or any(g is not None and g != w for g, w in zip(shape[1:], want)):
            raise ValueError(
                f"encoder_outputs must be [batch, {want[0]}, {want[1]}] (this model's encoder output), "
                f"got shape {tuple(shape)}"
            )
        if shape[0] == 0:
            raise ValueError("encoder_outputs is empty")

    def _concrete_encoder_inputs(self, encoder_inputs: dict) -> dict[str, np.ndarray]:
        if "encoder_hidden_states" in encoder_inputs:
            hidden = encoder_inputs["encoder_hidden_states"]
            hidden = np.asarray(hidden.numpy() if tf.is_tensor(hidden) else hidden, np.float32)
            self._check_hidden_shape(hidden.shape)
            return {"encoder_hidden_states": hidden}
        features = encoder_inputs["input_features"]
        features = np.asarray(features.numpy() if tf.is_tensor(features) else features)
        if features.dtype == object:
            raise TypeError("input_features must be a numeric array [batch, n_mels, frames]")
        self._check_features_shape(features.shape, features.dtype.name)
        features = features.astype(np.float32)
        if not np.isfinite(features).all():
            raise ValueError("input_features contains NaN or infinite values")
        return {"input_features": features}

    def _symbolic_encoder_inputs(self, encoder_inputs: dict) -> dict:
        if "encoder_hidden_states" in encoder_inputs:
            hidden = tf.convert_to_tensor(encoder_inputs["encoder_hidden_states"])
            self._check_hidden_shape(hidden.shape)
            return {"encoder_hidden_states": tf.cast(hidden, tf.float32)}
        features = tf.convert_to_tensor(encoder_inputs["input_features"])
        self._check_features_shape(features.shape, features.dtype.name)
        return {"input_features": tf.cast(features, tf.float32)}

    def _bucket_encoder_inputs(
        self, encoder_inputs: dict[str, np.ndarray], batch: int
    ) -> dict[str, np.ndarray]:
        """Pad the batch axis to ``batch`` rows with zeros (filler rows start finished); nothing else varies."""
        out = {}
        for key, value in encoder_inputs.items():
            padded = np.zeros((batch, *value.shape[1:]), np.float32)
            padded[: value.shape[0]] = value
            out[key] = padded
        return out
