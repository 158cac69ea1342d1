"""Keep TensorFlow's native log noise off the terminal without hiding real errors.

TensorFlow's C++ side writes to file descriptor 2 directly, so Python's ``logging`` cannot filter it,
and two kinds of its lines ignore ``TF_CPP_MIN_LOG_LEVEL``:

* lines logged before absl's logging is initialised (each of TensorFlow's libraries prints
  ``WARNING: All log messages before absl::InitializeLog() is called are written to STDERR`` and
  then every line, INFO included, e.g. "oneDNN custom operations are on");
* two false errors on every program loaded from the persistent XLA cache: protobuf's
  ``Error parsing text-format tensorflow.XlaSerializedCacheEntry`` (TensorFlow tries the text format
  before the binary one it wrote) and XLA's ``Target machine feature +prefer-no-scatter is not
  supported`` (a tuning hint recorded as if it were an instruction set).

Those lines come out at two moments only: while TensorFlow is imported and while a compiled program
runs for the first time (tracing, compiling or loading it). :func:`quiet_native_logs` wraps such a
moment: file descriptor 2 goes to a temporary file, and afterwards every line is written back to
the real stderr except (1) native log records below the ``TF_CPP_MIN_LOG_LEVEL`` in effect (xlagen
defaults it to 2, errors only; TensorFlow applies the same rule itself once its logging is up) and
(2) the exact false errors above. Anything else (a real error record, a Python warning, a line of
unknown shape) is kept, in order. ``XLAGEN_TF_LOGS=all`` turns the filter off.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# absl / glog record prefix: severity letter, MMDD, time, thread id, file:line]
_RECORD = re.compile(rb"^([IWEF])\d{4} [\d:.]+\s+\d+ [^\]]*\] ")
_SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}
_BENIGN = (
    re.compile(
        rb"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR\s*$"
    ),
    re.compile(rb"\] Error parsing text-format tensorflow\.XlaSerializedCacheEntry: "),
    # only the tuning hints: a real instruction-set mismatch (say +avx512f) stays visible
    re.compile(
        rb"\] Loading XLA:CPU AOT result\. Target machine feature \+prefer-no-(scatter|gather) is not "
    ),
)
# second line of TensorFlow's cpu_feature_guard INFO record
_CONTINUATION = re.compile(
    rb"^To enable the following instructions: .* rebuild TensorFlow with the appropriate"
)

_lock = threading.Lock()
_active = False


def filtering_enabled() -> bool:
    """False when ``XLAGEN_TF_LOGS=all`` (or ``1``) asks for TensorFlow's native logs as they are."""
    return os.environ.get("XLAGEN_TF_LOGS", "").strip().lower() not in ("all", "1", "true", "yes", "on")


def _min_level() -> int:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def keep_lines(data: bytes, min_level: int | None = None) -> bytes:
    """The bytes of ``data`` minus the lines :func:`quiet_native_logs` drops (see the module doc)."""
    level = _min_level() if min_level is None else min_level
    kept = []
    dropped_record = False
    for line in data.splitlines(keepends=True):
        record = _RECORD.match(line)
        if record is not None:
            dropped_record = _SEVERITY[record.group(1)] < level or any(p.search(line) for p in _BENIGN)
            if not dropped_record:
                kept.append(line)
            continue
        if any(p.search(line) for p in _BENIGN) or (dropped_record and _CONTINUATION.match(line)):
            continue
        dropped_record = False
        kept.append(line)
    return b"".join(kept)


@contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Run the body with file descriptor 2 captured; write back what :func:`keep_lines` keeps.

    Re-entrant and thread-safe: while one window is open, other threads' stderr output is captured
    by it too and written back when it closes (delayed, never lost)."""
    global _active
    with _lock:
        if _active or not filtering_enabled():
            owner = False
        else:
            owner = _active = True
    if not owner:
        yield
        return
    try:
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - a closed or odd sys.stderr must not break the caller
        pass
    saved = os.dup(2)
    capture = tempfile.TemporaryFile()
    os.dup2(capture.fileno(), 2)
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        os.dup2(saved, 2)
        os.close(saved)
        with _lock:
            _active = False
        capture.seek(0)
        kept = keep_lines(capture.read())
        capture.close()
        if kept:
            os.write(2, kept)
