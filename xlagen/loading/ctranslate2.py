"""Load CTranslate2 Whisper directories (``model.bin`` + ``config.json`` + tokenizer), as faster-whisper uses.

``model.bin`` layout (CTranslate2's own serialization, little-endian; binary versions 1-6 read):

* ``uint32`` binary version; from version 2: the spec name (a *string*: ``uint16`` byte length
  counting a trailing NUL, the UTF-8 bytes, the NUL) and a ``uint32`` spec revision;
* ``uint32`` variable count, then per variable: name (string), ``uint8`` rank, ``rank`` x ``uint32``
  dims, then from version 4 a ``uint8`` dtype id (0 float32, 1 int8, 2 int16, 3 int32, 4 float16,
  5 bfloat16) and a ``uint32`` payload size in bytes (before: ``uint8`` item size and ``uint32``
  element count), then the row-major payload. Scalars (rank 0) hold attributes such as
  ``decoder/num_heads`` (int16) or ``decoder/pre_norm`` (int8 bool);
* from version 3: ``uint32`` alias count, then (alias, target) string pairs: a variable equal to an
  earlier one is stored once (Whisper: ``decoder/projection/weight`` -> ``decoder/embeddings/weight``).

Quantized weights (int8: one scale per output row, conv kernels flattened per row; int16: one
scalar scale) carry a ``<name>_scale`` variable and dequantize as ``value / scale``; AWQ-style
``_zero`` points are refused. Everything is returned as float32 NumPy arrays.

Whisper variable names map onto Transformers' state dict: fused self-attention ``linear_0`` [3d, d]
splits into q/k/v, cross-attention ``linear_0`` is q and ``linear_1`` [2d, d] splits into k/v,
``linear_1``/``linear_2`` are ``out_proj``; ``ffn/linear_0|1`` are ``fc1|fc2``; ``gamma|beta`` are
``weight|bias``; ``position_encodings/encodings`` are ``embed_positions.weight`` (both stacks are stored).
The fused key bias CTranslate2 writes is zeros (Transformers' Whisper has none); a non-zero key bias
would only add a per-query constant to the scores, which softmax ignores, so it is dropped.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from xlagen.loading.checkpoint import ComputedTensors

logger = logging.getLogger("xlagen")

CT2_WEIGHTS = "model.bin"
CT2_CONFIG = "config.json"
MAX_BINARY_VERSION = 6
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
_ITEM_SIZE_DTYPES = {4: np.float32, 2: np.int16, 1: np.int8}  # binary versions < 4
_ACTIVATIONS = {0: "relu", 1: "gelu_new", 2: "silu", 3: "gelu", 4: "gelu_fast", 5: "tanh", 6: "sigmoid"}


@dataclass
class CTranslate2Model:
    """The contents of one ``model.bin``: raw variables by CTranslate2 name (aliases resolved)."""

    path: Path
    binary_version: int
    spec: str
    revision: int
    variables: dict[str, np.ndarray] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def scalar(self, name: str, default: Any = None) -> Any:
        value = self.variables.get(name)
        if value is None:
            return default
        return value.reshape(-1)[0].item() if value.size == 1 else value


def is_ctranslate2_dir(directory: str | os.PathLike) -> bool:
    """A CTranslate2 model directory: ``model.bin`` and no Transformers ``config.json`` (one with model_type)."""
    directory = Path(directory)
    if not (directory / CT2_WEIGHTS).is_file():
        return False
    config = directory / CT2_CONFIG
    if not config.is_file():
        return True
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return False
    return isinstance(data, dict) and "model_type" not in data


class _Reader:
    """Sequential reads over a byte buffer, with errors naming the file and the field being read."""

    def __init__(self, buffer, path: Path) -> None:
        self.buf = buffer
        self.pos = 0
        self.path = path

    def take(self, n: int, what: str) -> memoryview:
        end = self.pos + n
        if n < 0 or end > len(self.buf):
            raise ValueError(
                f"{self.path} is truncated or not a CTranslate2 model.bin: {what} needs {n} bytes at offset "
                f"{self.pos}, the file has {len(self.buf)}"
            )
        view = memoryview(self.buf)[self.pos : end]
        self.pos = end
        return view

    def unpack(self, fmt: str, what: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))[0]

    def string(self, what: str) -> str:
        n = self.unpack("H", f"the length of {what}")
        raw = bytes(self.take(n, what))
        if n == 0 or raw[-1] != 0:
            raise ValueError(f"{self.path}: malformed string for {what} at offset {self.pos - n}")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(
                f"{self.path}: {what} is not UTF-8 text (is this a CTranslate2 model.bin?)"
            ) from None


def _decode(raw: memoryview, dtype, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == "bfloat16":
        bits = np.frombuffer(raw, np.uint16).astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    return np.frombuffer(raw, dtype).reshape(shape)


def _parse(path: Path, want_data: bool) -> CTranslate2Model:
    if not path.is_file():
        raise FileNotFoundError(f"CTranslate2 weights {str(path)!r} do not exist")
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise ValueError(f"{path} is empty (0 bytes)")
        buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        r = _Reader(buffer, path)
        version = r.unpack("I", "the binary version")
        if version == 0 or version > MAX_BINARY_VERSION:
            head = bytes(buffer[:32])
            hint = (
                " (a Git LFS pointer; fetch the real file)"
                if head.startswith(b"version https://git-lfs")
                else ""
            )
            raise ValueError(
                f"{path} is not a CTranslate2 model.bin xlagen can read{hint}: binary version {version}, "
                f"supported 1-{MAX_BINARY_VERSION}"
            )
        spec, revision = "", 1
        if version >= 2:
            spec = r.string("the spec name")
            revision = r.unpack("I", "the spec revision")
        model = CTranslate2Model(path, version, spec, revision)
        count = r.unpack("I", "the variable count")
        for _ in range(count):
            name = r.string("a variable name")
            rank = r.unpack("B", f"the rank of {name!r}")
            shape = tuple(r.unpack("I", f"the shape of {name!r}") for _ in range(rank))
            if version >= 4:
                type_id = r.unpack("B", f"the dtype of {name!r}")
                if type_id not in _DTYPES:
                    raise ValueError(f"{path}: variable {name!r} has an unknown dtype id {type_id}")
                dtype = _DTYPES[type_id]
                nbytes = r.unpack("I", f"the size of {name!r}")
            else:
                item = r.unpack("B", f"the item size of {name!r}")
                if item not in _ITEM_SIZE_DTYPES:
                    raise ValueError(f"{path}: variable {name!r} has an unknown item size {item}")
                dtype = _ITEM_SIZE_DTYPES[item]
                nbytes = r.unpack("I", f"the element count of {name!r}") * item
            itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
            if nbytes != int(np.prod(shape, dtype=np.int64)) * itemsize:
                raise ValueError(
                    f"{path}: variable {name!r} has shape {shape} but a payload of {nbytes} bytes"
                )
            raw = r.take(nbytes, f"the values of {name!r}")
            if want_data or not shape:  # scalars (attributes) are always read
                model.variables[name] = np.array(_decode(raw, dtype, shape))  # copy out of the mapping
            else:
                model.variables[name] = _ShapeOnly(shape)  # type: ignore[assignment]
            del raw
        if version >= 3:
            for _ in range(r.unpack("I", "the alias count")):
                alias = r.string("an alias name")
                target = r.string(f"the target of alias {alias!r}")
                model.aliases[alias] = target
        if r.pos != len(buffer):
            logger.warning("%s: %d trailing bytes after the variables", path, len(buffer) - r.pos)
    finally:
        buffer.close()
    for alias, target in model.aliases.items():
        for suffix in ("", "_scale", "_zero"):
            if target + suffix in model.variables:
                model.variables[alias + suffix] = model.variables[target + suffix]
        if alias not in model.variables:
            raise ValueError(f"{path}: alias {alias!r} points to a missing variable {target!r}")
    return model


class _ShapeOnly:
    """Placeholder for a variable whose values were skipped (only its shape was read)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape


def read_ctranslate2_model(path: str | os.PathLike) -> CTranslate2Model:
    """Read every variable of a CTranslate2 ``model.bin`` (a file, or the directory holding it)."""
    path = Path(path)
    return _parse(path / CT2_WEIGHTS if path.is_dir() else path, want_data=True)


def read_ctranslate2_header(path: str | os.PathLike) -> CTranslate2Model:
    """The model with only shapes for its tensors (scalar attributes are read), e.g. to build a config."""
    path = Path(path)
    return _parse(path / CT2_WEIGHTS if path.is_dir() else path, want_data=False)


def read_ctranslate2_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Only the variables' shapes (no values are copied), e.g. to size a feature extractor."""
    return {name: tuple(v.shape) for name, v in read_ctranslate2_header(path).variables.items()}


def dequantized(model: CTranslate2Model, name: str) -> np.ndarray:
    """Variable ``name`` as float32: half precision upcast, int8/int16 divided by ``<name>_scale``."""
    value = model.variables[name]
    if name + "_zero" in model.variables:
        raise ValueError(
            f"{model.path}: {name!r} is AWQ-quantized (has zero points); xlagen cannot dequantize it. "
            "Convert the model again without AWQ (e.g. quantization float16 or int8)."
        )
    if np.issubdtype(value.dtype, np.floating):
        return value.astype(np.float32)
    scale = model.variables.get(name + "_scale")
    if scale is None:
        raise ValueError(
            f"{model.path}: {name!r} is {value.dtype} but has no {name + '_scale'!r} to dequantize it"
        )
    scale = scale.astype(np.float32)
    if scale.size == 1:
        return value.astype(np.float32) / scale.reshape(())
    if scale.shape != (value.shape[0],):
        raise ValueError(
            f"{model.path}: scale of {name!r} has shape {scale.shape}, expected ({value.shape[0]},)"
        )
    return value.astype(np.float32) / scale.reshape((-1,) + (1,) * (value.ndim - 1))


# -- Whisper ------------------------------------------------------------------------------------------
def _layer_count(model: CTranslate2Model, stack: str) -> int:
    ids = {int(m.group(1)) for n in model.variables if (m := re.match(rf"{stack}/layer_(\d+)/", n))}
    if not ids:
        raise ValueError(f"{model.path}: no {stack} layers found (is this a Whisper model?)")
    if ids != set(range(len(ids))):
        raise ValueError(f"{model.path}: {stack} layers are not numbered 0..{len(ids) - 1}: {sorted(ids)}")
    return len(ids)


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
        for i in range(_layer_count(model, stack)):
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


def _num_heads(model: CTranslate2Model, stack: str) -> int:
    heads = model.scalar(f"{stack}/num_heads")
    if heads is None:
        raise ValueError(f"{model.path} has no {stack}/num_heads attribute")
    return int(heads)


def _read_vocabulary(directory: Path) -> dict[str, int]:
    """Token -> id from ``vocabulary.txt`` / ``vocabulary.json`` or, failing that, ``tokenizer.json``."""
    text = directory / "vocabulary.txt"
    if text.is_file():
        return {tok: i for i, tok in enumerate(text.read_text(encoding="utf-8").split("\n")) if tok}
    js = directory / "vocabulary.json"
    if js.is_file():
        return {tok: i for i, tok in enumerate(json.loads(js.read_text(encoding="utf-8")))}
    tok = directory / "tokenizer.json"
    if tok.is_file():
        data = json.loads(tok.read_text(encoding="utf-8"))
        vocab = dict(data.get("model", {}).get("vocab", {}))
        vocab.update({t["content"]: t["id"] for t in data.get("added_tokens", [])})
        return vocab
    raise OSError(
        f"{directory} has no vocabulary.txt, vocabulary.json or tokenizer.json; cannot find special tokens"
    )


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
    vocab = _read_vocabulary(directory)

    def special(token: str) -> int | None:
        idx = vocab.get(token)
        return int(idx) if idx is not None and idx < vocab_size else None

    eot, sot = special("<|endoftext|>"), special("<|startoftranscript|>")
    if eot is None or sot is None:
        raise ValueError(f"{directory}: the vocabulary lacks <|endoftext|> or <|startoftranscript|>")
    activation = _ACTIVATIONS.get(int(model.scalar("decoder/activation", 3)))
    values: dict[str, Any] = {
        "vocab_size": int(vocab_size),
        "d_model": int(d_model),
        "num_mel_bins": int(v["encoder/conv1/weight"].shape[1]),
        "encoder_layers": _layer_count(model, "encoder"),
        "decoder_layers": _layer_count(model, "decoder"),
        "encoder_attention_heads": _num_heads(model, "encoder"),
        "decoder_attention_heads": _num_heads(model, "decoder"),
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
