"""Read CTranslate2 model directories (``model.bin`` + ``config.json`` + vocabulary), as faster-whisper uses.

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

Model-specific conversions live with their model (Whisper: :mod:`xlagen.models.whisper.ctranslate2`).
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("xlagen")

CT2_WEIGHTS = "model.bin"
CT2_CONFIG = "config.json"
MAX_BINARY_VERSION = 6
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
_ITEM_SIZE_DTYPES = {4: np.float32, 2: np.int16, 1: np.int8}  # binary versions < 4
ACTIVATIONS = {0: "relu", 1: "gelu_new", 2: "silu", 3: "gelu", 4: "gelu_fast", 5: "tanh", 6: "sigmoid"}


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


# -- helpers for model converters ----------------------------------------------------------------
def layer_count(model: CTranslate2Model, stack: str) -> int:
    """How many ``{stack}/layer_N/`` blocks the model has (numbered 0..N-1)."""
    ids = {int(m.group(1)) for n in model.variables if (m := re.match(rf"{stack}/layer_(\d+)/", n))}
    if not ids:
        raise ValueError(f"{model.path}: no {stack} layers found (is this a Whisper model?)")
    if ids != set(range(len(ids))):
        raise ValueError(f"{model.path}: {stack} layers are not numbered 0..{len(ids) - 1}: {sorted(ids)}")
    return len(ids)


def num_heads(model: CTranslate2Model, stack: str) -> int:
    """The ``{stack}/num_heads`` attribute."""
    heads = model.scalar(f"{stack}/num_heads")
    if heads is None:
        raise ValueError(f"{model.path} has no {stack}/num_heads attribute")
    return int(heads)


def read_vocabulary(directory: Path) -> dict[str, int]:
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


def __getattr__(name: str):
    # The Whisper conversion moved to xlagen.models.whisper.ctranslate2; still importable from here.
    if name in ("whisper_state_dict", "whisper_config_from_ctranslate2", "load_ctranslate2_whisper"):
        from xlagen.models.whisper import ctranslate2 as _whisper

        return getattr(_whisper, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
