"""A persistent XLA compilation cache on disk, on by default, so a new process skips the backend compile.

TensorFlow keeps compiled XLA programs on disk when ``TF_XLA_FLAGS`` carries
``--tf_xla_persistent_cache_directory=DIR``. It reads that variable once, at the first TensorFlow
operation of the process (not at ``import tensorflow``), so xlagen sets it when it is imported,
before it runs any operation. Settings (environment variables):

* ``XLAGEN_XLA_CACHE=0`` (or ``off``/``false``/``no``): leave TensorFlow's flags alone;
* ``XLAGEN_XLA_CACHE=/some/dir``: keep the cache there;
* unset: ``$XDG_CACHE_HOME/xlagen/xla`` (``~/.cache/xlagen/xla``);
* ``XLAGEN_XLA_CACHE_MAX_MB`` (default 2048): at import, the least recently used programs are
  deleted until the directory is under this size (TensorFlow itself never deletes any);
* ``XLAGEN_TRACE_STORE=0``: do not keep traced programs in ``DIR/traces`` (a later process then
  traces them again; see :mod:`xlagen.generation.programs`).

A ``--tf_xla_persistent_cache_directory`` already in ``TF_XLA_FLAGS`` wins. Importing xlagen after
TensorFlow has run an operation leaves the cache off for that process (TensorFlow parsed its
flags already); :func:`cache_directory` then still reports the directory asked for, and
:func:`cache_active` says False.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

FLAG = "--tf_xla_persistent_cache_directory"
_OFF = {"0", "off", "false", "no", "none", ""}
_PREFIX = "xla_compile_cache"  # TensorFlow's default --tf_xla_persistent_cache_prefix
DEFAULT_MAX_MB = 2048
_state: dict[str, object] = {"directory": None, "active": False}


def default_directory() -> Path:
    """``$XDG_CACHE_HOME/xlagen/xla``, or ``~/.cache/xlagen/xla``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xlagen" / "xla"


def _flag_value(flags: str) -> str | None:
    for part in flags.split():
        if part.startswith(FLAG + "="):
            return part.split("=", 1)[1]
    return None


def _tensorflow_started() -> bool:
    """True when TensorFlow has created its eager context (its flags are parsed by then)."""
    if "tensorflow" not in sys.modules:
        return False
    try:
        from tensorflow.python.eager import context

        return context.context()._context_handle is not None  # noqa: SLF001 - no public probe exists
    except Exception:  # noqa: BLE001 - internals moved: assume it has not started
        return False


def configure() -> Path | None:
    """Turn the persistent cache on for this process unless the user opted out. Returns its directory."""
    setting = os.environ.get("XLAGEN_XLA_CACHE")
    flags = os.environ.get("TF_XLA_FLAGS", "")
    existing = _flag_value(flags)
    if existing is not None:
        directory: Path | None = Path(existing)
    elif setting is not None and setting.strip().lower() in _OFF:
        directory = None
    else:
        directory = Path(setting).expanduser() if setting else default_directory()
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            directory = None  # read-only home, say: compile as usual
        else:
            os.environ["TF_XLA_FLAGS"] = f"{flags} {FLAG}={directory}".strip()
            prune(directory, _max_bytes())
    _state["directory"] = directory
    _state["active"] = directory is not None and not _tensorflow_started()
    return directory


def cache_directory() -> Path | None:
    """Where compiled programs are kept (None when the cache is off)."""
    return _state["directory"]  # type: ignore[return-value]


def cache_active() -> bool:
    """Whether TensorFlow will use the cache in this process (False when xlagen came too late)."""
    return bool(_state["active"])


def _max_bytes() -> int:
    value = os.environ.get("XLAGEN_XLA_CACHE_MAX_MB", str(DEFAULT_MAX_MB))
    try:
        return int(float(value) * 2**20)
    except ValueError:
        raise ValueError(f"XLAGEN_XLA_CACHE_MAX_MB must be a number of megabytes, got {value!r}") from None


def prune(directory: Path, max_bytes: int) -> list[Path]:
    """Delete the least recently used compiled programs in ``directory`` until it holds at most
    ``max_bytes``; only TensorFlow's cache files and xlagen's stored traces (``traces/``, see
    :mod:`xlagen.generation.programs`) are touched. Returns the deleted paths."""
    entries = []
    for path in [*directory.glob(f"{_PREFIX}*"), *(directory / "traces").glob("*.trace")]:
        try:
            st = path.stat()
        except OSError:
            continue
        entries.append((max(st.st_atime, st.st_mtime), st.st_size, path))
    total = sum(size for _, size, _ in entries)
    removed = []
    for _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        try:
            path.unlink()
        except OSError:
            continue
        total -= size
        removed.append(path)
    return removed
