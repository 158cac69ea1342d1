"""TensorFlow's native log noise is filtered, real errors are not (xlagen.native_logs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from xlagen.native_logs import keep_lines, quiet_native_logs

ABSL = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
ONEDNN = b"I0000 00:00:1796118834.518952    3763 port.cc:153] oneDNN custom operations are on.\n"
GUARD = (
    b"I0000 00:00:1796118753.776140    3246 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n"
    b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
    b"appropriate compiler flags.\n"
)
PARSE = (
    b"E0000 00:00:1796118581.843324    2320 text_format.cc:378] Error parsing text-format "
    b"tensorflow.XlaSerializedCacheEntry: 2:1: Expected identifier, got: 5\n"
)
TUNING = (
    b"E0000 00:00:1796118581.851827    2320 cpu_aot_loader.cc:220] Loading XLA:CPU AOT result. Target "
    b"machine feature +prefer-no-scatter is not  supported on the host machine.\n"
)
ISA = (
    b"E0000 00:00:1796118581.851827    2320 cpu_aot_loader.cc:220] Loading XLA:CPU AOT result. Target "
    b"machine feature +avx512f is not  supported on the host machine.\n"
)
REAL = b"E1201 09:51:08.123456    2320 status.cc:10] INVALID_ARGUMENT: something real broke\n"
WARN = b"W1201 09:51:08.123456    2320 foo.cc:10] a warning\n"


def test_known_noise_is_dropped_and_real_errors_kept():
    noise = ABSL + ONEDNN + GUARD + PARSE + TUNING
    traceback = b"Traceback (most recent call last):\n  File 'x.py', line 1\nValueError: boom\n"
    data = noise + REAL + ISA + b"a plain line\n" + ONEDNN + traceback
    assert keep_lines(data, min_level=2) == REAL + ISA + b"a plain line\n" + traceback


def test_the_level_follows_tf_cpp_min_log_level():
    assert keep_lines(ONEDNN + WARN + REAL, min_level=0) == ONEDNN + WARN + REAL
    assert keep_lines(ONEDNN + WARN + REAL, min_level=1) == WARN + REAL
    assert keep_lines(ONEDNN + WARN + REAL, min_level=3) == b""
    # the known false errors go at every level
    assert keep_lines(PARSE + TUNING, min_level=0) == b""


def test_window_writes_back_what_it_keeps_in_order(capfd, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.delenv("XLAGEN_TF_LOGS", raising=False)
    with quiet_native_logs():
        os.write(2, ABSL + PARSE + REAL)
        with quiet_native_logs():  # nested: the outer window handles it
            os.write(2, b"inner line\n")
    assert capfd.readouterr().err == (REAL + b"inner line\n").decode()
    monkeypatch.setenv("XLAGEN_TF_LOGS", "all")
    with quiet_native_logs():
        os.write(2, PARSE)
    assert capfd.readouterr().err == PARSE.decode()


def test_an_exception_inside_the_window_still_restores_stderr(capfd):
    try:
        with quiet_native_logs():
            os.write(2, REAL)
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    os.write(2, b"after\n")
    assert capfd.readouterr().err == (REAL + b"after\n").decode()


CHILD = r"""
import numpy as np, xlagen, keras
keras.utils.set_random_seed(0)
model = xlagen.TFGPT2LMHeadModel(xlagen.GPT2Config(n_embd=16, n_layer=1, n_head=2, n_positions=64, vocab_size=50))
print(np.asarray(model.generate(np.array([[1, 2, 3]]), max_new_tokens=3, do_sample=False)).tolist())
"""


def _run(cache: Path, **env_updates: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_XLA_FLAGS", "TF_CPP_MIN_LOG_LEVEL")}
    env.update(XLAGEN_XLA_CACHE=str(cache), **env_updates)
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_a_warm_cache_run_prints_nothing_but_all_shows_tensorflows_lines(tmp_path):
    cache = tmp_path / "xla"
    _run(cache)  # fills the cache
    quiet = _run(cache)
    assert quiet.stderr == "", quiet.stderr
    loud = _run(cache, XLAGEN_TF_LOGS="all", TF_CPP_MIN_LOG_LEVEL="0")
    assert "XlaSerializedCacheEntry" in loud.stderr  # TensorFlow still says it: the filter removed it
    assert loud.stdout == quiet.stdout
