"""Read Transformers 4.x TF checkpoints (``tf_model.h5``) as PyTorch-style state dicts, with h5py only.

Transformers 4.x TF models are saved with Keras 2's ``save_weights`` HDF5 format:

* root attribute ``layer_names``: the model's top-level Keras layers (``"transformer"``, ``"model"``,
  ``"shared"``/``"encoder"``/``"decoder"``/``"lm_head"`` ...), plus an optional ``top_level_model_weights``
  group for weights owned by the model itself;
* each layer group has a ``weight_names`` attribute with the variables' full TF names, e.g.
  ``tfgpt2lm_head_model/transformer/h_._0/attn/c_attn/weight:0``; the values are datasets at that
  (nested) path below the layer group. One variable can be listed by several layers (T5's ``shared``
  embedding appears under ``shared``, ``encoder`` and ``decoder``).

Sharded checkpoints (``tf_model-00001-of-0000N.h5`` + ``tf_model.h5.index.json``) use a different layout:
the root ``layer_names`` attribute lists datasets directly, named by the variable name with the model's
name scope already removed (``encoder/block_._0/...``), except names with a single component or containing
``model.``, which keep the full name.

Variable names are mapped to PyTorch state-dict names the way Transformers 4.x did when it loaded TF weights
into a PyTorch model: drop the leading model name scope and the ``:0`` suffix, ``a___b`` -> ``b``,
``_._`` -> ``.``, ``/`` -> ``.``, and rename the last part (``kernel``/``embeddings``/``gamma`` -> ``weight``,
``beta`` -> ``bias``, ``moving_mean``/``moving_variance`` -> ``running_mean``/``running_var``). Keras
kernels are transposed to PyTorch's layout (Dense ``(in, out)`` -> ``(out, in)``; Conv1D
``(k, in, out)`` -> ``(out, in, k)``; Conv2D ``(kh, kw, in, out)`` -> ``(out, in, kh, kw)``). Weights not
named ``kernel`` (e.g. GPT-2's own ``Conv1D`` ``weight``, already ``(in, out)`` like PyTorch's) are kept as
they are, except that a ``(1, n)`` bias (GPT-2's ``Conv1D``) becomes ``(n,)``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import h5py

__all__ = ["load_h5_state_dict", "tf_weight_name_to_pt"]

_TOP_LEVEL_GROUP = "top_level_model_weights"
_LAST_PART_RENAMES = {
    "kernel": "weight",
    "embeddings": "weight",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
    "pointwise_kernel": "pointwise.weight",
    "depthwise_kernel": "depthwise.weight",
}
_KERNEL_NAMES = ("kernel", "pointwise_kernel", "depthwise_kernel")


def tf_weight_name_to_pt(tf_name: str, has_model_scope: bool = True) -> tuple[str, bool]:
    """Map a TF variable name to ``(pytorch_name, needs_transpose)``.

    ``has_model_scope`` says whether the name still starts with the model's name scope (to be dropped).
    """
    name = tf_name.removesuffix(":0")
    name = re.sub(r"(^|/)[^/]*___([^/]*)(?=/)", r"\1\2", name)  # "dup___real/" -> "real/"
    parts = [p for p in name.replace("_._", "/").split("/") if p]
    if not parts:
        raise ValueError(f"empty TF weight name {tf_name!r}")
    if has_model_scope and len(parts) > 1:
        parts = parts[1:]
    transpose = parts[-1] in _KERNEL_NAMES or "emb_projs" in parts or "out_projs" in parts
    parts[-1] = _LAST_PART_RENAMES.get(parts[-1], parts[-1])
    return ".".join(parts), transpose


def _to_pt_layout(value: np.ndarray, pt_name: str, transpose: bool) -> np.ndarray:
    """Convert a Keras-layout array to the PyTorch layout of ``pt_name``."""
    if transpose and value.ndim == 4:
        value = value.transpose(3, 2, 0, 1)  # Conv2D (kh, kw, in, out) -> (out, in, kh, kw)
    elif transpose:
        value = value.T  # Dense (in, out) -> (out, in); Conv1D (k, in, out) -> (out, in, k)
    elif pt_name.rsplit(".", 1)[-1] == "bias" and value.ndim == 2 and value.shape[0] == 1:
        value = value.reshape(value.shape[1])  # GPT-2 style Conv1D bias (1, n) -> (n,)
    return np.ascontiguousarray(value)


def _decode(names: object) -> list[str]:
    arr = np.asarray(names)
    if arr.size == 0:
        return []
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in arr.reshape(-1)]


def _read_attr_list(obj: object, attr: str) -> list[str] | None:
    """Read a Keras string-list attribute, including the chunked form (``attr0``, ``attr1``, ...)."""
    attrs = obj.attrs  # type: ignore[attr-defined]
    if attr in attrs:
        return _decode(attrs[attr])
    if f"{attr}0" not in attrs:
        return None
    out: list[str] = []
    chunk = 0
    while f"{attr}{chunk}" in attrs:
        out.extend(_decode(attrs[f"{attr}{chunk}"]))
        chunk += 1
    return out


def _read_h5_weights(path: Path) -> list[tuple[str, bool, np.ndarray]]:
    """Return ``(tf_name, has_model_scope, value)`` for every variable of one h5 file (each name once)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return _collect_weights(f, path)
    except (OSError, RuntimeError, KeyError) as exc:
        raise OSError(f"cannot read {str(path)!r} as an HDF5 TF checkpoint (corrupt file?): {exc}") from exc


def _collect_weights(f: h5py.File, path: Path) -> list[tuple[str, bool, np.ndarray]]:
    import h5py

    layer_names = _read_attr_list(f, "layer_names")
    if layer_names is None:
        raise ValueError(f"{str(path)!r} is an HDF5 file but not a Keras weights file (no 'layer_names')")
    if _TOP_LEVEL_GROUP in f and _TOP_LEVEL_GROUP not in layer_names:
        layer_names.append(_TOP_LEVEL_GROUP)
    out: list[tuple[str, bool, np.ndarray]] = []
    seen: set[str] = set()
    for layer_name in layer_names:
        obj = f.get(layer_name)
        if obj is None:
            raise ValueError(f"{str(path)!r}: layer {layer_name!r} is listed in 'layer_names' but missing")
        if isinstance(obj, h5py.Dataset):  # sharded layout: one dataset per variable, model scope removed
            if layer_name not in seen:
                seen.add(layer_name)
                has_scope = "model." in layer_name or "/" not in layer_name
                out.append((layer_name, has_scope, np.asarray(obj[()])))
            continue
        for weight_name in _read_attr_list(obj, "weight_names") or []:
            if weight_name in seen:  # shared variables are listed by every layer that uses them
                continue
            seen.add(weight_name)
            dataset = obj.get(weight_name)
            if not isinstance(dataset, h5py.Dataset):
                raise ValueError(
                    f"{str(path)!r}: weight {weight_name!r} of layer {layer_name!r} is missing or unreadable"
                )
            out.append((weight_name, True, np.asarray(dataset[()])))
    return out


def _shard_files(index_path: Path) -> list[Path]:
    try:
        index = json.loads(index_path.read_text(encoding="utf8"))
        files = sorted(set(index["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{str(index_path)!r} is not a valid tf_model.h5 index file: {exc}") from exc
    return [index_path.parent / name for name in files]


def _check_h5_file(path: Path) -> None:
    import h5py

    if not path.is_file():
        raise FileNotFoundError(f"TF checkpoint file {str(path)!r} does not exist")
    if not h5py.is_hdf5(path):
        with open(path, "rb") as fh:
            head = fh.read(64)
        hint = ""
        if head.startswith(b"version https://git-lfs"):
            hint = " (it is a Git LFS pointer; fetch the real file with `git lfs pull`)"
        raise ValueError(f"{str(path)!r} is not an HDF5 file{hint}")


def load_h5_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load a Transformers 4.x ``tf_model.h5`` as ``{pytorch_name: array}`` in PyTorch layouts.

    ``path`` is a ``tf_model.h5`` file, one shard of a sharded checkpoint, or a ``tf_model.h5.index.json``
    (all its shards are read). The names and layouts match the PyTorch model's ``model.safetensors``;
    tied weights appear once, under the name of the variable TF stored (e.g. T5's ``shared.weight``).
    """
    path = Path(path)
    if path.name.endswith(".json"):
        if not path.is_file():
            raise FileNotFoundError(f"TF checkpoint index {str(path)!r} does not exist")
        files = _shard_files(path)
    else:
        files = [path]
    state: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    for file in files:
        _check_h5_file(file)
        for tf_name, has_scope, value in _read_h5_weights(file):
            pt_name, transpose = tf_weight_name_to_pt(tf_name, has_model_scope=has_scope)
            if pt_name in state:
                raise ValueError(
                    f"{str(file)!r}: TF weights {sources[pt_name]!r} and {tf_name!r} both map to {pt_name!r}"
                )
            state[pt_name] = _to_pt_layout(value, pt_name, transpose)
            sources[pt_name] = tf_name
    return state
