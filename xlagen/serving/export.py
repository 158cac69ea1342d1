"""Export ``generate()`` as a TensorFlow SavedModel that TensorFlow Serving (or plain
``tf.saved_model.load``) runs without xlagen.

``export_saved_model(model, OUT)`` writes ``OUT/<version>/``, the layout TF Serving's
``--model_base_path=OUT`` expects:

* signatures, each the whole decoding loop traced from ``model.generate`` and compiled with XLA
  (``jit_compile=True``), for any batch size. A signature is one concrete function, so there is
  one per prompt-length bucket ``L`` and decoding mode; prompts are left-padded to ``L``:

  - ``greedy_<L>``: ``input_ids``, ``attention_mask`` int32 [batch, L];
  - ``sample_<L>`` (``sampling=True``): also ``temperature``, ``top_p`` float32 [batch] and ``seed``
    int64 [batch], one value per row;
  - ``beam_<L>`` (``num_beams > 1``): same inputs as greedy;
  - ``serving_default``: ``greedy_<largest L>``.

  Each returns ``sequences`` int32: [batch, L + max_new_tokens] (the prompt, then the new tokens,
  pad after EOS); encoder-decoder models (T5) return decoder tokens, [batch, 1 + max_new_tokens],
  the start token first.
* ``assets.extra/tf_serving_warmup_requests``: one ``PredictionLog`` per signature and batch size,
  which TF Serving runs at load time so the XLA compilations happen before the first request;
* ``assets.extra/xlagen_export.json``: what was exported (signatures, pad and EOS ids, lengths);
* ``assets.extra/batching_parameters.txt``: a TF Serving ``--batching_parameters_file`` whose
  ``allowed_batch_sizes`` are the warmed-up batch sizes.

Sampling values are per row, not scalars, because TF Serving's batcher concatenates requests on
axis 0 and rejects inputs without that axis. The seed gives the same tokens as
``model.generate(..., do_sample=True, seed=s)``: each row's draws depend on its seed and its row
position in the batch the program runs, so a server that merges requests into one batch moves rows.

The warmup records are written with protobuf message classes built here from TF Serving's field
numbers (``tensorflow_serving/apis/prediction_log.proto``, ``predict.proto``, ``model.proto``),
since tensorflow-serving-api requires the full ``tensorflow`` package next to ``tensorflow-cpu``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from xlagen.generation.validation import check_int, is_int

DEFAULT_PROMPT_LENGTHS = (16, 32, 64)
DEFAULT_MAX_NEW_TOKENS = 64
DEFAULT_BATCH_SIZES = (1,)
ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"  # the name TF Serving looks for in assets.extra
METADATA_FILE = "xlagen_export.json"
BATCHING_FILE = "batching_parameters.txt"
MAX_WARMUP_RECORDS = 1000  # TF Serving refuses a warmup file with more records
# Options the export sets itself, per signature.
_RESERVED_OPTIONS = frozenset(
    {
        "max_new_tokens",
        "max_length",
        "do_sample",
        "num_beams",
        "temperature",
        "top_k",
        "top_p",
        "seed",
        "num_return_sequences",
        "return_dict_in_generate",
        "output_scores",
        "jit_compile",
    }
)


class WarmupRequest(NamedTuple):
    """One record of a warmup file: the request's model name, signature and input arrays."""

    model_name: str
    signature_name: str
    inputs: dict[str, np.ndarray]


def load_model(model_dir: str | os.PathLike):
    """Load a GPT-2, OPT or T5 directory with the right auto class (errors name what is missing)."""
    from xlagen.configuration_utils import load_config_dict
    from xlagen.loading.hub import resolve_pretrained_dir
    from xlagen.models.auto import TFAutoModelForCausalLM, TFAutoModelForSeq2SeqLM

    directory = resolve_pretrained_dir(model_dir)
    config = load_config_dict(directory)
    _refuse_model_type(config.get("model_type"))
    auto = TFAutoModelForSeq2SeqLM if config.get("is_encoder_decoder") else TFAutoModelForCausalLM
    return auto.from_pretrained(directory)


def _refuse_model_type(model_type: str | None) -> None:
    if model_type == "whisper":
        raise ValueError(
            "export does not cover Whisper (its input is audio features, not token ids); "
            "export GPT-2, OPT or T5 models"
        )


def _positive_ints(name: str, values: Iterable[Any]) -> tuple[int, ...]:
    """Sorted distinct positive ints, or a ValueError naming ``name``."""
    try:
        items = list(values)
    except TypeError:
        raise ValueError(f"{name} must be a list of positive integers, got {values!r}") from None
    if not items or not all(is_int(v) and v >= 1 for v in items):
        raise ValueError(f"{name} must be positive integers, got {items!r}")
    return tuple(sorted({int(v) for v in items}))


def _check_generate_options(options: dict[str, Any]) -> dict[str, Any]:
    clash = sorted(_RESERVED_OPTIONS & set(options))
    if clash:
        raise ValueError(f"generate_options must not set {clash}: export sets them per signature")
    return dict(options)


@contextlib.contextmanager
def _per_row_values(model, **values: tf.Tensor) -> Iterator[None]:
    """While tracing: feed ``values`` (tensors) to the loop in place of the per-call values that
    ``generate`` builds from its options (e.g. ``temperature``), so they become signature inputs."""
    original = model._params

    def params(*args, **kwargs):
        result = original(*args, **kwargs)
        result.update(values)
        return result

    object.__setattr__(model, "_params", params)  # instance attribute, bypassing Keras tracking
    try:
        yield
    finally:
        object.__delattr__(model, "_params")


def _signature_functions(
    model,
    length: int,
    max_new_tokens: int,
    sampling: bool,
    top_k: int,
    num_beams: int,
    options: dict[str, Any],
) -> dict[str, Any]:
    """The concrete (traced, XLA) functions of one prompt-length bucket, by signature name."""
    ids_specs = [
        tf.TensorSpec([None, length], tf.int32, name="input_ids"),
        tf.TensorSpec([None, length], tf.int32, name="attention_mask"),
    ]
    fixed = dict(
        max_new_tokens=max_new_tokens,
        num_return_sequences=1,
        return_dict_in_generate=False,
        output_scores=False,
        **options,
    )

    def trace(fn, specs):
        return tf.function(
            fn, input_signature=specs, jit_compile=True, autograph=False
        ).get_concrete_function()

    def greedy(input_ids, attention_mask):
        tokens = model.generate(
            input_ids, attention_mask=attention_mask, do_sample=False, num_beams=1, **fixed
        )
        return {"sequences": tokens}

    functions = {f"greedy_{length}": trace(greedy, ids_specs)}
    if sampling:

        def sample(input_ids, attention_mask, temperature, top_p, seed):
            # [batch, 2]: one (seed, 0) key per row (the sampler takes per-row seeds); generate(seed=s)
            # uses (s, 0) for every row.
            seeds = tf.stack([seed, tf.zeros_like(seed)], axis=1)
            with _per_row_values(model, temperature=temperature[:, None], top_p=top_p[:, None]):
                tokens = model.generate(
                    input_ids,
                    attention_mask=attention_mask,
                    do_sample=True,
                    num_beams=1,
                    top_k=top_k,
                    top_p=0.5,  # < 1 turns the nucleus filter on; the value comes from the input
                    temperature=1.0,  # replaced by the input
                    seed=seeds,
                    **fixed,
                )
            return {"sequences": tokens}

        sample_specs = ids_specs + [
            tf.TensorSpec([None], tf.float32, name="temperature"),
            tf.TensorSpec([None], tf.float32, name="top_p"),
            tf.TensorSpec([None], tf.int64, name="seed"),
        ]
        functions[f"sample_{length}"] = trace(sample, sample_specs)
    if num_beams > 1:

        def beam(input_ids, attention_mask):
            tokens = model.generate(
                input_ids, attention_mask=attention_mask, do_sample=False, num_beams=num_beams, **fixed
            )
            return {"sequences": tokens}

        functions[f"beam_{length}"] = trace(beam, ids_specs)
    return functions


def warmup_inputs(signature_name: str, batch_size: int, length: int, token: int) -> dict[str, np.ndarray]:
    """Placeholder inputs of one signature: ``token`` everywhere, every position attended; sampling
    at temperature 1, top_p 1, seed 0."""
    inputs = {
        "input_ids": np.full([batch_size, length], token, np.int32),
        "attention_mask": np.ones([batch_size, length], np.int32),
    }
    if signature_name.startswith("sample_"):
        inputs["temperature"] = np.ones([batch_size], np.float32)
        inputs["top_p"] = np.ones([batch_size], np.float32)
        inputs["seed"] = np.zeros([batch_size], np.int64)
    return inputs


@functools.lru_cache(maxsize=1)
def _prediction_log_classes() -> tuple[type, type]:
    """(PredictionLog, TensorProto) message classes in a private descriptor pool.

    Only the fields a warmup request needs, with TF Serving's names and numbers: PredictionLog
    {predict_log = 6}, PredictLog {request = 1}, PredictRequest {model_spec = 1, inputs = 2
    (map<string, tensorflow.TensorProto>), output_filter = 3}, ModelSpec {name = 1,
    signature_name = 3}. TensorProto is TensorFlow's own, added to the pool from its descriptor.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from tensorflow.core.framework import tensor_pb2

    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(file_descriptor) -> None:
        if file_descriptor.name in added:
            return
        for dependency in file_descriptor.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file_descriptor.CopyToProto(proto)
        pool.AddSerializedFile(proto.SerializeToString())
        added.add(file_descriptor.name)

    add(tensor_pb2.DESCRIPTOR)
    field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="xlagen/serving/prediction_log.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=[tensor_pb2.DESCRIPTOR.name],
    )

    optional, repeated = field.LABEL_OPTIONAL, field.LABEL_REPEATED
    string, message_type = field.TYPE_STRING, field.TYPE_MESSAGE

    def message(container, name: str, *fields: tuple) -> Any:
        """Add a message; each field is (name, number, type[, type name[, label]])."""
        msg = container.add(name=name)
        for field_name, number, kind, *rest in fields:
            type_name = rest[0] if rest else None
            label = rest[1] if len(rest) > 1 else optional
            msg.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                msg.field[-1].type_name = type_name
        return msg

    message(file.message_type, "ModelSpec", ("name", 1, string), ("signature_name", 3, string))
    request = message(
        file.message_type,
        "PredictRequest",
        ("model_spec", 1, message_type, ".tensorflow.serving.ModelSpec"),
        ("inputs", 2, message_type, ".tensorflow.serving.PredictRequest.InputsEntry", repeated),
        ("output_filter", 3, string, None, repeated),
    )
    entry = message(
        request.nested_type,
        "InputsEntry",
        ("key", 1, string),
        ("value", 2, message_type, ".tensorflow.TensorProto"),
    )
    entry.options.map_entry = True
    message(
        file.message_type, "PredictLog", ("request", 1, message_type, ".tensorflow.serving.PredictRequest")
    )
    message(
        file.message_type, "PredictionLog", ("predict_log", 6, message_type, ".tensorflow.serving.PredictLog")
    )
    pool.AddSerializedFile(file.SerializeToString())
    prediction_log = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.PredictionLog")
    )
    tensor = message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.TensorProto"))
    return prediction_log, tensor


def warmup_record(model_name: str, signature_name: str, inputs: dict[str, np.ndarray]) -> bytes:
    """One serialized ``tensorflow.serving.PredictionLog`` holding a PredictRequest."""
    prediction_log, _ = _prediction_log_classes()
    log = prediction_log()
    request = log.predict_log.request
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    for name, value in inputs.items():
        request.inputs[name].ParseFromString(tf.make_tensor_proto(value).SerializeToString())
    return log.SerializeToString()


def read_warmup_requests(path: str | os.PathLike) -> list[WarmupRequest]:
    """Parse a warmup file (TFRecord of PredictionLog) back into requests, to check or inspect it."""
    from tensorflow.core.framework import tensor_pb2

    prediction_log, _ = _prediction_log_classes()
    requests = []
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        request = prediction_log.FromString(record).predict_log.request
        inputs = {
            name: tf.make_ndarray(tensor_pb2.TensorProto.FromString(value.SerializeToString()))
            for name, value in request.inputs.items()
        }
        requests.append(WarmupRequest(request.model_spec.name, request.model_spec.signature_name, inputs))
    return requests


def batching_parameters(batch_sizes: Iterable[int], batch_timeout_micros: int = 5000) -> str:
    """A TF Serving ``--batching_parameters_file`` (BatchingParameters, text format) whose
    ``allowed_batch_sizes`` are ``batch_sizes`` (the largest is ``max_batch_size``, as it requires);
    prompts keep their bucket length, so ``pad_variable_length_inputs`` stays false."""
    sizes = _positive_ints("batch_sizes", batch_sizes)
    lines = [
        f"max_batch_size {{ value: {sizes[-1]} }}",
        f"batch_timeout_micros {{ value: {batch_timeout_micros} }}",
        "max_enqueued_batches { value: 64 }",
        "num_batch_threads { value: 1 }",
        *(f"allowed_batch_sizes: {s}" for s in sizes),
        "pad_variable_length_inputs: false",
    ]
    return "\n".join(lines) + "\n"


def export_saved_model(
    model_dir_or_model: Any,
    out_dir: str | os.PathLike,
    *,
    prompt_lengths: Iterable[int] = DEFAULT_PROMPT_LENGTHS,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    version: int = 1,
    sampling: bool = False,
    top_k: int | None = None,
    num_beams: int = 1,
    batch_sizes: Iterable[int] = DEFAULT_BATCH_SIZES,
    model_name: str = "xlagen",
    overwrite: bool = False,
    generate_options: dict[str, Any] | None = None,
) -> Path:
    """Write a TF Serving SavedModel of ``generate`` at ``out_dir/<version>`` and return that path.

    ``model_dir_or_model``: a GPT-2, OPT or T5 directory (or hub name in the local cache) or a loaded
    xlagen model. One signature per prompt length and mode (see the module docstring);
    ``max_new_tokens`` is fixed per export (rows stop early at EOS and are padded). ``top_k`` (the
    model's generation config when None; 0 turns it off) changes the program, so it is fixed too;
    temperature, top_p and seed are inputs. ``num_beams > 1`` adds ``beam_<L>`` signatures.
    ``batch_sizes``: the batch sizes the warmup requests compile (TF Serving's
    ``allowed_batch_sizes``). ``generate_options``: other ``generate`` options baked into every
    signature (e.g. ``repetition_penalty``); the model's generation config supplies the rest (EOS,
    pad). The version directory is written beside it and renamed into place when complete, so a
    running server never sees half of it; an existing one is refused unless ``overwrite``.
    """
    version = check_int("version", version, 0)
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, 1)
    num_beams = check_int("num_beams", num_beams, 1)
    if top_k is not None:
        top_k = check_int("top_k", top_k, 0)
    lengths = _positive_ints("prompt_lengths", prompt_lengths)
    sizes = _positive_ints("batch_sizes", batch_sizes)
    options = _check_generate_options(generate_options or {})
    out = Path(out_dir)
    target = out / str(version)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")
    if target.exists() and not overwrite:
        raise ValueError(
            f"{target} already exists: choose another --version, or pass --overwrite to replace it"
        )

    model = (
        load_model(model_dir_or_model)
        if isinstance(model_dir_or_model, str | os.PathLike)
        else model_dir_or_model
    )
    if not hasattr(model, "generate") or not hasattr(model, "generation_config"):
        raise TypeError(
            f"expected an xlagen model or a model directory, got {type(model_dir_or_model).__name__}"
        )
    _refuse_model_type(getattr(model.config, "model_type", None))
    encoder_decoder = bool(model.config.is_encoder_decoder)
    limit = None if encoder_decoder else model.max_positions
    if limit is not None and lengths[-1] + max_new_tokens > limit:
        raise ValueError(
            f"prompt length {lengths[-1]} + max_new_tokens {max_new_tokens} exceeds the model's {limit} "
            "positions: use shorter prompt lengths or fewer new tokens"
        )
    gc = model.generation_config
    top_k = int(gc.top_k or 0) if top_k is None else top_k
    records = len(sizes) * (1 + len(lengths) * (1 + bool(sampling) + (num_beams > 1)))
    if records > MAX_WARMUP_RECORDS:
        raise ValueError(
            f"{records} warmup requests (signatures x batch sizes): TF Serving reads at most {MAX_WARMUP_RECORDS}"
        )

    functions: dict[str, Any] = {}
    for length in lengths:
        functions.update(
            _signature_functions(model, length, max_new_tokens, sampling, int(top_k), num_beams, options)
        )
    default = f"greedy_{lengths[-1]}"
    signatures = {"serving_default": functions[default], **functions}

    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".{version}.partial-{os.getpid()}"  # not a number: TF Serving ignores it
    shutil.rmtree(staging, ignore_errors=True)
    try:
        root = tf.Module()
        root.model_variables = list(model.variables)  # tracked, so the signatures' weights are saved
        tf.saved_model.save(root, str(staging), signatures=signatures)
        extra = staging / ASSETS_EXTRA
        extra.mkdir(exist_ok=True)
        token = next((t for t in (gc.bos_token_id, gc.pad_token_id, *gc.eos_token_ids) if t is not None), 0)
        with tf.io.TFRecordWriter(str(extra / WARMUP_FILE)) as writer:
            for name in signatures:
                base = default if name == "serving_default" else name
                length = int(base.rsplit("_", 1)[1])
                for size in sizes:
                    writer.write(
                        warmup_record(model_name, name, warmup_inputs(base, size, length, int(token)))
                    )
        (extra / BATCHING_FILE).write_text(batching_parameters(sizes))
        metadata = {
            "model_type": model.config.model_type,
            "encoder_decoder": encoder_decoder,
            "max_new_tokens": int(max_new_tokens),
            "prompt_lengths": list(lengths),
            "batch_sizes": list(sizes),
            "serving_default": default,
            "signatures": {
                name: {
                    "inputs": {
                        spec.name: [spec.dtype.name, spec.shape.as_list()]
                        for spec in fn.structured_input_signature[0]
                    },
                    "sequences": fn.structured_outputs["sequences"].shape.as_list(),
                }
                for name, fn in functions.items()
            },
            "top_k": int(top_k) if sampling else None,
            "num_beams": int(num_beams),
            "pad_token_id": int(model._pad_id(gc)),
            "eos_token_ids": [int(t) for t in gc.eos_token_ids],
            "padding": "left" if not encoder_decoder else "either side (masked)",
        }
        (extra / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
