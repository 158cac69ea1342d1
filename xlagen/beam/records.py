"""Record formats of ``xlagen batch``: parsing JSON Lines input, checking each record before it is batched,
and the result and dead-letter lines written out.

Nothing here imports Beam, so the formats are usable (and testable) without it. A record that cannot be
processed becomes a :class:`RecordError` carrying its key, the input it came from and a message naming
what is wrong; the pipeline writes it to the dead-letter output instead of failing the batch.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

# Per-record options of text generation, with ``generate``'s names; ``logprobs`` asks for the
# log-probability of each generated token in the output.
GENERATION_OPTIONS = (
    "max_new_tokens",
    "min_new_tokens",
    "temperature",
    "do_sample",
    "seed",
    "top_k",
    "top_p",
    "num_beams",
    "repetition_penalty",
    "length_penalty",
    "no_repeat_ngram_size",
    "early_stopping",
    "logprobs",
)
# Keys of a generation record that are not options.
_RECORD_FIELDS = ("id", "prompt")
# Options that change the compiled program (a batch shares them); the others (seed) are per call.
_SHAPE_OPTIONS = tuple(o for o in GENERATION_OPTIONS if o != "seed")


class RecordError(Exception):
    """A record that cannot be processed: its message goes to the dead-letter output with the record."""


@dataclass
class Failure:
    """A dead-letter entry: the record's ``id`` (None when it has none), the input ``line`` number
    (when read from JSON Lines), the ``error`` message and the ``input`` (the parsed record, or the raw line)."""

    id: Any
    error: str
    input: Any = None
    line: int | None = None

    def to_json(self) -> str:
        out: dict[str, Any] = {"id": self.id, "error": self.error}
        if self.line is not None:
            out["line"] = self.line
        out["input"] = self.input
        return json.dumps(out, ensure_ascii=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if hasattr(value, "tolist"):
        return value.tolist()
    return repr(value)


def record_key(record_id: Any) -> str:
    """A record id as a Beam key: its JSON text, so that the number 1 and the string "1" stay distinct."""
    return json.dumps(record_id, ensure_ascii=False)


def check_id(record_id: Any) -> None:
    """Ids are JSON strings or numbers (not booleans, null, lists or objects)."""
    if isinstance(record_id, bool) or not isinstance(record_id, str | int | float):
        raise RecordError(f'"id" must be a JSON string or number, got {json.dumps(record_id)}')


def parse_generation_line(line: str, number: int) -> dict[str, Any]:
    """One JSON Lines record of ``xlagen batch generate``: ``{"id", "prompt", options...}``.

    Returns ``{"id", "prompt", "options", "line", "input"}``; raises ``RecordError`` for malformed
    JSON, a missing or bad id or prompt, and unknown option names.
    """
    data = _record_with_id(line, number)
    prompt = data.get("prompt")
    if not isinstance(prompt, str):
        got = "nothing" if prompt is None else type(prompt).__name__
        raise RecordError(f'"prompt" must be a string, got {got}')
    if not prompt:
        raise RecordError('"prompt" is empty')
    unknown = sorted(k for k in data if k not in _RECORD_FIELDS and k not in GENERATION_OPTIONS)
    if unknown:
        raise RecordError(
            f"unknown option(s) {', '.join(unknown)}; per-record options are: {', '.join(GENERATION_OPTIONS)}"
        )
    options = {k: data[k] for k in GENERATION_OPTIONS if k in data}
    return {"id": data["id"], "prompt": prompt, "options": options, "line": number, "input": data}


def _record_with_id(line: str, number: int) -> dict[str, Any]:
    """A JSON Lines record: a JSON object with a valid ``"id"`` (errors name the line)."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as e:
        raise RecordError(f"line {number}: malformed JSON: {e}") from None
    if not isinstance(data, dict):
        raise RecordError(f"line {number}: a record must be a JSON object, got {type(data).__name__}")
    if "id" not in data:
        raise RecordError(f'line {number}: the record has no "id"')
    check_id(data["id"])
    return data


def parse_audio_line(line: str, number: int) -> dict[str, Any]:
    """One JSON Lines record of ``xlagen batch transcribe``: ``{"id", "audio": path}``."""
    data = _record_with_id(line, number)
    audio = data.get("audio")
    if not isinstance(audio, str) or not audio:
        raise RecordError('"audio" must be the path of an audio file')
    unknown = sorted(k for k in data if k not in ("id", "audio"))
    if unknown:
        raise RecordError(f'unknown field(s) {", ".join(unknown)}; a record is {{"id", "audio"}}')
    return {"id": data["id"], "audio": audio, "line": number, "input": data}


def as_generation_record(element: Any) -> dict[str, Any]:
    """What a generation handler accepts, as one form: a prompt string, or a dict with ``prompt``
    (and optionally ``id`` and options, at the top level or under ``options``)."""
    if isinstance(element, str):
        return {"id": None, "prompt": element, "options": {}, "input": element}
    if isinstance(element, dict) and "prompt" in element:
        if "options" in element and isinstance(element["options"], dict) and "input" in element:
            return element  # already parsed
        record = dict(element)
        options = dict(record.pop("options", None) or {})
        prompt = record.pop("prompt")
        record_id = record.pop("id", None)
        unknown = sorted(k for k in record if k not in GENERATION_OPTIONS)
        if unknown:
            raise RecordError(f"unknown option(s) {', '.join(unknown)}")
        options.update(record)
        if not isinstance(prompt, str) or not prompt:
            raise RecordError('"prompt" must be a non-empty string')
        return {"id": record_id, "prompt": prompt, "options": options, "input": element}
    raise RecordError(
        f"a generation input is a prompt string or a dict with a prompt, got {type(element).__name__}"
    )


def default_seed(record_id: Any) -> int:
    """The sampling seed of a record that gives none: derived from its id, so a re-run samples the same."""
    return zlib.crc32(record_key(record_id).encode("utf-8"))


def batch_signature(options: dict[str, Any], record_id: Any) -> tuple:
    """What records must share to be generated in one call: the options that shape the compiled
    program. A sampled record is its own batch, so its output depends only on its seed, not on its batch."""
    shape = tuple(sorted((k, repr(options[k])) for k in _SHAPE_OPTIONS if k in options))
    if options.get("do_sample"):
        return (*shape, ("record", record_key(record_id)))
    return shape
