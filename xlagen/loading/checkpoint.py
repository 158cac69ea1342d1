"""Find and read a checkpoint's weights in a local directory, as numpy arrays under PyTorch names.

Formats: ``model.safetensors``, sharded safetensors (``model.safetensors.index.json``) and
Transformers 4.x TF ``tf_model.h5``. Every failure names the file (and tensor) at fault.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
TF_WEIGHTS = "tf_model.h5"
TF_INDEX = "tf_model.h5.index.json"
PT_WEIGHTS = "pytorch_model.bin"


def find_weights(directory: Path) -> tuple[str, list[Path]]:
    """Return (format, files) for the weights in ``directory``, preferring safetensors."""
    if (directory / SAFE_WEIGHTS).is_file():
        return "safetensors", [directory / SAFE_WEIGHTS]
    if (directory / SAFE_INDEX).is_file():
        index_path = directory / SAFE_INDEX
        try:
            weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise OSError(
                f"{index_path} is not a valid safetensors index (needs a 'weight_map'): {e}"
            ) from None
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (directory / s).is_file()]
        if missing:
            raise OSError(f"{index_path} lists shard files that are missing from {directory}: {missing}")
        return "safetensors", [directory / s for s in shards]
    if (directory / TF_WEIGHTS).is_file():
        return "h5", [directory / TF_WEIGHTS]
    if (directory / TF_INDEX).is_file():
        return "h5", [directory / TF_INDEX]  # the h5 reader follows the index to its shards
    if (directory / PT_WEIGHTS).is_file():
        raise OSError(
            f"{directory} only has {PT_WEIGHTS} (a pickled PyTorch checkpoint), which xlagen does not unpickle; "
            "convert it to safetensors (e.g. save_pretrained(..., safe_serialization=True) in Transformers)."
        )
    raise OSError(
        f"no weights found in {directory}: looked for {SAFE_WEIGHTS}, {SAFE_INDEX}, {TF_WEIGHTS} and {TF_INDEX}"
    )


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Read every tensor of one safetensors file, upcasting half precision to float32."""
    out = {}
    try:
        with safe_open(str(path), framework="np") as f:
            for name in f.keys():
                try:
                    array = f.get_tensor(name)
                except (SafetensorError, ValueError, TypeError) as e:
                    raise OSError(f"cannot read tensor {name!r} from {path}: {e}") from None
                out[name] = array
    except (SafetensorError, OSError) as e:
        if isinstance(e, OSError) and str(path) in str(e):
            raise
        raise OSError(f"{path} is not a valid safetensors file: {e}") from None
    return out


# safetensors dtype names -> NumPy (those NumPy lacks map to the float type they would be read as)
_SAFE_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "float32",
    "F8_E4M3": "float32",
    "F8_E5M2": "float32",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
}


def _safetensors_error(path: Path, e: Exception) -> OSError:
    return OSError(f"{path} is not a valid safetensors file: {e}")


def _safetensors_header(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Name -> (shape, dtype) of every tensor of a safetensors file; no tensor data is read."""
    out = {}
    try:
        with safe_open(str(path), framework="np") as f:
            for name in f.keys():
                view = f.get_slice(name)
                dtype = _SAFE_DTYPES.get(view.get_dtype(), "float32")
                out[name] = (tuple(int(d) for d in view.get_shape()), np.dtype(dtype))
    except (SafetensorError, OSError) as e:
        raise _safetensors_error(path, e) from None
    return out


def _read_safetensor(path: Path, name: str) -> np.ndarray:
    """One tensor of a safetensors file. The file is mapped only while it is read: its pages do
    not stay in this process's resident set."""
    try:
        with safe_open(str(path), framework="np") as f:
            try:
                return f.get_tensor(name)
            except (SafetensorError, ValueError, TypeError) as e:
                raise OSError(f"cannot read tensor {name!r} from {path}: {e}") from None
    except SafetensorError as e:
        raise _safetensors_error(path, e) from None


class LazyStateDict(Mapping):
    """A checkpoint's tensors by name, read from disk each time one is looked up (never kept).

    Loading goes through it one tensor at a time, so a model's weights are in memory once (in its
    variables) rather than twice. :meth:`meta` gives a tensor's shape and dtype without reading it.
    """

    def __init__(self) -> None:
        self._meta: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self._readers: dict[str, tuple[Path, object]] = {}  # name -> (file, array or None)

    def add_safetensors(self, path: Path) -> None:
        """Index the tensors of one safetensors file (its header only)."""
        for name, meta in _safetensors_header(path).items():
            self._meta[name] = meta
            self._readers[name] = (path, None)

    def add_arrays(self, path: Path, arrays: Mapping[str, np.ndarray]) -> None:
        """Tensors already in memory (formats read whole, such as HDF5), attributed to ``path``."""
        for name, array in arrays.items():
            self._meta[name] = (tuple(array.shape), array.dtype)
            self._readers[name] = (path, array)

    def meta(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        """(shape, dtype) of tensor ``name``, without reading it."""
        return self._meta[name]

    def source(self, name: str) -> Path:
        """The file tensor ``name`` comes from."""
        return self._readers[name][0]

    def __getitem__(self, name: str) -> np.ndarray:
        path, array = self._readers[name]
        return _read_safetensor(path, name) if array is None else array  # type: ignore[return-value]

    def __iter__(self) -> Iterator[str]:
        return iter(self._meta)

    def __len__(self) -> int:
        return len(self._meta)

    def __contains__(self, name: object) -> bool:
        return name in self._meta


class AliasedTensors(Mapping):
    """``base`` plus extra names for some of its tensors (``alias -> name in base``), still lazy."""

    def __init__(self, base: Mapping[str, np.ndarray], aliases: Mapping[str, str]) -> None:
        self.base = base
        self.aliases = dict(aliases)

    def meta(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        return tensor_meta(self.base, self.aliases.get(name, name))

    def __getitem__(self, name: str) -> np.ndarray:
        return self.base[self.aliases.get(name, name)]

    def __iter__(self) -> Iterator[str]:
        yield from self.base
        yield from (a for a in self.aliases if a not in self.base)

    def __len__(self) -> int:
        return len(self.base) + sum(a not in self.base for a in self.aliases)

    def __contains__(self, name: object) -> bool:
        return name in self.aliases or name in self.base


class ComputedTensors(Mapping):
    """Tensors made on demand (converted from another format) by ``name -> (shape, dtype, make)``.

    Nothing is kept: each lookup calls ``make()`` again, so a model built from it holds each weight
    once, in its variable."""

    def __init__(self, makers: Mapping[str, tuple[tuple[int, ...], np.dtype, Callable[[], np.ndarray]]]):
        self._makers = dict(makers)

    def meta(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        shape, dtype, _ = self._makers[name]
        return tuple(shape), np.dtype(dtype)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._makers[name][2]()

    def __iter__(self) -> Iterator[str]:
        return iter(self._makers)

    def __len__(self) -> int:
        return len(self._makers)

    def __contains__(self, name: object) -> bool:
        return name in self._makers


def tensor_meta(tensors: Mapping[str, np.ndarray], name: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of ``tensors[name]``, without reading it when ``tensors`` is lazy."""
    meta = getattr(tensors, "meta", None)
    if meta is not None:
        return meta(name)
    array = tensors[name]
    return tuple(array.shape), array.dtype


def open_state_dict(directory: Path) -> tuple[LazyStateDict, dict[str, Path]]:
    """Index a model directory's weights without reading them: (lazy name -> array, name -> file).

    safetensors tensors are read when looked up; HDF5 files are read whole (h5py has no cheap
    per-tensor reads of Transformers' layout)."""
    fmt, files = find_weights(directory)
    tensors = LazyStateDict()
    for path in files:
        if fmt == "safetensors":
            tensors.add_safetensors(path)
        else:
            from xlagen.loading.h5 import load_h5_state_dict

            tensors.add_arrays(path, load_h5_state_dict(path))
    return tensors, {name: tensors.source(name) for name in tensors}


def load_state_dict(directory: Path) -> tuple[dict[str, np.ndarray], dict[str, Path]]:
    """Read all weights of a model directory: (name -> array, name -> file it came from)."""
    fmt, files = find_weights(directory)
    tensors: dict[str, np.ndarray] = {}
    sources: dict[str, Path] = {}
    for path in files:
        if fmt == "safetensors":
            part = read_safetensors(path)
        else:
            from xlagen.loading.h5 import load_h5_state_dict

            part = load_h5_state_dict(path)
        for name, array in part.items():
            tensors[name] = array
            sources[name] = path
    return tensors, sources


def write_safetensors(tensors: dict[str, np.ndarray], path: Path) -> None:
    """Write a PyTorch-flavoured safetensors file (the metadata Transformers requires)."""
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path), metadata={"format": "pt"})
