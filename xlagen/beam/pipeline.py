"""Beam pipelines of ``xlagen batch``: read records, check them, batch them by shape bucket, run
``RunInference`` with an xlagen handler, write JSON Lines results and a dead-letter output.

Every input record ends up exactly once in ``results-*.jsonl`` or ``errors-*.jsonl``: malformed lines,
records without an id or prompt, duplicate ids, bad options and prompts past the model's positions are
caught before batching (with their line number); a batch that fails is retried record by record in the
handler, and whatever still escapes ``RunInference`` (``with_exception_handling``) is dead-lettered
record by record too.

Batches are formed by length: each record is keyed by its shape bucket (prompt-token bucket and the
options that shape the compiled program, or the audio's 30 s window count) and ``GroupIntoBatches``
fills batches per key, so a batch pads to one bucket and runs one compiled program.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import PredictionResult, RunInference

from xlagen.beam.handlers import (
    GenerationModelHandler,
    TextPreparer,
    TranscriptionModelHandler,
    decoded_audio,
)
from xlagen.beam.records import (
    Failure,
    RecordError,
    parse_audio_line,
    parse_generation_line,
    record_key,
)

RESULTS = "results"
ERRORS = "errors"
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aiff", ".aif")


@dataclass
class BatchJob:
    """What to run: the input (JSON Lines file or audio glob), the output folder, the model and options."""

    task: str  # "generate" or "transcribe"
    input: str
    output: str
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    max_batch_size: int = 32
    window_batch: int = 8  # transcription: windows decoded together
    share_model_across_processes: bool = False
    done_keys: frozenset[str] = frozenset()  # --resume: keys already in the output
    run_tag: str = ""  # "run2" for a resumed run: its shards (results-run2-*) sit beside the earlier ones
    progress_total: int | None = None
    progress: bool = True


class ReadNumberedLines(beam.DoFn):
    """Each non-blank line of the files matching a pattern, with its 1-based line number (named
    ``path:N`` when the pattern matches several files)."""

    def process(self, pattern: str) -> Iterable[tuple[Any, str]]:
        paths = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
        if not paths:
            raise FileNotFoundError(f"no input file matches {pattern!r}")
        for path in paths:
            with FileSystems.open(path) as f:
                for number, raw in enumerate(f, 1):
                    line = raw.decode("utf-8", errors="replace").strip()
                    if line:
                        yield (number if len(paths) == 1 else f"{path}:{number}", line)


class ParseRecords(beam.DoFn):
    """Parse a numbered line; a bad line goes to the ``errors`` output with its line number."""

    def __init__(self, parse: Callable[[str, int], dict[str, Any]]) -> None:
        self.parse = parse

    def process(self, element: tuple[Any, str]):
        number, line = element
        try:
            yield self.parse(line, number)
        except RecordError as e:
            record_id = None
            try:
                data = json.loads(line)
                if isinstance(data, dict) and isinstance(data.get("id"), str | int | float):
                    record_id = data["id"]
                    line = data
            except json.JSONDecodeError:
                pass
            yield beam.pvalue.TaggedOutput(ERRORS, Failure(record_id, str(e), line, number))


class KeepFirst(beam.DoFn):
    """Of the records sharing an id, keep the first one (lowest line); the others are dead-lettered.
    A record whose key is in ``done`` (in the results of an earlier run) is not processed again."""

    def __init__(self, done: frozenset[str] = frozenset()) -> None:
        self.done = done

    def process(self, element: tuple[str, Iterable[dict[str, Any]]]):
        key, records = element
        records = sorted(records, key=lambda r: (str(type(r["line"])), r["line"]))
        if key not in self.done:  # else the first one is in an earlier run's results
            yield records[0]
        for r in records[1:]:
            yield beam.pvalue.TaggedOutput(
                ERRORS,
                Failure(
                    r["id"], f"duplicate id {key} (first on line {records[0]['line']})", r["input"], r["line"]
                ),
            )


class PrepareText(beam.DoFn):
    """Tokenize and check a generation record (tokenizer and configs only, no weights) and key it by
    its batch shape; a bad record goes to the ``errors`` output."""

    def __init__(self, model_dir: str, options: dict[str, Any]) -> None:
        self.model_dir = model_dir
        self.options = options

    def setup(self) -> None:
        self.preparer = TextPreparer(self.model_dir, self.options)

    def process(self, record: dict[str, Any]):
        try:
            prepared = self.preparer.prepare(record)
        except (RecordError, ValueError, TypeError) as e:
            yield beam.pvalue.TaggedOutput(
                ERRORS, Failure(record["id"], str(e), record["input"], record.get("line"))
            )
            return
        yield json.dumps([prepared["bucket"], prepared["signature"]]), prepared


class PrepareAudio(beam.DoFn):
    """Read and decode an audio record (unreadable audio goes to ``errors``) and key it by its length
    in 30 s windows, rounded up to a power of two."""

    def process(self, record: dict[str, Any]):
        try:
            samples = decoded_audio(record["audio"])
        except (OSError, ValueError, TypeError, RecordError) as e:
            yield beam.pvalue.TaggedOutput(
                ERRORS, Failure(record["id"], str(e), record["input"], record.get("line"))
            )
            return
        windows = max(1, -(-len(samples) // (30 * 16000)))
        bucket = 1
        while bucket < windows:
            bucket *= 2
        yield str(bucket), {**record, "samples": samples}


def _audio_records(pattern: str) -> Callable[[str], Iterable[dict[str, Any]]]:
    """Records of a transcription input: a JSON Lines file (``.jsonl``) or a glob of audio files."""

    def expand(_: str) -> Iterable[dict[str, Any]]:
        paths = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
        if not paths and not any(ch in pattern for ch in "*?["):
            paths = [pattern]  # a single missing file: dead-lettered as missing
        for path in paths:
            shown = path if any(ch in pattern for ch in "*?[") else pattern
            yield {"id": shown, "audio": path, "line": None, "input": shown}

    return expand


class ToOutputs(beam.DoFn):
    """A ``PredictionResult`` as an output line, or as a dead-letter entry when its inference is an error."""

    def __init__(self, fields: tuple[str, ...]) -> None:
        self.fields = fields

    def process(self, result: PredictionResult):
        record, inference = result.example, result.inference
        if "error" in inference:
            yield beam.pvalue.TaggedOutput(
                ERRORS, Failure(record.get("id"), inference["error"], record.get("input"), record.get("line"))
            )
            return
        yield json.dumps({"id": record.get("id"), **inference}, ensure_ascii=False)


def _failed_batch(element: tuple[Any, Any]) -> Iterable[Failure]:
    """What ``RunInference.with_exception_handling`` caught: each record of the failed batch, dead-lettered."""
    batch, error = element
    if isinstance(error, tuple) and len(error) >= 2:  # Beam's (exception type, repr, traceback lines)
        message = str(error[1])
    else:
        message = f"{type(error).__name__}: {error}"
    records = batch if isinstance(batch, list | tuple) else [batch]
    for record in records:
        yield Failure(
            record.get("id"),
            f"inference failed: {message}",
            record.get("input"),
            record.get("line"),
        )


class Progress(beam.DoFn):
    """Counts records as they are written and prints a progress line to stderr every few seconds."""

    def __init__(self, label: str, total: int | None, enabled: bool) -> None:
        self.label, self.total, self.enabled = label, total, enabled

    def setup(self) -> None:
        self.count = 0
        self.start = self.last = time.monotonic()

    def process(self, element: str):
        self.count += 1
        now = time.monotonic()
        if self.enabled and now - self.last >= 2.0:
            self.last = now
            of = f"/{self.total}" if self.total else ""
            rate = self.count / max(now - self.start, 1e-9)
            print(f"xlagen batch: {self.count}{of} {self.label} ({rate:.1f}/s)", file=sys.stderr, flush=True)
        yield element


def _shard_path(job: BatchJob, name: str) -> str:
    return FileSystems.join(job.output, f"{name}-{job.run_tag}" if job.run_tag else name)


def build(p: beam.Pipeline, job: BatchJob) -> None:
    """Add the steps of ``job`` to pipeline ``p``: read, check, bucket, infer, write results and errors."""
    errors = []
    source = p | "Input" >> beam.Create([job.input])
    if job.task == "generate":
        lines = source | "ReadLines" >> beam.ParDo(ReadNumberedLines())
        parse = parse_generation_line
    elif job.input.endswith(".jsonl"):
        lines = source | "ReadLines" >> beam.ParDo(ReadNumberedLines())
        parse = parse_audio_line
    else:
        lines = None
        parse = None
    if lines is not None:
        parsed = lines | "Parse" >> beam.ParDo(ParseRecords(parse)).with_outputs(ERRORS, main="records")
        errors.append(parsed[ERRORS])
        records = parsed.records
    else:
        records = source | "ListAudio" >> beam.FlatMap(_audio_records(job.input))
    unique = (
        records
        | "KeyById" >> beam.Map(lambda r: (record_key(r["id"]), r))
        | "GroupById" >> beam.GroupByKey()
        | "Dedupe" >> beam.ParDo(KeepFirst(job.done_keys)).with_outputs(ERRORS, main="records")
    )
    errors.append(unique[ERRORS])
    if job.task == "generate":
        prepare = PrepareText(job.model, job.options)
        handler = GenerationModelHandler(
            job.model,
            job.options,
            max_batch_size=job.max_batch_size,
            share_model_across_processes=job.share_model_across_processes,
        )
        fields = ("text", "tokens")
    else:
        prepare = PrepareAudio()
        handler = TranscriptionModelHandler(
            job.model,
            batch_size=job.window_batch,
            options=job.options,
            max_batch_size=job.max_batch_size,
            share_model_across_processes=job.share_model_across_processes,
        )
        fields = ("text", "segments")
    checked = unique.records | "Check" >> beam.ParDo(prepare).with_outputs(ERRORS, main="records")
    errors.append(checked[ERRORS])
    batches = (
        checked.records
        | "Keyed" >> beam.Map(lambda kv: kv).with_output_types(tuple[str, Any])
        | "BatchByBucket" >> beam.GroupIntoBatches(job.max_batch_size)
        | "DropBucket" >> beam.Values()
        | "AsList" >> beam.Map(list)
    )
    main, dead = (
        batches | "RunInference" >> RunInference(handler.with_no_batching()).with_exception_handling()
    )
    errors.append(dead.failed_inferences | "FailedBatches" >> beam.FlatMap(_failed_batch))
    outputs = main | "Outputs" >> beam.ParDo(ToOutputs(fields)).with_outputs(ERRORS, main="results")
    errors.append(outputs[ERRORS])
    label = "records" if job.task == "generate" else "files"
    (
        outputs.results
        | "Progress" >> beam.ParDo(Progress(label, job.progress_total, job.progress))
        | "WriteResults" >> beam.io.WriteToText(_shard_path(job, RESULTS), file_name_suffix=".jsonl")
    )
    (
        errors
        | "AllErrors" >> beam.Flatten()
        | "ErrorLines" >> beam.Map(lambda f: f.to_json())
        | "WriteErrors" >> beam.io.WriteToText(_shard_path(job, ERRORS), file_name_suffix=".jsonl")
    )


def pipeline_options(workers: int = 1, extra: list[str] | None = None):
    """Beam options and runner: in-process ``FnApiRunner`` by default (one worker), its multi-process
    mode for ``workers`` > 1, or whatever runner ``extra`` names (``--runner DataflowRunner ...``).

    The runner is chosen explicitly because Beam's ``DirectRunner`` tries the Prism runner first,
    which downloads a binary (impossible offline)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    extra = list(extra or [])
    options = PipelineOptions(extra)
    if any(a == "--runner" or a.startswith("--runner=") for a in extra):
        return options, None
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    if workers > 1:
        options = PipelineOptions(
            [*extra, f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
        )
    return options, FnApiRunner()


def run(job: BatchJob, workers: int = 1, extra: list[str] | None = None) -> Any:
    """Build and run ``job``'s pipeline to the end; returns Beam's ``PipelineResult``."""
    options, runner = pipeline_options(workers, extra)
    p = beam.Pipeline(runner=runner, options=options)
    build(p, job)
    result = p.run()
    result.wait_until_finish()
    return result
