"""The persistent XLA compilation cache xlagen turns on at import (each case in a fresh process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = r"""
import json, os, sys
import keras, numpy as np
import xlagen
keras.utils.set_random_seed(0)
model = xlagen.TFGPT2LMHeadModel(xlagen.GPT2Config(n_embd=16, n_layer=1, n_head=2, n_positions=64, vocab_size=50))
out = model.generate(np.array([[1, 2, 3]]), max_new_tokens=4, do_sample=False)
from xlagen import compilation_cache as cc
print(json.dumps({
    "flags": os.environ.get("TF_XLA_FLAGS"),
    "directory": None if xlagen.cache_directory() is None else str(xlagen.cache_directory()),
    "active": cc.cache_active(),
    "tokens": np.asarray(out).tolist(),
}))
"""


def run_child(env_updates: dict[str, str | None], code: str = CHILD) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_XLA_FLAGS", "XLAGEN_XLA_CACHE")}
    for k, v in env_updates.items():
        if v is not None:
            env[k] = v
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=root
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def files(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file()]


def test_cache_is_written_and_reused(tmp_path):
    cache = tmp_path / "xla"
    first = run_child({"XLAGEN_XLA_CACHE": str(cache)})
    assert first["directory"] == str(cache) and first["active"]
    assert f"--tf_xla_persistent_cache_directory={cache}" in first["flags"]
    written = files(cache)
    assert written, "the compiled program was not written to the cache"
    second = run_child({"XLAGEN_XLA_CACHE": str(cache)})
    assert second["tokens"] == first["tokens"]
    assert sorted(files(cache)) == sorted(written), "a warm cache should be read, not written again"


def test_default_directory_is_under_the_user_cache(tmp_path):
    out = run_child({"XDG_CACHE_HOME": str(tmp_path)})
    assert out["directory"] == str(tmp_path / "xlagen" / "xla")
    assert files(tmp_path / "xlagen" / "xla")


@pytest.mark.parametrize("value", ["0", "off", "false"])
def test_opt_out_leaves_tensorflow_flags_alone(tmp_path, value):
    out = run_child({"XLAGEN_XLA_CACHE": value, "XDG_CACHE_HOME": str(tmp_path)})
    assert out["directory"] is None and not out["active"]
    assert not out["flags"]
    assert not (tmp_path / "xlagen").exists()


def test_users_own_flag_wins(tmp_path):
    mine = tmp_path / "mine"
    flags = f"--tf_xla_persistent_cache_directory={mine}"
    out = run_child({"TF_XLA_FLAGS": flags, "XLAGEN_XLA_CACHE": str(tmp_path / "ours")})
    assert out["flags"] == flags and out["directory"] == str(mine)
    assert files(mine) and not (tmp_path / "ours").exists()


def test_importing_after_tensorflow_ran_reports_inactive(tmp_path):
    code = "import tensorflow as tf\ntf.constant(1.0) + 1.0\n" + CHILD
    out = run_child({"XLAGEN_XLA_CACHE": str(tmp_path / "late")}, code)
    assert out["directory"] == str(tmp_path / "late") and not out["active"]


def test_prune_drops_least_recently_used_programs(tmp_path):
    from xlagen.compilation_cache import prune

    for i in range(5):
        path = tmp_path / f"xla_compile_cache__{i}__XLA_CPU_JIT.pb"
        path.write_bytes(b"x" * 1000)
        os.utime(path, (1000 + i, 1000 + i))
    other = tmp_path / "notes.txt"
    other.write_bytes(b"y" * 5000)
    removed = prune(tmp_path, 2500)
    assert sorted(p.name for p in removed) == [f"xla_compile_cache__{i}__XLA_CPU_JIT.pb" for i in range(3)]
    assert other.exists() and len(list(tmp_path.glob("xla_compile_cache*"))) == 2
    assert prune(tmp_path, 2500) == []


def test_cache_size_limit_applies_at_import(tmp_path):
    cache = tmp_path / "xla"
    cache.mkdir()
    old = cache / "xla_compile_cache__1__2__XLA_CPU_JIT.pb"
    old.write_bytes(b"x" * 3 * 2**20)
    os.utime(old, (1000, 1000))
    run_child({"XLAGEN_XLA_CACHE": str(cache), "XLAGEN_XLA_CACHE_MAX_MB": "1"})
    assert not old.exists()


def test_prune_counts_stored_traces_too(tmp_path):
    from xlagen.compilation_cache import prune

    (tmp_path / "traces").mkdir()
    old = tmp_path / "traces" / "a.trace"
    new = tmp_path / "xla_compile_cache__1__XLA_CPU_JIT.pb"
    for i, path in enumerate((old, new)):
        path.write_bytes(b"x" * 1000)
        os.utime(path, (1000 + i, 1000 + i))
    assert prune(tmp_path, 1500) == [old]
    assert new.exists()
