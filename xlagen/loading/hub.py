"""Resolve a model name or path to a local directory.

xlagen never downloads: a name is found either as a directory on disk or as a snapshot in the
local Hugging Face cache (``HF_HUB_CACHE`` / ``HF_HOME`` / ``~/.cache/huggingface/hub``).
"""

from __future__ import annotations

import os
from pathlib import Path


def _hub_cache_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("HF_HUB_CACHE"):
        dirs.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        dirs.append(Path(os.environ["HF_HOME"]) / "hub")
    dirs.append(Path.home() / ".cache" / "huggingface" / "hub")
    return dirs


def resolve_pretrained_dir(name_or_path: str | os.PathLike) -> Path:
    """Return the local directory holding ``name_or_path``'s files.

    A path that exists is used as is; a hub name such as ``gpt2`` or ``org/model`` is looked up
    in the local Hugging Face cache (newest snapshot). Anything else raises a clear error, since
    model hubs are never contacted.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise NotADirectoryError(f"{str(name_or_path)!r} is a file; from_pretrained expects a directory")
    name = str(name_or_path)
    repo_folder = "models--" + name.replace("/", "--")
    for cache in _hub_cache_dirs():
        snapshots = cache / repo_folder / "snapshots"
        if snapshots.is_dir():
            candidates = sorted(
                (p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime
            )
            if candidates:
                return candidates[-1]
    raise OSError(
        f"{name!r} is not a local directory and was not found in the local Hugging Face cache "
        f"({', '.join(str(d) for d in _hub_cache_dirs())}). xlagen does not download models: "
        "pass the path of a directory holding config.json and the weights."
    )
