"""The cache of compiled decoding programs: one XLA program per key (shape bucket and code path).

``generate`` keys its programs by (batch bucket, prompt bucket, encoder shapes, ``LoopSpec``,
``BeamSpec``); the slot engine by (insert bucket) and (decode window). A key's program is traced
and compiled by XLA on first use; ``compilations`` counts those first uses, so a test or the
server's ``/metrics`` can show that a workload compiles nothing new after warm-up.

A later process need not trace again: the first trace of a program is kept on disk (the
``traces`` folder of the persistent XLA cache, see :mod:`xlagen.compilation_cache`) as the
TensorFlow function library of its graph, keyed by everything the graph depends on (xlagen's source
code, TensorFlow's version, the model's class and config, the program key, the input signature).
A process that finds it registers those functions and calls them by name: TensorFlow then lowers
them to HLO and takes the compiled program from the persistent XLA cache, with no Python tracing
(for Whisper tiny.en that is ~0.4 s of the encoder's first call and ~1 s of the decoder's).
The weights are not in the file: the graph's captured variables are matched to the owner's
variables by position and shape.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from xlagen import compilation_cache
from xlagen.models.layers import xla_program
from xlagen.native_logs import quiet_native_logs

logger = logging.getLogger(__name__)
_FORMAT = 1  # bump when the stored layout changes
_OFF = {"0", "off", "false", "no", "none"}
_code_hash: str | None = None
_code_lock = threading.Lock()


def code_fingerprint() -> str:
    """A hash of xlagen's Python sources and TensorFlow's version: a stored trace is only reused by
    the exact code that wrote it."""
    global _code_hash
    with _code_lock:
        if _code_hash is None:
            h = hashlib.sha256(f"{_FORMAT} {tf.__version__} {np.__version__}".encode())
            root = Path(__file__).resolve().parent.parent
            for path in sorted(root.rglob("*.py")):
                h.update(str(path.relative_to(root)).encode())
                h.update(path.read_bytes())
            _code_hash = h.hexdigest()
    return _code_hash


def trace_directory() -> Path | None:
    """Where traced programs are kept: ``<XLA cache>/traces``; None when the XLA cache is off or
    ``XLAGEN_TRACE_STORE=0``."""
    if os.environ.get("XLAGEN_TRACE_STORE", "1").strip().lower() in _OFF:
        return None
    base = compilation_cache.cache_directory()
    return None if base is None else Path(base) / "traces"


def signature(value: Any) -> Any:
    """A hashable description of call arguments: shapes and dtypes of arrays, values of the rest."""
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        return ("array", tuple(shape), str(value.dtype))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), signature(v)) for k, v in value.items())))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(signature(v) for v in value))
    return ("value", type(value).__name__, repr(value))


class _Out:
    """Placeholder for output ``index`` in a stored output structure."""

    def __init__(self, index: int) -> None:
        self.index = index


class _StoredFunction:
    """A traced program loaded from disk: calls its registered function by name."""

    def __init__(self, name: str, input_spec: Any, captures: list[Any], outputs: Any, n_out: int) -> None:
        from tensorflow.python.eager import context, execute

        self._ctx, self._execute = context.context(), execute.execute
        self.name, self.outputs, self.n_out = name, outputs, n_out
        # Per flattened argument: its dtype when it is a tensor input (None: a traced-in Python value).
        self._arg_dtypes = [
            s.dtype if isinstance(s, tf.TensorSpec) else None for s in tf.nest.flatten(input_spec)
        ]
        self._captures = [c.handle if hasattr(c, "handle") else c for c in captures]

    def __call__(self, *args: Any) -> Any:
        leaves = tf.nest.flatten((args, {}))
        flat = [
            tf.convert_to_tensor(v, dtype=dtype)
            for v, dtype in zip(leaves, self._arg_dtypes, strict=True)
            if dtype is not None
        ]
        out = self._execute(self.name, self.n_out, flat + self._captures, (), self._ctx)
        return tf.nest.map_structure(
            lambda leaf: out[leaf.index] if isinstance(leaf, _Out) else leaf, self.outputs
        )


def _rename_functions(fdefs: list[Any], prefix: str) -> None:
    """Give every function of the library a name unique to this store entry (a later trace in the
    loading process must not collide with it), in place."""
    names = {f.signature.name for f in fdefs}

    def fix(attr: Any) -> None:
        if attr.HasField("func") and attr.func.name in names:
            attr.func.name = prefix + attr.func.name
        for func in attr.list.func:
            if func.name in names:
                func.name = prefix + func.name

    for fdef in fdefs:
        fdef.signature.name = prefix + fdef.signature.name
        for node in fdef.node_def:
            if node.op in names:
                node.op = prefix + node.op
            for attr in node.attr.values():
                fix(attr)
        for attr in fdef.attr.values():
            fix(attr)


class Program:
    """One key's compiled program: traced (or loaded from the trace store) once per input signature.

    The first call of a signature runs inside :func:`~xlagen.native_logs.quiet_native_logs` (that
    is when TensorFlow compiles or loads from its persistent cache, and prints its false errors)."""

    def __init__(self, cache: ProgramCache, key: Any, fn: Callable) -> None:
        self.cache, self.key = cache, key

        def traced(*args):
            cache.traced += 1  # Python runs only while tracing
            with xla_program():  # layers may use XLA-only ops (dense's optimization barrier)
                return fn(*args)

        self.function = tf.function(traced, jit_compile=True, reduce_retracing=False, autograph=False)
        self._concrete: dict[Any, Callable] = {}

    def __call__(self, *args: Any) -> Any:
        if not tf.executing_eagerly():  # inside a caller's tf.function: trace into its graph
            return self.function(*args)
        sig = signature(args)
        run = self._concrete.get(sig)
        if run is not None:
            return run(*args)
        with quiet_native_logs():
            run = self._prepare(args, sig)
            out = run(*args)
        self._concrete[sig] = run
        self.cache.compilations += 1
        self.cache.keys.append(self.key)
        return out

    # -- the trace store ----------------------------------------------------------------------------
    def _store_path(self, sig: Any) -> Path | None:
        directory, owner = trace_directory(), self.cache.owner_fingerprint
        if directory is None or owner is None or self.cache.variables is None:
            return None
        try:
            text = repr((code_fingerprint(), owner(), self.key, sig))
        except Exception:  # noqa: BLE001 - an unprintable key: no store
            return None
        return directory / (hashlib.sha256(text.encode()).hexdigest()[:40] + ".trace")

    def _prepare(self, args: tuple, sig: Any) -> Callable:
        path = self._store_path(sig)
        if path is not None and path.is_file():
            try:
                run = self._load(path)
                self.cache.loaded += 1
                return run
            except Exception as e:  # noqa: BLE001 - a stale or damaged entry: trace instead
                logger.debug("trace store entry %s not usable (%s); tracing", path, e)
                path.unlink(missing_ok=True)
        concrete = self.function.get_concrete_function(*args)
        if path is not None:
            try:
                self._save(concrete, path)
                # Run what a later process will run: the same function names, so that TensorFlow's
                # persistent XLA cache (keyed on them too) serves the later process.
                return self._load(path)
            except Exception as e:  # noqa: BLE001 - storing is an optimisation only
                logger.debug("program %r not stored: %s", self.key, e)
        return concrete

    def _save(self, concrete: Any, path: Path) -> None:
        variables = self.cache.variables()
        by_handle = {id(v.handle): i for i, v in enumerate(variables)}
        captures: list[tuple[str, Any]] = []
        for tensor in concrete.captured_inputs:
            index = by_handle.get(id(tensor))
            if index is not None:
                v = variables[index]
                captures.append(("variable", (index, tuple(v.shape), tf.as_dtype(v.dtype).name)))
            elif (
                isinstance(tensor, tf.Tensor)
                and tensor.dtype != tf.resource
                and tensor.shape.num_elements() < 2**16
            ):
                captures.append(("constant", tensor.numpy()))
            else:
                raise ValueError("captures a tensor that is neither an owner variable nor a small constant")
        input_spec = concrete.structured_input_signature
        n_args = sum(isinstance(s, tf.TensorSpec) for s in tf.nest.flatten(input_spec))
        if n_args + len(captures) != len(concrete.inputs):
            raise ValueError("unexpected input layout")
        ids = {t.ref(): i for i, t in enumerate(concrete.outputs)}

        def placeholder(leaf: Any) -> Any:
            if isinstance(leaf, tf.Tensor):
                return _Out(ids[leaf.ref()])
            return leaf

        outputs = tf.nest.map_structure(placeholder, concrete.structured_outputs)
        library = concrete.graph.as_graph_def().library
        fdefs = [*library.function, concrete.function_def]
        payload = {
            "name": concrete.function_def.signature.name,
            "functions": [f.SerializeToString() for f in fdefs],
            "input_spec": input_spec,
            "captures": captures,
            "outputs": outputs,
            "n_out": len(concrete.outputs),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)

    def _load(self, path: Path) -> _StoredFunction:
        from tensorflow.core.framework import function_pb2
        from tensorflow.python.eager import context

        with open(path, "rb") as f:
            payload = pickle.load(f)  # noqa: S301 - our own cache directory
        variables = self.cache.variables()
        captures: list[Any] = []
        for kind, value in payload["captures"]:
            if kind == "variable":
                index, shape, dtype = value
                v = variables[index]
                if tuple(v.shape) != tuple(shape) or tf.as_dtype(v.dtype).name != dtype:
                    raise ValueError(
                        f"variable {index} is {v.shape} {v.dtype.name}, the trace has {shape} {dtype}"
                    )
                captures.append(v)
            else:
                captures.append(tf.constant(value))
        fdefs = [function_pb2.FunctionDef.FromString(b) for b in payload["functions"]]
        # Stable across processes (the XLA cache key includes the name); loading the same entry
        # twice in one process registers identical definitions, which TensorFlow accepts.
        prefix = f"xlagen_{path.stem[:16]}_"
        _rename_functions(fdefs, prefix)
        ctx = context.context()
        for fdef in fdefs:
            ctx.add_function_def(fdef)
        os.utime(path)  # least recently used pruning (compilation_cache.prune)
        return _StoredFunction(
            prefix + payload["name"], payload["input_spec"], captures, payload["outputs"], payload["n_out"]
        )


class ProgramCache:
    """``get(key, fn)``: ``fn`` as an XLA-compiled program, traced once per key (and input signature).

    ``owner_fingerprint`` (text naming everything the traced graphs depend on besides the key and
    the inputs: the model's class and config) and ``variables`` (a callable listing, in a fixed
    order, every variable a program may capture) turn on the trace store for these programs."""

    def __init__(
        self,
        owner_fingerprint: Callable[[], str] | None = None,
        variables: Callable[[], list[tf.Variable]] | None = None,
    ) -> None:
        self._programs: dict[Any, Program] = {}
        self.owner_fingerprint = owner_fingerprint
        self.variables = variables
        self.compilations = 0  # first uses: each one an XLA compile (or a persistent-cache load)
        self.traced = 0  # of which Python traced the program (the others came from the trace store)
        self.loaded = 0
        self.calls = 0  # set by the caller: how many requests the programs served
        self.keys: list[Any] = []  # in compilation order

    def get(self, key: Any, fn: Callable) -> Program:
        program = self._programs.get(key)
        if program is None:
            program = Program(self, key, fn)
            self._programs[key] = program
        return program

    def as_dict(self) -> dict[str, Any]:
        return {
            "compilations": self.compilations,
            "traced": self.traced,
            "loaded_traces": self.loaded,
            "calls": self.calls,
            "programs": list(self.keys),
        }


def model_fingerprint(model: Any) -> str:
    """The model's class, config and Keras dtype policy as text (what its traced graphs depend on
    besides the program key and the inputs)."""
    import keras

    config = model.config.to_dict() if hasattr(model.config, "to_dict") else vars(model.config)
    policy = getattr(getattr(model, "dtype_policy", None), "name", None) or keras.config.dtype_policy().name
    return " ".join(
        (
            f"{type(model).__module__}.{type(model).__qualname__}",
            policy,
            keras.config.floatx(),
            json.dumps(config, sort_keys=True, default=str),
        )
    )
