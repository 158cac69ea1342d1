"""Base class of xlagen models: loading, saving and the Keras training hooks they share."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf

from xlagen.configuration_utils import PretrainedConfig, load_config_dict
from xlagen.generation.config import GenerationConfig
from xlagen.generation.mixin import GenerationMixin
from xlagen.loading.checkpoint import SAFE_WEIGHTS, open_state_dict, tensor_meta, write_safetensors
from xlagen.loading.hub import resolve_pretrained_dir
from xlagen.models.layers import (
    CheckpointValues,
    active_initial_values,
    checkpoint_value,
    initial_values_from,
)

logger = logging.getLogger("xlagen")


class ModelOutput(dict):
    """A dict whose keys are also attributes (``out.logits`` == ``out["logits"]``), as in Transformers."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_tuple(self) -> tuple:
        return tuple(self.values())


class CausalLMOutput(ModelOutput):
    """Output of a language-model call: ``logits`` [batch, length, vocab] (and ``loss`` given labels)."""


class Seq2SeqLMOutput(ModelOutput):
    """Output of an encoder-decoder LM call: ``logits`` [batch, decoder length, vocab],
    ``encoder_last_hidden_state`` [batch, encoder length, dim] (and ``loss`` given labels)."""


def seq2seq_lm_loss(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy of ``logits`` against aligned (unshifted) ``labels``, ignoring -100."""
    labels = tf.cast(labels, tf.int32)
    valid = tf.not_equal(labels, -100)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.where(valid, labels, 0), logits=logits)
    weights = tf.cast(valid, losses.dtype)
    return tf.reduce_sum(losses * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


def shift_tokens_right(labels: tf.Tensor, start: int, pad: int) -> tf.Tensor:
    """Decoder inputs for teacher forcing: ``start``, then ``labels`` but the last, -100 as ``pad``."""
    labels = tf.cast(labels, tf.int32)
    shifted = tf.concat([tf.fill([tf.shape(labels)[0], 1], start), labels[:, :-1]], axis=1)
    return tf.where(tf.equal(shifted, -100), pad, shifted)


class Seq2SeqLMTraining:
    """Training hooks every encoder-decoder LM shares (mixed in before ``TFPreTrainedModel``): decoder
    inputs derived from labels, and Keras ``fit`` on the labels' cross-entropy when no loss is compiled."""

    def decoder_input_ids_from_labels(self, labels: tf.Tensor) -> tf.Tensor:
        """``labels`` shifted right behind ``decoder_start_token_id`` (Transformers' rule)."""
        start, pad = self.config.decoder_start_token_id, self.config.pad_token_id
        if start is None or pad is None:
            raise ValueError(
                "decoder_start_token_id and pad_token_id must be set in the config to derive "
                "decoder_input_ids from labels"
            )
        return shift_tokens_right(labels, start, pad)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Keras hook: with no compiled loss, train on the cross-entropy against ``y`` or ``x["labels"]``."""
        if self._compile_loss is not None:
            return super().compute_loss(x, y, y_pred, sample_weight, training)
        labels = y
        if labels is None and isinstance(x, dict):
            labels = x.get("labels")
        if labels is None:
            raise ValueError(f"{type(self).__name__} training needs labels: pass them as y or as x['labels']")
        loss = seq2seq_lm_loss(y_pred["logits"], labels)
        extra = self.losses
        return loss + tf.add_n(extra) if extra else loss


def _register_output_tree(cls: type[ModelOutput]) -> None:
    """Let Keras' tree utilities (``predict`` batching, ``fit`` losses) walk outputs like a dict."""
    try:
        import optree
    except ImportError:  # Keras then uses dm-tree, which already treats dict subclasses as dicts
        return
    optree.register_pytree_node(
        cls,
        lambda out: (tuple(out.values()), tuple(out.keys()), tuple(out.keys())),
        lambda keys, values: cls(zip(keys, values)),
        namespace="keras",
    )


_register_output_tree(CausalLMOutput)
_register_output_tree(Seq2SeqLMOutput)


def _causal_lm_loss(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Mean next-token cross-entropy, ignoring labels equal to -100 (Transformers' convention)."""
    return seq2seq_lm_loss(logits[:, :-1], labels[:, 1:])


class TFPreTrainedModel(keras.Model, GenerationMixin):
    """A Keras model that loads and saves Hugging Face checkpoints and can ``generate``."""

    config_class: ClassVar[type[PretrainedConfig]] = PretrainedConfig
    # State-dict prefix some checkpoints omit (base-model files), e.g. "transformer.".
    checkpoint_prefix: ClassVar[str] = ""
    # Checkpoint tensors that are buffers, not weights (regexes).
    ignored_checkpoint_keys: ClassVar[tuple[str, ...]] = ()
    # Weights a file may leave out (regexes): they keep their initial value, as Transformers'
    # ``_keys_to_ignore_on_load_missing`` (e.g. BART's zero ``final_logits_bias``).
    optional_checkpoint_keys: ClassVar[tuple[str, ...]] = ()
    # Weight/compute dtypes from_pretrained(dtype=...) accepts (the model must cast what it mixes).
    supported_dtypes: ClassVar[tuple[str, ...]] = ("float32",)

    def __init__(self, config: PretrainedConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.generation_config = GenerationConfig.from_model_config(config)
        self._init_generation_state()

    # -- inputs / training --------------------------------------------------------------------
    @staticmethod
    def _unpack_inputs(
        input_ids, *others, names=("attention_mask", "position_ids", "token_type_ids", "labels")
    ):
        """Accept Transformers-style dict inputs (what Keras ``fit`` passes) as well as arguments."""
        if isinstance(input_ids, dict):
            inputs = dict(input_ids)
        else:
            inputs = {"input_ids": input_ids}
        for name, value in zip(names, others):
            if value is not None:
                inputs[name] = value
        if inputs.get("input_ids") is None:
            raise ValueError("input_ids is required")
        return inputs

    causal_lm_loss = staticmethod(_causal_lm_loss)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Keras hook: with no compiled loss, train on the model's own next-token loss.

        Labels come from ``y``, else ``x["labels"]``, else ``x["input_ids"]`` (masked by the
        attention mask), the usual causal-LM setup.
        """
        if self._compile_loss is not None:
            logits = y_pred["logits"] if isinstance(y_pred, dict) else y_pred
            return super().compute_loss(x, y, logits, sample_weight, training)
        labels = y
        if labels is None and isinstance(x, dict):
            labels = x.get("labels")
            if labels is None:
                labels = x["input_ids"]
                if x.get("attention_mask") is not None:
                    labels = tf.where(tf.cast(x["attention_mask"], tf.bool), tf.cast(labels, tf.int32), -100)
        if labels is None:
            labels = x
        loss = _causal_lm_loss(y_pred["logits"], labels)
        extra = self.losses
        return loss + tf.add_n(extra) if extra else loss

    # -- checkpoint names ---------------------------------------------------------------------
    def checkpoint_variables(self) -> dict[str, keras.Variable]:
        """Every weight under its Hugging Face state-dict name."""
        names: dict[str, keras.Variable] = {}
        for layer in self._flatten_layers(include_self=False, recursive=True):
            names.update(getattr(layer, "checkpoint_names", {}))
        return names

    def transposed_checkpoint_names(self) -> set[str]:
        """Checkpoint names whose variable holds the tensor transposed (``new_weight(transposed=True)``)."""
        names: set[str] = set()
        for layer in self._flatten_layers(include_self=False, recursive=True):
            names |= getattr(layer, "transposed_checkpoint_names", set())
        return names

    def _match_checkpoint_name(self, name: str, wanted: dict[str, Any]) -> str | None:
        if name in wanted:
            return name
        prefix = self.checkpoint_prefix
        if prefix and not name.startswith(prefix) and prefix + name in wanted:
            return prefix + name
        return None

    def load_state_dict(
        self, tensors: Mapping[str, np.ndarray], sources: Mapping[str, Path] | None = None
    ) -> None:
        """Assign weights by name; all problems are collected and raised before anything is assigned.

        ``tensors`` may be lazy (:class:`~xlagen.loading.checkpoint.LazyStateDict`): shapes and dtypes
        are checked from its index, then the tensors are read and assigned one at a time. Weights
        created from these same tensors (``from_pretrained`` builds the model inside
        :func:`~xlagen.models.layers.initial_values_from`) are checked and not assigned again."""
        sources = sources or {}
        wanted = self.checkpoint_variables()
        transposed = self.transposed_checkpoint_names()
        values = active_initial_values()
        preloaded = values.used if values is not None and values.covers(tensors) else {}
        assign: dict[str, str] = {}  # variable name -> checkpoint name
        problems: list[str] = []
        unexpected: list[str] = []
        for name in tensors:
            target = self._match_checkpoint_name(name, wanted)
            where = f" in {sources[name]}" if name in sources else ""
            if target is None:
                if name == "lm_head.weight" and self.config.tie_word_embeddings:
                    continue  # tied: the copy in the file is the embedding again
                if not any(re.search(p, name) for p in self.checkpoint_keys_to_ignore()):
                    unexpected.append(name)
                continue
            file_shape, file_dtype = tensor_meta(tensors, name)
            shape = tuple(wanted[target].shape)
            if target in transposed:
                shape = shape[::-1]
            if tuple(file_shape) != shape:
                problems.append(f"tensor {name!r}{where} has shape {tuple(file_shape)}, expected {shape}")
                continue
            if not np.issubdtype(file_dtype, np.floating):
                problems.append(f"tensor {name!r}{where} has dtype {file_dtype}, expected a float type")
                continue
            assign[target] = name
        files = sorted({str(p) for p in sources.values()}) or ["the given state dict"]
        for target in wanted:
            if target not in assign and not any(re.search(p, target) for p in self.optional_checkpoint_keys):
                problems.append(f"tensor {target!r} is missing from {', '.join(files)}")
        if problems:
            raise ValueError(
                f"cannot load {type(self).__name__} weights ({len(problems)} problem(s)):\n  "
                + "\n  ".join(problems)
            )
        if unexpected:
            logger.warning("ignored %d unexpected checkpoint tensors: %s", len(unexpected), unexpected[:10])
        for target, name in assign.items():  # one tensor (and its transposed copy) alive at a time
            if preloaded.get(target) == name:
                continue  # the variable was created from this tensor
            wanted[target].assign(checkpoint_value(tensors[name], target in transposed))

    def checkpoint_keys_to_ignore(self) -> tuple[str, ...]:
        """Regexes of checkpoint tensors that are not weights of this model (default: the class's)."""
        return self.ignored_checkpoint_keys

    @classmethod
    def _config_for_checkpoint(
        cls, config: PretrainedConfig, tensors: Mapping[str, np.ndarray]
    ) -> PretrainedConfig:
        """Hook: adapt the config to what the checkpoint holds before the model is built (default: as is)."""
        return config

    def state_dict(self) -> dict[str, np.ndarray]:
        transposed = self.transposed_checkpoint_names()
        return {
            name: np.ascontiguousarray(var.numpy().T) if name in transposed else np.asarray(var.numpy())
            for name, var in self.checkpoint_variables().items()
        }

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        config: PretrainedConfig | None = None,
        **kwargs,
    ):
        """Build the model from a local checkpoint directory (safetensors, sharded, or tf_model.h5)."""
        for unsupported in ("from_pt", "cache_dir", "revision", "token", "use_auth_token"):
            kwargs.pop(unsupported, None)
        dtype = kwargs.pop("dtype", None)
        dtype = kwargs.pop("torch_dtype", None) if dtype is None else dtype
        directory = resolve_pretrained_dir(pretrained_model_name_or_path)
        if config is None:
            config = cls.config_class.from_dict(load_config_dict(directory), **kwargs)
        elif kwargs:
            raise TypeError(f"unexpected keyword arguments: {sorted(kwargs)}")
        dtype = cls._weights_dtype(dtype, config)
        tensors, sources = open_state_dict(directory)
        config = cls._config_for_checkpoint(config, tensors)
        # Variables are created from the checkpoint's tensors (read one at a time), not randomly
        # initialized and then assigned: the weights are in memory once, at every point of the load.
        with initial_values_from(CheckpointValues(tensors, cls.checkpoint_prefix)):
            model = cls(config) if dtype == "float32" else cls(config, dtype=dtype)
            model.load_state_dict(tensors, sources)
        model.generation_config = GenerationConfig.from_pretrained_dir(directory, config)
        model.name_or_path = str(pretrained_model_name_or_path)
        return model

    @classmethod
    def _weights_dtype(cls, dtype: Any, config: PretrainedConfig) -> str:
        """The dtype ``from_pretrained(dtype=...)`` asks for as a name: None means float32 (whatever the
        file holds: half-precision checkpoints are upcast), ``"auto"`` the config's ``dtype``."""
        if dtype is None:
            return "float32"
        if dtype == "auto":
            dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "float32"
        name = getattr(dtype, "name", None) or str(dtype).removeprefix("torch.")
        name = {"float": "float32", "bf16": "bfloat16", "half": "float16"}.get(name, name)
        if name not in cls.supported_dtypes:
            raise ValueError(
                f"{cls.__name__}.from_pretrained: dtype={dtype!r} is not supported "
                f"(choose one of {list(cls.supported_dtypes)}, or 'auto' for the config's dtype)"
            )
        return name

    def save_pretrained(self, save_directory: str | os.PathLike, **_: Any) -> None:
        """Write config.json, model.safetensors and generation_config.json (Transformers-loadable)."""
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        self.config.save_pretrained(path)
        tensors = self.state_dict()
        write_safetensors(tensors, path / SAFE_WEIGHTS)
        self.generation_config.save_pretrained(path)
