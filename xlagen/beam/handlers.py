"""Beam ``ModelHandler``s for ``RunInference``: text generation and Whisper transcription with xlagen.

Each worker loads the model once (``load_model``) and compiles one program per shape bucket; the
compiled programs also go to the persistent XLA cache, so a later worker process skips the compile.
A handler never fails its batch for one bad record: every record is checked first, a batch call that
raises is retried record by record, and a record that still fails gets ``{"error": message}`` as its
inference result (the pipeline routes it to the dead-letter output).

The model object (``TextGenerator`` / ``Transcriber``) does all the work in one method call, so it
can live in another process when ``share_model_across_processes`` is on (one copy for all workers).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from xlagen.beam.records import RecordError, as_generation_record, batch_signature, default_seed

_MAX_POSITIONS_KEYS = ("n_positions", "max_position_embeddings")


def _max_positions(config: Any) -> int | None:
    for name in _MAX_POSITIONS_KEYS:
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


class TextPreparer:
    """Checks a generation record and tokenizes its prompt, with only the tokenizer and the configs
    loaded (no weights): the pipeline runs it before batching, so a bad record never reaches a batch."""

    def __init__(self, model_dir: str, defaults: dict[str, Any] | None = None, tokenizer: Any = None) -> None:
        import xlagen
        from xlagen.generation.buckets import Buckets
        from xlagen.generation.config import GenerationConfig
        from xlagen.loading.hub import resolve_pretrained_dir

        directory = resolve_pretrained_dir(model_dir)
        config = xlagen.AutoConfig.from_pretrained(directory)
        self.seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        self.max_positions = None if self.seq2seq else _max_positions(config)
        self.vocab_size = int(config.vocab_size)
        self.generation_config = GenerationConfig.from_pretrained_dir(directory, config)
        if tokenizer is None:
            tokenizer = xlagen.AutoTokenizer.from_pretrained(
                directory, padding_side="right" if self.seq2seq else "left"
            )
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        self.defaults = dict(defaults or {})
        self.buckets = Buckets()

    def prepare(self, element: Any) -> dict[str, Any]:
        """The record with its ``input_ids``, merged ``options`` and batching ``signature``; raises
        ``RecordError`` naming the problem (bad options, a prompt past the model's positions...)."""
        from xlagen.generation.validation import check_options, resolve_lengths

        record = dict(as_generation_record(element))
        options = {**self.defaults, **record["options"]}
        logprobs = options.get("logprobs", False)
        if not isinstance(logprobs, bool):
            raise RecordError(f"logprobs must be true or false, got {logprobs!r}")
        if not logprobs:
            options.pop("logprobs", None)
        seed = options.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise RecordError(f"seed must be an integer >= 0, got {seed!r}")
        kwargs = {k: v for k, v in options.items() if k not in ("logprobs", "seed")}
        try:
            gc = self.generation_config.update(**kwargs)
            check_options(gc, self.vocab_size)
        except (ValueError, TypeError) as e:
            raise RecordError(f"bad options: {e}") from None
        if gc.do_sample and seed is None:
            options["seed"] = default_seed(record["id"])
        elif not gc.do_sample:
            options.pop("seed", None)
        if logprobs and gc.num_beams > 1:
            raise RecordError("logprobs are given for greedy decoding and sampling, not with num_beams > 1")
        ids = list(self.tokenizer(record["prompt"])["input_ids"])
        if not ids:
            raise RecordError("the prompt tokenizes to no tokens")
        try:
            max_new, _ = resolve_lengths(gc, len(ids))
        except ValueError as e:
            raise RecordError(f"bad options: {e}") from None
        limit = self.max_positions
        if limit is not None and len(ids) + max_new > limit:
            raise RecordError(
                f"prompt of {len(ids)} tokens + max_new_tokens={max_new} exceeds the model's {limit} positions"
            )
        record.update(
            input_ids=ids,
            options=options,
            bucket=self.buckets.prompt(len(ids)),
            signature=batch_signature(options, record["id"]),
        )
        return record


_MODELS: dict[str, Any] = {}  # loaded text models of this process, by directory


class TextGenerator:
    """A loaded causal or seq2seq model and its tokenizer; ``generate_records`` turns a batch of
    records into one result dict per record (``{"error": ...}`` for a record that failed)."""

    def __init__(
        self, model_dir: str, defaults: dict[str, Any] | None = None, jit_compile: bool = True
    ) -> None:
        import xlagen

        self.preparer = TextPreparer(model_dir, defaults)
        key = str(os.path.realpath(model_dir))
        self.model = _MODELS.get(key)
        if self.model is None:  # once per process: later pipelines reuse the weights and compiled programs
            auto = xlagen.TFAutoModelForSeq2SeqLM if self.preparer.seq2seq else xlagen.TFAutoModelForCausalLM
            self.model = _MODELS[key] = auto.from_pretrained(model_dir)
        self.tokenizer = self.preparer.tokenizer
        self.jit_compile = jit_compile

    def generate_records(self, elements: Sequence[Any]) -> list[dict[str, Any]]:
        """Generate every record of ``elements``: records sharing a prompt bucket and options run as
        one call; a call that raises is retried record by record so only the bad record fails."""
        results: list[dict[str, Any] | None] = [None] * len(elements)
        groups: dict[tuple, list[tuple[int, dict]]] = {}
        for i, element in enumerate(elements):
            try:
                record = element if isinstance(element, dict) and "input_ids" in element else None
                record = record or self.preparer.prepare(element)
            except (RecordError, ValueError, TypeError) as e:
                results[i] = {"error": str(e)}
                continue
            groups.setdefault((record["bucket"], record["signature"]), []).append((i, record))
        for members in groups.values():
            try:
                outputs = self._generate([r for _, r in members])
            except Exception as e:  # noqa: BLE001 - isolate the bad record below
                if len(members) == 1:
                    results[members[0][0]] = {"error": f"generation failed: {type(e).__name__}: {e}"}
                    continue
                outputs = []
                for _, record in members:
                    try:
                        outputs.append(self._generate([record])[0])
                    except Exception as e1:  # noqa: BLE001
                        outputs.append({"error": f"generation failed: {type(e1).__name__}: {e1}"})
            for (i, _), out in zip(members, outputs):
                results[i] = out
        return results  # type: ignore[return-value]

    def _generate(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import numpy as np

        options = dict(records[0]["options"])
        logprobs = bool(options.pop("logprobs", False))
        seed = options.pop("seed", None)
        pad = self.tokenizer.pad_token_id
        width = max(len(r["input_ids"]) for r in records)
        ids = np.full([len(records), width], pad if pad is not None else 0, np.int32)
        mask = np.zeros([len(records), width], np.int32)
        for row, r in enumerate(records):
            n = len(r["input_ids"])
            cols = slice(0, n) if self.preparer.seq2seq else slice(width - n, width)
            ids[row, cols] = r["input_ids"]
            mask[row, cols] = 1
        kwargs: dict[str, Any] = dict(options, pad_token_id=pad, jit_compile=self.jit_compile)
        if seed is not None:
            kwargs["seed"] = seed
        if logprobs:
            kwargs["return_dict_in_generate"] = True
        out = self.model.generate(ids, attention_mask=mask, **kwargs)
        sequences = (out.sequences if logprobs else out).numpy()
        token_logprobs = out.token_logprobs.numpy() if logprobs else None
        skip = 1 if self.preparer.seq2seq else width  # the decoder start token / the prompt
        eos = set(self.preparer.generation_config.update(**options).eos_token_ids)
        results = []
        for row in range(len(records)):
            new = [int(t) for t in sequences[row, skip:]]
            end = next((k for k, t in enumerate(new) if t in eos), None)
            tokens = new if end is None else new[:end]
            result: dict[str, Any] = {
                "text": self.tokenizer.decode(tokens, skip_special_tokens=True),
                "tokens": tokens,
                "finish_reason": "length" if end is None else "stop",
            }
            if token_logprobs is not None:
                result["logprobs"] = [float(x) for x in token_logprobs[row, : len(tokens)]]
            results.append(result)
        return results


class _XlagenHandler(ModelHandler):
    """What the two handlers share: batching limits and model sharing across processes."""

    def __init__(
        self, max_batch_size: int, share_model_across_processes: bool, model_copies: int | None
    ) -> None:
        super().__init__(
            min_batch_size=1,
            max_batch_size=max_batch_size,
            large_model=share_model_across_processes,
            model_copies=model_copies if share_model_across_processes else None,
        )
        self.max_batch_size = max_batch_size

    def get_metrics_namespace(self) -> str:
        return "xlagen"


class GenerationModelHandler(_XlagenHandler):
    """``RunInference`` handler for text generation with any causal or seq2seq model xlagen loads.

    Inputs: prompt strings, or dicts ``{"prompt", "id"?, options...}`` with ``generate``'s option names
    (``max_new_tokens``, ``do_sample``, ``seed``, ``num_beams``, ``logprobs``...). Each result's
    ``inference`` is ``{"text", "tokens", "finish_reason", "logprobs"?}`` (the continuation only) or
    ``{"error"}``. ``options`` are defaults every record may override.
    """

    def __init__(
        self,
        model_dir: str,
        options: dict[str, Any] | None = None,
        *,
        max_batch_size: int = 32,
        share_model_across_processes: bool = False,
        model_copies: int | None = None,
        jit_compile: bool = True,
    ) -> None:
        super().__init__(max_batch_size, share_model_across_processes, model_copies)
        self.model_dir = str(model_dir)
        self.options = dict(options or {})
        self.jit_compile = jit_compile

    def load_model(self) -> TextGenerator:
        """Load the weights and tokenizer once per worker (or once per machine when shared)."""
        _quiet_tensorflow()
        return TextGenerator(self.model_dir, self.options, self.jit_compile)

    def run_inference(
        self, batch: Sequence[Any], model: TextGenerator, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        """One result per record, in order; bad records get ``{"error": ...}`` instead of failing the batch."""
        outputs = model.generate_records(list(batch))
        return [PredictionResult(example, out, self.model_dir) for example, out in zip(batch, outputs)]


class Transcriber:
    """A loaded Whisper pipeline; ``transcribe_records`` turns a batch of audio records into one result
    dict per record (``{"error": ...}`` for unreadable audio)."""

    def __init__(
        self, model_dir: str | None = None, batch_size: int = 8, options: dict[str, Any] | None = None
    ):
        from xlagen.models.whisper.transcribe import get_pipeline

        self.pipeline = get_pipeline(model_dir)
        self.batch_size = batch_size
        self.options = dict(options or {})

    def transcribe_records(self, elements: Sequence[Any]) -> list[dict[str, Any]]:
        """Transcribe ``elements`` (paths, bytes, or dicts with ``audio`` or decoded ``samples``); with
        ``batch_size`` > 1 the windows of all records are decoded together (``transcribe_batch``)."""
        results: list[dict[str, Any] | None] = [None] * len(elements)
        ready: list[tuple[int, Any]] = []
        for i, element in enumerate(elements):
            try:
                ready.append((i, decoded_audio(element)))
            except (OSError, ValueError, TypeError, RecordError) as e:
                results[i] = {"error": str(e)}
        if ready:
            try:
                outs = self._transcribe([s for _, s in ready])
            except Exception:  # noqa: BLE001 - isolate the bad record below
                outs = []
                for _, samples in ready:
                    try:
                        outs.append(self._transcribe([samples])[0])
                    except Exception as e:  # noqa: BLE001
                        outs.append({"error": f"transcription failed: {type(e).__name__}: {e}"})
            for (i, _), out in zip(ready, outs):
                results[i] = out
        return results  # type: ignore[return-value]

    def _transcribe(self, audios: list[Any]) -> list[dict[str, Any]]:
        if self.batch_size > 1:
            results = self.pipeline.transcribe_batch(audios, batch_size=self.batch_size, **self.options)
        else:
            results = [self.pipeline.transcribe(a, **self.options) for a in audios]
        return [transcription_dict(r) for r in results]


def transcription_dict(result: Any) -> dict[str, Any]:
    """The output fields of a ``TranscriptionResult``: text, segments (start, end, text), duration, language."""
    return {
        "text": result.text.strip(),
        "segments": [{"start": s.start, "end": s.end, "text": s.text.strip()} for s in result.segments],
        "duration": round(result.duration, 3),
        "language": result.language,
    }


def read_bytes(path: str) -> bytes:
    """The bytes of ``path`` through Beam's file systems, so ``gs://`` or ``s3://`` paths work on a cluster."""
    from apache_beam.io.filesystems import FileSystems

    if "://" not in path:
        if not os.path.exists(path):
            raise FileNotFoundError(f"audio file {path!r} does not exist")
        if os.path.isdir(path):
            raise ValueError(f"audio path {path!r} is a directory, not a file")
    with FileSystems.open(path) as f:
        return f.read()


def decoded_audio(element: Any) -> Any:
    """16 kHz mono samples of a transcription input: a path, bytes, or a dict with ``samples`` or ``audio``."""
    from xlagen.audio.loading import load_audio

    if isinstance(element, dict):
        if element.get("samples") is not None:
            return element["samples"]
        element = element.get("audio")
    if isinstance(element, str):
        data = read_bytes(element)
        if not data:
            raise ValueError(f"audio file {element!r} is empty (0 bytes)")
        try:
            return load_audio(data, 16000)
        except ValueError as e:
            raise ValueError(
                str(e).replace("'<bytes>'", repr(element)).replace("audio data", element)
            ) from None
    if isinstance(element, bytes | bytearray):
        return load_audio(element, 16000)
    raise RecordError(f"an audio input is a path, bytes or samples, got {type(element).__name__}")


class TranscriptionModelHandler(_XlagenHandler):
    """``RunInference`` handler for Whisper transcription (default: the bundled tiny.en).

    Inputs: audio file paths (any length), bytes, or dicts ``{"audio": path}`` / ``{"samples": array}``.
    Each result's ``inference`` is ``{"text", "segments": [{"start", "end", "text"}], "duration",
    "language"}`` or ``{"error"}``. ``batch_size``: windows decoded together, across records (1: the
    per-record reference recipe with temperature fallback).
    """

    def __init__(
        self,
        model_dir: str | None = None,
        *,
        batch_size: int = 8,
        options: dict[str, Any] | None = None,
        max_batch_size: int = 16,
        share_model_across_processes: bool = False,
        model_copies: int | None = None,
    ) -> None:
        super().__init__(max_batch_size, share_model_across_processes, model_copies)
        self.model_dir = model_dir
        self.batch_size = batch_size
        self.options = dict(options or {})

    def load_model(self) -> Transcriber:
        """Load Whisper once per worker (or once per machine when shared)."""
        _quiet_tensorflow()
        return Transcriber(self.model_dir, self.batch_size, self.options)

    def run_inference(
        self, batch: Sequence[Any], model: Transcriber, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        """One result per record, in order; unreadable audio gets ``{"error": ...}``."""
        outputs = model.transcribe_records(list(batch))
        return [PredictionResult(example, out, self.model_dir) for example, out in zip(batch, outputs)]


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
