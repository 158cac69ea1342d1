"""Find and read a checkpoint's weights in a local directory, as numpy arrays under PyTorch names.

Formats: ``model.safetensors``, sharded safetensors (``model.safetensors.index.json``) and
Transformers 4.x TF ``tf_model.h5``. Every failure names the file (and tensor) at fault.
"""

from __future__ import annotations

import json
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
