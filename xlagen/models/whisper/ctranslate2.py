"""CTranslate2 Whisper directories (faster-whisper's format) as Transformers' Whisper: state dict and config.

Whisper variable names map onto Transformers' state dict: fused self-attention ``linear_0`` [3d, d]
splits into q/k/v, cross-attention ``linear_0`` is q and ``linear_1`` [2d, d] splits into k/v,
``linear_1``/``linear_2`` are ``out_proj``; ``ffn/linear_0|1`` are ``fc1|fc2``; ``gamma|beta`` are
``weight|bias``; ``position_encodings/encodings`` are ``embed_positions.weight`` (both stacks are stored).
The fused key bias CTranslate2 writes is zeros (Transformers' Whisper has none); a non-zero key bias
would only add a per-query constant to the scores, which softmax ignores, so it is dropped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from xlagen.loading.checkpoint import ComputedTensors
from xlagen.loading.ctranslate2 import (
    ACTIVATIONS,
    CT2_CONFIG,
    CT2_WEIGHTS,
    CTranslate2Model,
    dequantized,
    layer_count,
    num_heads,
    read_ctranslate2_model,
    read_vocabulary,
)


def whisper_state_dict(model: CTranslate2Model) -> ComputedTensors:
    """Map a CTranslate2 WhisperSpec's variables to Transformers' Whisper state-dict names (float32).

    The result is a lazy mapping: each tensor is dequantized (and split out of its fused
    projection) when it is looked up, so loading converts one tensor at a time."""
    if model.spec and model.spec != "WhisperSpec":
        raise ValueError(f"{model.path} holds a CTranslate2 {model.spec}, not a WhisperSpec")
    v = model.variables
    out: dict[str, tuple[tuple[int, ...], Any, Callable[[], np.ndarray]]] = {}

    def need(name: str) -> str:
        if name not in v:
            raise ValueError(
                f"{model.path} has no variable {name!r}; not a complete CTranslate2 Whisper model"
            )
        return name

    def put(dst: str, src: str) -> None:
        out[dst] = (tuple(v[src].shape), np.float32, partial(dequantized, model, src))

    def layer_norm(src: str, dst: str) -> None:
        put(f"{dst}.weight", need(f"{src}/gamma"))
        put(f"{dst}.bias", need(f"{src}/beta"))

    def linear(src: str, dst: str, bias: bool = True) -> None:
        put(f"{dst}.weight", need(f"{src}/weight"))
        if bias:
            put(f"{dst}.bias", need(f"{src}/bias"))

    def split(src: str, dsts: list[str]) -> None:
        """A fused projection [n*d, d] (+ bias [n*d]) into n projections; keys get no bias."""
        weight = need(f"{src}/weight")
        bias = f"{src}/bias" if f"{src}/bias" in v else None
        n = len(dsts)
        rows = v[weight].shape[0] // n
        for i, dst in enumerate(dsts):
            out[f"{dst}.weight"] = (
                (rows, *v[weight].shape[1:]),
                np.float32,
                partial(_part, model, weight, n, i),
            )
            if dst.endswith("k_proj"):
                continue
            if bias is not None:
                out[f"{dst}.bias"] = ((rows,), np.float32, partial(_part, model, bias, n, i))
            else:
                out[f"{dst}.bias"] = ((rows,), np.float32, partial(np.zeros, [rows], np.float32))

    d_model = v[need("decoder/embeddings/weight")].shape[1]
    for stack in ("encoder", "decoder"):
        hf = f"model.{stack}"
        for i in range(layer_count(model, stack)):
            src, dst = f"{stack}/layer_{i}", f"{hf}.layers.{i}"
            attn = f"{dst}.self_attn"
            split(f"{src}/self_attention/linear_0", [f"{attn}.q_proj", f"{attn}.k_proj", f"{attn}.v_proj"])
            linear(f"{src}/self_attention/linear_1", f"{attn}.out_proj")
            layer_norm(f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
            if stack == "decoder":
                cross = f"{dst}.encoder_attn"
                split(f"{src}/attention/linear_0", [f"{cross}.q_proj"])
                split(f"{src}/attention/linear_1", [f"{cross}.k_proj", f"{cross}.v_proj"])
                linear(f"{src}/attention/linear_2", f"{cross}.out_proj")
                layer_norm(f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
            linear(f"{src}/ffn/linear_0", f"{dst}.fc1")
            linear(f"{src}/ffn/linear_1", f"{dst}.fc2")
            layer_norm(f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
        layer_norm(f"{stack}/layer_norm", f"{hf}.layer_norm")
        positions = f"{stack}/position_encodings/encodings"
        if positions in v:
            put(f"{hf}.embed_positions.weight", positions)
        elif stack == "encoder":  # not stored: CTranslate2 then uses Whisper's fixed sinusoids
            from xlagen.models.whisper.modeling import sinusoids

            out[f"{hf}.embed_positions.weight"] = (
                (1500, d_model),
                np.float32,
                partial(sinusoids, 1500, d_model),
            )
        else:
            raise ValueError(f"{model.path} has no decoder position encodings ({positions!r})")
    for conv in ("conv1", "conv2"):
        linear(f"encoder/{conv}", f"model.encoder.{conv}")
    put("model.decoder.embed_tokens.weight", "decoder/embeddings/weight")
    if model.aliases.get("decoder/projection/weight") != "decoder/embeddings/weight":
        put("proj_out.weight", need("decoder/projection/weight"))
    if "decoder/projection/bias" in v and np.any(dequantized(model, "decoder/projection/bias")):
        raise ValueError(f"{model.path}: the output projection has a bias, which Whisper models do not have")
    _check_whisper_attributes(model)
    return ComputedTensors(out)


def _part(model: CTranslate2Model, name: str, parts: int, index: int) -> np.ndarray:
    """Part ``index`` of ``parts`` equal row blocks of variable ``name``, float32 and contiguous."""
    return np.ascontiguousarray(np.split(dequantized(model, name), parts)[index])


def _check_whisper_attributes(model: CTranslate2Model) -> None:
    """Refuse decoder options that Transformers' Whisper (and this port) does not have."""
    problems = []
    if not model.scalar("decoder/pre_norm", 1):
        problems.append("decoder/pre_norm is off")
    if model.scalar("decoder/alibi", 0):
        problems.append("decoder/alibi is on")
    scale = model.variables.get("decoder/scale_embeddings")
    if scale is not None:  # int8: a flag (scale by sqrt(d_model)); float: the factor itself
        factor = float(scale.reshape(-1)[0])
        if (factor != 0.0) if scale.dtype == np.int8 else (factor != 1.0):
            problems.append(f"decoder/scale_embeddings is {factor!r} ({scale.dtype})")
    if "decoder/layernorm_embedding/gamma" in model.variables:
        problems.append("the decoder has an embedding layer norm")
    if problems:
        raise ValueError(f"{model.path}: not a standard Whisper model: " + "; ".join(problems))


def whisper_config_from_ctranslate2(directory: str | os.PathLike, model: CTranslate2Model, **overrides: Any):
    """Build a ``WhisperConfig`` and ``GenerationConfig`` from the weights' shapes, CTranslate2's
    config.json (suppress ids, language ids, alignment heads) and the vocabulary's special tokens."""
    from xlagen.generation.config import GenerationConfig
    from xlagen.models.whisper.configuration import WhisperConfig

    directory = Path(directory)
    ct2_config: dict[str, Any] = {}
    if (directory / CT2_CONFIG).is_file():
        try:
            ct2_config = json.loads((directory / CT2_CONFIG).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise OSError(f"{directory / CT2_CONFIG} is not valid JSON: {e}") from None
    v = model.variables
    vocab_size, d_model = v["decoder/embeddings/weight"].shape
    vocab = read_vocabulary(directory)

    def special(token: str) -> int | None:
        idx = vocab.get(token)
        return int(idx) if idx is not None and idx < vocab_size else None

    eot, sot = special("<|endoftext|>"), special("<|startoftranscript|>")
    if eot is None or sot is None:
        raise ValueError(f"{directory}: the vocabulary lacks <|endoftext|> or <|startoftranscript|>")
    activation = ACTIVATIONS.get(int(model.scalar("decoder/activation", 3)))
    values: dict[str, Any] = {
        "vocab_size": int(vocab_size),
        "d_model": int(d_model),
        "num_mel_bins": int(v["encoder/conv1/weight"].shape[1]),
        "encoder_layers": layer_count(model, "encoder"),
        "decoder_layers": layer_count(model, "decoder"),
        "encoder_attention_heads": num_heads(model, "encoder"),
        "decoder_attention_heads": num_heads(model, "decoder"),
        "encoder_ffn_dim": int(v["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "decoder_ffn_dim": int(v["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "max_source_positions": int(v["encoder/position_encodings/encodings"].shape[0])
        if "encoder/position_encodings/encodings" in v
        else 1500,
        "max_target_positions": int(v["decoder/position_encodings/encodings"].shape[0]),
        "activation_function": activation or "gelu",
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "decoder_start_token_id": sot,
        "suppress_tokens": ct2_config.get("suppress_ids"),
        "begin_suppress_tokens": ct2_config.get("suppress_ids_begin"),
        "tie_word_embeddings": model.aliases.get("decoder/projection/weight") == "decoder/embeddings/weight",
        "architectures": ["WhisperForConditionalGeneration"],
    }
    values.update(overrides)
    config = WhisperConfig(**values)

    multilingual = vocab_size >= 51865  # Transformers' rule: English-only checkpoints have 51864 tokens
    lang_ids = ct2_config.get("lang_ids") or []
    id_to_token = {i: t for t, i in vocab.items()}
    generation: dict[str, Any] = {
        "decoder_start_token_id": sot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "bos_token_id": eot,
        "max_length": config.max_target_positions,
        "suppress_tokens": ct2_config.get("suppress_ids"),
        "begin_suppress_tokens": ct2_config.get("suppress_ids_begin"),
        "is_multilingual": multilingual,
        "no_timestamps_token_id": special("<|notimestamps|>"),
    }
    if multilingual:
        generation["lang_to_id"] = {id_to_token[i]: int(i) for i in lang_ids if i in id_to_token}
        generation["task_to_id"] = {
            t: special(f"<|{t}|>") for t in ("transcribe", "translate") if special(f"<|{t}|>") is not None
        }
    if ct2_config.get("alignment_heads"):
        generation["alignment_heads"] = ct2_config["alignment_heads"]
    generation = {k: val for k, val in generation.items() if val is not None}
    return config, GenerationConfig(**generation)


def load_ctranslate2_whisper(directory: str | os.PathLike, model_class=None, config=None, **overrides: Any):
    """Build a ``TFWhisperForConditionalGeneration`` from a CTranslate2 Whisper directory."""
    if model_class is None:
        from xlagen.models.whisper.modeling import TFWhisperForConditionalGeneration as model_class
    directory = Path(directory)
    ct2 = read_ctranslate2_model(directory / CT2_WEIGHTS)
    tensors = whisper_state_dict(ct2)
    built_config, generation_config = whisper_config_from_ctranslate2(directory, ct2, **overrides)
    if config is None:
        config = built_config
    elif overrides:
        raise TypeError(f"unexpected keyword arguments: {sorted(overrides)}")
    from xlagen.models.layers import CheckpointValues, initial_values_from

    # Variables are created from the converted tensors, one at a time (no random init + assign).
    with initial_values_from(CheckpointValues(tensors)):
        model = model_class(config)
        model.load_state_dict(tensors, {name: ct2.path for name in tensors})
    model.generation_config = generation_config
    model.name_or_path = str(directory)
    return model
