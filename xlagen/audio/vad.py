"""Voice activity detection for Whisper: find the speech, decode only it, map times back.

Whisper run over long silences (or low noise) both wastes time and invents text there
(". . .", "Thank you."). With ``WhisperPipeline.transcribe(..., vad_filter=True)`` the recording is first cut into
speech regions by Silero VAD (through ``faster_whisper.vad``, the optional extra ``xlagen[vad]``,
which runs the model with onnxruntime on the CPU), the regions are joined into one shorter audio that
is transcribed as usual, and every time in the result (segments, and words when present) is mapped
back to the original recording by a ``SpeechMap``. For the batched mode the regions are gathered into
chunks (``speech_chunks``), each decoded on its own, as faster-whisper's ``BatchedInferencePipeline``
does, with two differences measured on tiny.en: chunks of at most 20 s rather than 30 s
(``BATCH_CHUNK_SECONDS``), and a speech region a chunk's decoding stopped before is decoded again
(tiny.en often leaves out the last sentence of a full chunk).

Segment times differ from faster-whisper's in one case, on purpose: a segment whose border lies less
than a second into a region across a removed silence is moved out of that region
(``SpeechMap.original_span``), rather than spanning the silence.

``VadOptions`` has faster-whisper's fields and defaults; ``vad_options`` accepts None, a dict or any
object carrying those fields (faster-whisper's own ``VadOptions`` included) and checks the values.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SAMPLING_RATE = 16000
INSTALL_HINT = "voice activity detection needs faster-whisper (Silero VAD): pip install 'xlagen[vad]'"


@dataclass
class VadOptions:
    """Silero VAD settings, faster-whisper's names and defaults.

    ``threshold``: speech probability at or above which a 32 ms frame is speech; ``neg_threshold``:
    below it, a frame ends speech (default ``max(threshold - 0.15, 0.01)``); ``min_speech_duration_ms``:
    shorter regions are dropped; ``max_speech_duration_s``: longer regions are split (at a silence
    of 100 ms or more when there is one); ``min_silence_duration_ms``: silence needed to end a region;
    ``speech_pad_ms``: padding added on both sides of each region.
    """

    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech_duration_ms: int = 0
    max_speech_duration_s: float = float("inf")
    min_silence_duration_ms: int = 2000
    speech_pad_ms: int = 400

    def validate(self) -> VadOptions:
        """Raise a ``ValueError`` naming the first parameter out of range; return self."""
        for name in ("threshold", "neg_threshold"):
            value = getattr(self, name)
            if value is None and name == "neg_threshold":
                continue
            if not _is_number(value) or not 0 <= value <= 1:
                raise ValueError(f"vad_parameters: {name} must be a number in [0, 1], got {value!r}")
        if self.neg_threshold is not None and self.neg_threshold > self.threshold:
            raise ValueError(
                f"vad_parameters: neg_threshold ({self.neg_threshold}) must not exceed threshold "
                f"({self.threshold})"
            )
        for name in ("min_speech_duration_ms", "min_silence_duration_ms", "speech_pad_ms"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0 or math.isinf(value):
                raise ValueError(f"vad_parameters: {name} must be a number >= 0, got {value!r}")
        value = self.max_speech_duration_s
        if not _is_number(value) or value <= 0:
            raise ValueError(f"vad_parameters: max_speech_duration_s must be a number > 0, got {value!r}")
        return self


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


_FIELDS = tuple(f.name for f in dataclasses.fields(VadOptions))


def vad_options(parameters: Any = None, **overrides: Any) -> VadOptions:
    """``VadOptions`` from None (the defaults), a dict, or an object with ``VadOptions``' fields (e.g.
    faster-whisper's); ``overrides`` replace fields. Unknown names and bad values raise ``ValueError``."""
    if parameters is None:
        values: dict[str, Any] = {}
    elif isinstance(parameters, Mapping):
        unknown = sorted(set(parameters) - set(_FIELDS))
        if unknown:
            raise ValueError(
                f"vad_parameters: unknown parameter(s) {', '.join(map(str, unknown))}; "
                f"expected some of {', '.join(_FIELDS)}"
            )
        values = dict(parameters)
    elif all(hasattr(parameters, name) for name in _FIELDS):
        values = {name: getattr(parameters, name) for name in _FIELDS}
    else:
        raise TypeError(f"vad_parameters must be a dict or VadOptions, got {type(parameters).__name__}")
    values.update(overrides)
    return VadOptions(**values).validate()


def require_silero():
    """faster-whisper's ``get_speech_timestamps`` (Silero VAD), or an ``ImportError`` saying what to install."""
    try:
        from faster_whisper.vad import get_speech_timestamps
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return get_speech_timestamps


def speech_regions(audio: np.ndarray, options: VadOptions | None = None) -> list[tuple[int, int]]:
    """The speech in ``audio`` (16 kHz mono float samples): sorted, disjoint ``(start, end)`` sample
    ranges, padded by ``options.speech_pad_ms`` (Silero VAD, as faster-whisper runs it)."""
    options = (options or VadOptions()).validate()
    get_speech_timestamps = require_silero()
    from faster_whisper.vad import VadOptions as SileroOptions

    found = get_speech_timestamps(
        np.asarray(audio, np.float32), SileroOptions(**dataclasses.asdict(options)), SAMPLING_RATE
    )
    regions = [(int(r["start"]), int(r["end"])) for r in found]
    return [(a, b) for a, b in regions if b > a]


class SpeechMap:
    """Times in the joined speech (the regions one after another) to times in the original audio.

    ``original_time(t)`` maps any time, so segments and words alike can be mapped: a time on the
    border between two regions belongs to the later one, or to the earlier one with ``is_end``.
    """

    edge_tolerance = 1.0  # seconds: see ``original_span``

    def __init__(self, regions: Sequence[tuple[int, int]], sampling_rate: int = SAMPLING_RATE) -> None:
        self.regions = [(int(a), int(b)) for a, b in regions]
        self.sampling_rate = sampling_rate
        self.joined_ends: list[int] = []  # end of each region in the joined audio (samples)
        self.shifts: list[int] = []  # samples removed before each region
        total = 0
        for a, b in self.regions:
            self.shifts.append(a - total)
            total += b - a
            self.joined_ends.append(total)

    @property
    def joined_starts(self) -> list[int]:
        """Where each region starts in the joined audio (samples)."""
        return [0, *self.joined_ends[:-1]] if self.joined_ends else []

    @property
    def speech_duration(self) -> float:
        """Seconds of speech kept (the joined audio's length)."""
        return (self.joined_ends[-1] if self.joined_ends else 0) / self.sampling_rate

    def region_index(self, time: float, is_end: bool = False) -> int:
        """Index of the region holding joined time ``time`` (clamped to the first/last region)."""
        sample = round(time * self.sampling_rate)
        find = bisect.bisect_left if is_end else bisect.bisect_right
        return min(find(self.joined_ends, sample), len(self.joined_ends) - 1)

    def original_time(self, time: float, is_end: bool = False, region: int | None = None) -> float:
        """Seconds from the start of the original audio for ``time`` seconds into the joined speech
        (in ``region`` when given, else in the region that holds it)."""
        if not self.regions:
            return time
        if region is None:
            region = self.region_index(time, is_end)
        return round(time + self.shifts[region] / self.sampling_rate, 3)

    def original_span(self, start: float, end: float) -> tuple[float, float]:
        """Original times of a segment decoded from ``start`` to ``end`` in the joined speech.

        Whisper's segment borders are loose (often half a second early or late), and in the joined
        speech two sentences may be only the padding apart while a long silence separated them: a
        segment that reaches less than ``edge_tolerance`` seconds into a region on the far side of a
        removed silence is taken out of that region, so it does not span the silence (faster-whisper
        maps such a border as it is, and a sentence said after 15 s of silence then starts 15 s early).
        """
        if not self.regions:
            return start, end
        first, last = self.region_index(start), self.region_index(end, is_end=True)
        rate = self.sampling_rate
        while first < last and self.joined_ends[first] / rate - start < self.edge_tolerance:
            first += 1
            start = self.joined_ends[first - 1] / rate
        while last > first and end - self.joined_ends[last - 1] / rate < self.edge_tolerance:
            last -= 1
            end = self.joined_ends[last] / rate
        begin = self.original_time(start, region=first)
        return begin, max(begin, self.original_time(end, region=last))

    def restore(self, result: Any, duration: float) -> Any:
        """Map a ``TranscriptionResult`` decoded on the joined speech back to the original audio of
        ``duration`` seconds: segments by ``original_span``, and each word with both ends in the
        region of its middle (a word is never stretched over a removed silence); a segment with words
        then spans them."""
        for segment in result.segments:
            segment.start, segment.end = self.original_span(segment.start, segment.end)
            words = getattr(segment, "words", None) or ()
            for word in words:
                region = self.region_index((word.start + word.end) / 2)
                word.start = self.original_time(word.start, region=region)
                word.end = self.original_time(word.end, region=region)
            if words:  # a segment with words runs from its first word to its last (as without VAD)
                segment.start, segment.end = words[0].start, words[-1].end
        result.duration = duration
        return result


def join_speech(audio: np.ndarray, regions: Sequence[tuple[int, int]]) -> np.ndarray:
    """The samples of ``regions`` one after another (empty when there is no speech)."""
    if not regions:
        return np.zeros(0, np.float32)
    return np.concatenate([audio[a:b] for a, b in regions]).astype(np.float32, copy=False)


def speech_chunks(
    regions: Sequence[tuple[int, int]], max_duration: float = 30.0, sampling_rate: int = SAMPLING_RATE
) -> list[tuple[int, int]]:
    """The joined speech cut into chunks of at most ``max_duration`` seconds at region borders:
    ``(start, end)`` sample ranges of the joined audio, each holding whole regions (a region longer
    than ``max_duration`` is a chunk of its own). Regions from ``speech_regions`` with
    ``max_speech_duration_s=max_duration`` all fit."""
    limit = max_duration * sampling_rate
    chunks: list[tuple[int, int]] = []
    start = position = 0
    for a, b in regions:
        if position > start and position + (b - a) - start > limit:
            chunks.append((start, position))
            start = position
        position += b - a
    if position > start:
        chunks.append((start, position))
    return chunks


# Speech gathered into chunks of at most this many seconds in the batched mode (faster-whisper: 30).
# Whisper tiny.en reads fuller chunks worse and more often leaves their last sentence out (greedy, batch
# 8, chunks of 30 / 25 / 20 / 15 s: long-silence set WER 20.3 / 15.0 / 15.0 / 15.7%, dev_long.wav
# 14.4 / 11.1 / 9.8 / 12.4%, dev_long 7.6 / 6.3 / 3.7 s at 30 / 25 / 20 s: fewer tokens per row,
# fewer second passes).
BATCH_CHUNK_SECONDS = 20.0


def speech_only(
    audio: np.ndarray,
    parameters: Any = None,
    batched: bool = False,
    window_seconds: float = 30.0,
    chunk_seconds: float = BATCH_CHUNK_SECONDS,
) -> tuple[SpeechMap, np.ndarray, list[tuple[int, int]] | None]:
    """What ``WhisperPipeline.transcribe(vad_filter=True)`` decodes instead of ``audio``: the time map,
    the joined speech, and for the ``batched`` mode its chunks of at most one window.

    Sequential mode: faster-whisper's ``WhisperModel`` defaults (2 s of silence end a region).
    Batched mode: faster-whisper's ``BatchedInferencePipeline`` defaults (160 ms of silence end a
    region, regions split at ``window_seconds``), so that chunks are cut between sentences; regions
    are gathered into chunks of at most ``chunk_seconds`` (a longer region is a chunk alone).
    """
    if batched:
        options = vad_options({"min_silence_duration_ms": 160} if parameters is None else parameters)
        options.max_speech_duration_s = min(options.max_speech_duration_s, window_seconds)
    else:
        options = vad_options(parameters)
    regions = speech_regions(audio, options)
    speech = SpeechMap(regions)
    chunks = speech_chunks(regions, min(chunk_seconds, window_seconds)) if batched else None
    return speech, join_speech(audio, regions), chunks
