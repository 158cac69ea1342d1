"""Dataset-scale generation and transcription on Apache Beam (``xlagen batch``; ``pip install xlagen[beam]``).

``GenerationModelHandler`` and ``TranscriptionModelHandler`` plug xlagen into Beam's ``RunInference``;
``xlagen.beam.pipeline`` builds the whole job (read, check, batch by shape bucket, infer, write results
and a dead-letter output), locally or on Dataflow, Flink or Spark. Beam is imported on first use only.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "GenerationModelHandler": "xlagen.beam.handlers",
    "TranscriptionModelHandler": "xlagen.beam.handlers",
    "TextGenerator": "xlagen.beam.handlers",
    "Transcriber": "xlagen.beam.handlers",
    "BatchJob": "xlagen.beam.pipeline",
    "run": "xlagen.beam.pipeline",
}

__all__ = sorted(_LAZY)


def require_beam() -> None:
    """Raise an ``ImportError`` saying how to install the extra when Apache Beam is missing."""
    try:
        import apache_beam  # noqa: F401
    except ImportError as e:
        raise ImportError(f"xlagen batch needs Apache Beam: pip install 'xlagen[beam]' ({e})") from e


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        require_beam()
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xlagen.beam' has no attribute {name!r}")
