"""``xlagen export``: a SavedModel of XLA generate() that loads and runs without xlagen.

One module fixture exports a tiny GPT-2 (greedy, sampling and beam signatures, through the command
line) and a tiny T5 (greedy), then runs every signature and every warmup request in ONE fresh
Python process that cannot import xlagen; the tests compare its tokens with ``model.generate``.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest

import xlagen
from tests.conftest import left_padded_batch, write_gpt2
from tests.models.test_t5 import encoder_batch, write_t5
from xlagen.cli import main
from xlagen.serving.export import (
    METADATA_FILE,
    WARMUP_FILE,
    batching_parameters,
    export_saved_model,
    read_warmup_requests,
    warmup_record,
)

LENGTHS = (8, 16)
NEW = 6
BATCH_SIZES = (1, 3)  # 3: the test batch's size, so warmup requests reuse its compilations
RUN_WARMUP = {"serving_default", "greedy_8", "sample_8", "beam_8"}  # batch 3: compiled already
TOP_K = 5
BEAMS = 2
SAMPLING = dict(temperature=0.7, top_p=0.9, seed=3)

# Runs in a fresh interpreter: loads each SavedModel with TensorFlow alone and runs the cases.
RUNNER = """
import json, sys
sys.modules["xlagen"] = None  # any import of xlagen now fails: the SavedModel must not need it
import numpy as np
import tensorflow as tf

cases = json.load(open(sys.argv[1]))
loaded, outputs, signatures = {}, {}, {}
for name, case in cases.items():
    if case["dir"] not in loaded:
        loaded[case["dir"]] = tf.saved_model.load(case["dir"])
        signatures[case["dir"]] = sorted(loaded[case["dir"]].signatures)
    fn = loaded[case["dir"]].signatures[case["signature"]]
    inputs = {k: tf.constant(np.asarray(v, dtype)) for k, (dtype, v) in case["inputs"].items()}
    result = fn(**inputs)
    assert sorted(result) == ["sequences"] and result["sequences"].dtype == tf.int32
    outputs[name] = result["sequences"].numpy()
assert not [m for m, mod in sys.modules.items() if m.split(".")[0] == "xlagen" and mod is not None]
np.savez(sys.argv[2], **outputs)
print(json.dumps(signatures))
"""


def _case(directory, signature: str, inputs: dict[str, np.ndarray]) -> dict:
    return {
        "dir": str(directory),
        "signature": signature,
        "inputs": {k: [np.asarray(v).dtype.name, np.asarray(v).tolist()] for k, v in inputs.items()},
    }


def _sampling_inputs(rows: int) -> dict[str, np.ndarray]:
    return {
        "temperature": np.full([rows], SAMPLING["temperature"], np.float32),
        "top_p": np.full([rows], SAMPLING["top_p"], np.float32),
        "seed": np.full([rows], SAMPLING["seed"], np.int64),
    }


def _left_pad(ids: np.ndarray, mask: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    extra = width - ids.shape[1]
    return np.pad(ids, [(0, 0), (extra, 0)]), np.pad(mask, [(0, 0), (extra, 0)])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    write_gpt2(tmp / "gpt2", initializer_range=0.3)  # larger weights: greedy tokens vary by row
    write_t5(tmp / "t5")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(
            ["export", str(tmp / "gpt2"), str(tmp / "out"), "--prompt-lengths", "16,8"]
            + ["--max-new-tokens", str(NEW), "--sampling", "--top-k", str(TOP_K), "--num-beams", str(BEAMS)]
            + ["--batch-sizes", ",".join(map(str, BATCH_SIZES))]
        )
    assert rc == 0
    t5_path = export_saved_model(tmp / "t5", tmp / "t5_out", prompt_lengths=(16,), max_new_tokens=NEW)

    gpt2 = xlagen.TFAutoModelForCausalLM.from_pretrained(tmp / "gpt2")
    t5 = xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(tmp / "t5")
    ids, mask = left_padded_batch(np.random.default_rng(0), [5, 3, 8], vocab=128, width=8)
    ids, mask = ids.astype(np.int32), mask.astype(np.int32)
    ids16, mask16 = _left_pad(ids, mask, 16)
    t5_ids, t5_mask = encoder_batch(np.random.default_rng(1), [3, 9, 14], width=16)
    t5_ids, t5_mask = t5_ids.astype(np.int32), t5_mask.astype(np.int32)
    gpt2_dir = tmp / "out" / "1"
    prompts = {"input_ids": ids, "attention_mask": mask}
    cases = {
        "greedy_8": _case(gpt2_dir, "greedy_8", prompts),
        "default_16": _case(gpt2_dir, "serving_default", {"input_ids": ids16, "attention_mask": mask16}),
        "sample_8": _case(gpt2_dir, "sample_8", {**prompts, **_sampling_inputs(3)}),
        "beam_8": _case(gpt2_dir, "beam_8", prompts),
        "t5": _case(t5_path, "serving_default", {"input_ids": t5_ids, "attention_mask": t5_mask}),
    }
    warmup = read_warmup_requests(gpt2_dir / "assets.extra" / WARMUP_FILE)
    for i, request in enumerate(warmup):  # each XLA compilation costs seconds: only those compiled above
        if request.signature_name in RUN_WARMUP and request.inputs["input_ids"].shape[0] == 3:
            cases[f"warmup_{i}"] = _case(gpt2_dir, request.signature_name, request.inputs)
    (tmp / "cases.json").write_text(json.dumps(cases))
    run = subprocess.run(
        [sys.executable, "-c", RUNNER, str(tmp / "cases.json"), str(tmp / "outputs.npz")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    with np.load(tmp / "outputs.npz") as data:
        outputs = dict(data)
    return dict(
        tmp=tmp,
        gpt2_dir=gpt2_dir,
        stdout=stdout.getvalue(),
        signatures=json.loads(run.stdout.strip().splitlines()[-1]),
        outputs=outputs,
        warmup=warmup,
        gpt2=gpt2,
        t5=t5,
        prompts=(ids, mask),
        t5_prompts=(t5_ids, t5_mask),
    )


def test_cli_writes_versioned_saved_model(exported):
    version = exported["gpt2_dir"]
    assert (version / "saved_model.pb").is_file() and (version / "variables").is_dir()
    assert sorted(p.name for p in version.parent.iterdir()) == ["1"]  # no staging directory left
    modes = [f"{m}_{n}" for n in LENGTHS for m in ("greedy", "sample", "beam")]
    assert exported["signatures"][str(version)] == sorted(["serving_default", *modes])
    metadata = json.loads((version / "assets.extra" / METADATA_FILE).read_text())
    assert metadata["serving_default"] == "greedy_16" and metadata["max_new_tokens"] == NEW
    assert metadata["signatures"]["sample_8"]["inputs"]["seed"] == ["int64", [None]]
    assert metadata["signatures"]["greedy_16"]["sequences"] == [None, 16 + NEW]
    assert "allowed_batch_sizes: 3" in (version / "assets.extra" / "batching_parameters.txt").read_text()
    out = exported["stdout"]
    assert f"wrote {version}" in out and "serving_default (= greedy_16)" in out
    assert "--model_base_path=" + str(version.parent.resolve()) in out


def test_greedy_signatures_match_generate(exported):
    ids, mask = exported["prompts"]
    expected = exported["gpt2"].generate(ids, attention_mask=mask, max_new_tokens=NEW).numpy()
    got = exported["outputs"]["greedy_8"]
    assert got.shape == (3, 8 + NEW)
    np.testing.assert_array_equal(got, expected)
    assert len({tuple(row) for row in got[:, 8:]}) > 1  # rows differ: the comparison means something
    # The largest bucket, as serving_default: same prompts padded further left, same new tokens.
    np.testing.assert_array_equal(exported["outputs"]["default_16"][:, 16:], expected[:, 8:])


def test_sampling_signature_matches_generate_with_seed(exported):
    ids, mask = exported["prompts"]
    expected = exported["gpt2"].generate(
        ids, attention_mask=mask, max_new_tokens=NEW, do_sample=True, top_k=TOP_K, **SAMPLING
    )
    np.testing.assert_array_equal(exported["outputs"]["sample_8"], expected.numpy())


def test_beam_signature_matches_generate(exported):
    ids, mask = exported["prompts"]
    expected = exported["gpt2"].generate(ids, attention_mask=mask, max_new_tokens=NEW, num_beams=BEAMS)
    got = exported["outputs"]["beam_8"]
    # generate drops columns after the longest beam; the signature keeps its static width.
    np.testing.assert_array_equal(got[:, : expected.shape[1]], expected.numpy())


def test_t5_signature_matches_generate(exported):
    ids, mask = exported["t5_prompts"]
    expected = exported["t5"].generate(ids, attention_mask=mask, max_new_tokens=NEW).numpy()
    got = exported["outputs"]["t5"]
    assert got.shape == (3, 1 + NEW)
    np.testing.assert_array_equal(got[:, : expected.shape[1]], expected)


def test_warmup_requests_cover_signatures_and_run(exported):
    """One request per signature and batch size, parsed back from the TFRecord file; the loaded
    SavedModel's answers to them equal generate's."""
    warmup = exported["warmup"]
    assert {r.model_name for r in warmup} == {"xlagen"}
    seen = {(r.signature_name, r.inputs["input_ids"].shape[0]) for r in warmup}
    assert seen == {(s, b) for s in exported["signatures"][str(exported["gpt2_dir"])] for b in BATCH_SIZES}
    gpt2 = exported["gpt2"]
    ran = [i for i in range(len(warmup)) if f"warmup_{i}" in exported["outputs"]]
    assert len(ran) == len(RUN_WARMUP)
    for i in ran:
        request = warmup[i]
        mode = request.signature_name.split("_")[0]
        options = {
            "greedy": {},
            "serving": {},
            "beam": {"num_beams": BEAMS},
            "sample": {"do_sample": True, "top_k": TOP_K, "temperature": 1.0, "top_p": 1.0, "seed": 0},
        }[mode]
        inputs = request.inputs
        expected = gpt2.generate(
            inputs["input_ids"], attention_mask=inputs["attention_mask"], max_new_tokens=NEW, **options
        ).numpy()
        got = exported["outputs"][f"warmup_{i}"]
        np.testing.assert_array_equal(got[:, : expected.shape[1]], expected, err_msg=request.signature_name)


def test_warmup_record_round_trip_and_batching_file(tmp_path):
    import tensorflow as tf

    inputs = {"input_ids": np.arange(6, dtype=np.int32).reshape(2, 3), "seed": np.array([7, 8], np.int64)}
    with tf.io.TFRecordWriter(str(tmp_path / WARMUP_FILE)) as writer:
        writer.write(warmup_record("m", "greedy_3", inputs))
    [request] = read_warmup_requests(tmp_path / WARMUP_FILE)
    assert request.model_name == "m" and request.signature_name == "greedy_3"
    for name, value in inputs.items():
        np.testing.assert_array_equal(request.inputs[name], value)
        assert request.inputs[name].dtype == value.dtype
    text = batching_parameters([8, 1, 4])
    assert "max_batch_size { value: 8 }" in text and text.count("allowed_batch_sizes") == 3


def test_warmup_file_parses_with_tf_serving_protos_when_installed(exported):
    """Only where tensorflow-serving-api is installed (it is not a dependency)."""
    prediction_log_pb2 = pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")
    import tensorflow as tf

    path = exported["gpt2_dir"] / "assets.extra" / WARMUP_FILE
    records = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
    for record, request in zip(records, exported["warmup"], strict=True):
        log = prediction_log_pb2.PredictionLog.FromString(record)
        assert log.predict_log.request.model_spec.signature_name == request.signature_name
        np.testing.assert_array_equal(
            tf.make_ndarray(log.predict_log.request.inputs["input_ids"]), request.inputs["input_ids"]
        )


def test_overwrite_replaces_an_existing_version(exported, tmp_path, capsys):
    stale = tmp_path / "out" / "1"
    stale.mkdir(parents=True)
    (stale / "stale.txt").write_text("old")
    args = ["export", str(exported["tmp"] / "gpt2"), str(tmp_path / "out"), "--prompt-lengths", "4"]
    args += ["--max-new-tokens", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("xlagen: error:") and "already exists" in err and "--overwrite" in err
    assert main([*args, "--overwrite"]) == 0
    assert not (stale / "stale.txt").exists() and (stale / "saved_model.pb").is_file()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--prompt-lengths", "0"], "prompt_lengths must be positive integers"),
        (["--prompt-lengths=-8,16"], "prompt_lengths must be positive integers"),
        (["--prompt-lengths", "8,x"], "--prompt-lengths must be comma-separated integers"),
        (["--prompt-lengths", ","], "--prompt-lengths must list at least one integer"),
        (["--batch-sizes", "0"], "batch_sizes must be positive integers"),
        (["--max-new-tokens", "0"], "max_new_tokens must be an integer >= 1"),
        (["--version=-1"], "version must be an integer >= 0"),
        (["--prompt-lengths", "64,90", "--max-new-tokens", "10"], "exceeds the model's 96 positions"),
    ],
)
def test_bad_arguments_are_reported(exported, tmp_path, capsys, extra, message):
    assert main(["export", str(exported["tmp"] / "gpt2"), str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xlagen: error:") and message in err
    assert not (tmp_path / "out" / "1").exists()


def test_not_a_model_directory(tmp_path, capsys):
    assert main(["export", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "config.json" in capsys.readouterr().err


def test_generate_options_cannot_override_the_signature_modes(tmp_path):
    with pytest.raises(ValueError, match="must not set \\['do_sample'\\]"):
        export_saved_model(tmp_path, tmp_path / "out", generate_options={"do_sample": True})
