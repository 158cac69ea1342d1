"""``xlagen batch generate`` on a local Beam pipeline: a few hundred prompts with bad records mixed in,
on a tiny GPT-2 written by Transformers. Outputs equal ``model.generate`` record by record, bad records
are dead-lettered with their message, every input line is accounted for exactly once, re-runs are safe."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("apache_beam")

import xlagen  # noqa: E402
from xlagen.cli import main  # noqa: E402

WORDS = (
    "TensorFlow is an open source platform for machine learning XLA compiles graphs into fast kernels".split()
)


def read_jsonl(paths) -> list[dict]:
    return [json.loads(line) for p in paths for line in Path(p).read_text().splitlines() if line.strip()]


def good_records(n: int, seed: int = 0) -> list[dict]:
    """Prompts of 1..12 words (several shape buckets), string and number ids, a few per-record options."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        special = i % 50 in (7, 11, 13, 17)  # short prompts: one shape bucket, fewer programs to compile
        words = rng.randint(1, 3 if special else 12)
        record = {"id": i if i % 2 else f"p{i}", "prompt": " ".join(rng.choice(WORDS) for _ in range(words))}
        if i % 10 == 3:
            record["max_new_tokens"] = 3
        if i % 50 == 7:
            record["num_beams"] = 2
        if i % 50 == 11:
            record.update(do_sample=True, seed=i)
        if i % 50 == 13:
            record.update(do_sample=True, temperature=0.7)  # seed from its id
        if i % 50 == 17:
            record["logprobs"] = True
        records.append(record)
    return records


# (line text, expected error fragment); the record's id when it has one
BAD = [
    ("{not json", None, "malformed JSON"),
    (json.dumps({"prompt": "no id here"}), None, 'has no "id"'),
    (json.dumps({"id": "no-prompt"}), "no-prompt", '"prompt" must be a string'),
    (json.dumps({"id": [1, 2], "prompt": "list id"}), None, '"id" must be a JSON string or number'),
    (
        json.dumps({"id": "too-long", "prompt": " ".join(["TensorFlow"] * 120)}),
        "too-long",
        "exceeds the model's 96 positions",
    ),
    (json.dumps({"id": "bad-top-p", "prompt": "XLA", "do_sample": True, "top_p": 3}), "bad-top-p", "top_p"),
    (json.dumps({"id": "bad-new", "prompt": "XLA", "max_new_tokens": "many"}), "bad-new", "max_new_tokens"),
    (json.dumps({"id": "unknown", "prompt": "XLA", "colour": "red"}), "unknown", "unknown option(s) colour"),
    (json.dumps({"id": 1, "prompt": "a duplicate of id 1"}), 1, "duplicate id 1"),
]


def write_input(path: Path, records: list[dict], bad=BAD) -> dict[int, object]:
    """Write good records with the bad lines spread among them (and a blank line); returns line -> id."""
    lines = [json.dumps(r) for r in records]
    for k, (text, _, _) in enumerate(bad):
        lines.insert(7 + 23 * k, text)
    lines.insert(5, "")
    path.write_text("\n".join(lines) + "\n")
    ids = {}
    for number, text in enumerate(lines, 1):
        if text.strip():
            try:
                data = json.loads(text)
                ids[number] = data.get("id") if isinstance(data, dict) else None
            except json.JSONDecodeError:
                ids[number] = None
    return ids


@pytest.fixture(scope="module")
def job(gpt2_tokenizer_checkpoint, tmp_path_factory):
    path, _ = gpt2_tokenizer_checkpoint
    work = tmp_path_factory.mktemp("beam_generate")
    records = good_records(200)
    lines = write_input(work / "prompts.jsonl", records)
    out = work / "out"
    argv = [
        "batch",
        "generate",
        "--input",
        str(work / "prompts.jsonl"),
        "--output",
        str(out),
        "--model",
        str(path),
    ]
    argv += ["--max-new-tokens", "6", "--batch-size", "32", "--no-progress"]
    assert main(argv) == 0
    results = read_jsonl(sorted(out.glob("results-*.jsonl")))
    errors = read_jsonl(sorted(out.glob("errors-*.jsonl")))
    return dict(
        path=path, work=work, out=out, argv=argv, records=records, lines=lines, results=results, errors=errors
    )


def test_every_line_once(job):
    """Every non-blank input line is in the results or the dead-letter output, exactly once."""
    results, errors, lines = job["results"], job["errors"], job["lines"]
    first_line = {}
    for number, record_id in lines.items():
        first_line.setdefault(json.dumps(record_id), number)
    done = [first_line[json.dumps(r["id"])] for r in results]
    failed = [e["line"] for e in errors]
    assert len(done) == len(set(done)) and len(failed) == len(set(failed))
    assert sorted(done + failed) == sorted(lines)
    assert len(results) == len(job["records"])  # id 1 is in the results, its duplicate in the errors


def test_bad_records_are_dead_lettered(job):
    errors = job["errors"]
    assert len(errors) == len(BAD)
    by_line = {e["line"]: e for e in errors}
    for number, record_id in job["lines"].items():
        if number not in by_line:
            continue
        entry = by_line[number]
        assert entry["id"] == (record_id if isinstance(record_id, str | int) else None)
    for text, record_id, fragment in BAD:
        matches = [e for e in errors if e["input"] == (text if record_id is None else json.loads(text))]
        assert len(matches) == 1, (text, errors)
        assert fragment in matches[0]["error"] and matches[0]["id"] == record_id
    malformed = next(e for e in errors if "malformed" in e["error"])
    assert malformed["input"] == "{not json" and f"line {malformed['line']}" in malformed["error"]


def test_outputs_equal_generate(job):
    """Each record's tokens and text are what ``model.generate`` gives for that prompt alone."""
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(job["path"])
    tokenizer = xlagen.AutoTokenizer.from_pretrained(job["path"], padding_side="left")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = model.generation_config.eos_token_ids
    by_id = {json.dumps(r["id"]): r for r in job["results"]}
    from xlagen.beam.records import default_seed

    for record in job["records"]:
        if record["id"] == 1:
            continue  # checked below with its duplicate
        options = {k: v for k, v in record.items() if k not in ("id", "prompt", "logprobs")}
        options.setdefault("max_new_tokens", 6)
        if options.get("do_sample"):
            options.setdefault("seed", default_seed(record["id"]))
        ids = np.asarray([tokenizer(record["prompt"])["input_ids"]])
        out = model.generate(ids, pad_token_id=pad, return_dict_in_generate=True, **options)
        new = [int(t) for t in out.sequences.numpy()[0, ids.shape[1] :]]
        end = next((k for k, t in enumerate(new) if t in eos), len(new))
        got = by_id[json.dumps(record["id"])]
        assert got["tokens"] == new[:end], record
        assert got["text"] == tokenizer.decode(new[:end], skip_special_tokens=True)
        assert got["finish_reason"] == ("stop" if end < len(new) else "length")
        if record.get("logprobs"):
            expected = out.token_logprobs.numpy()[0, :end]
            np.testing.assert_allclose(got["logprobs"], expected, atol=1e-4)
        else:
            assert "logprobs" not in got


def test_rerun_refuses_then_resume_and_overwrite(job, capsys):
    out, argv = job["out"], job["argv"]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched
    # --resume: records already in the results are skipped; earlier errors are tried again (once)
    assert main([*argv, "--resume"]) == 0
    assert "0 ok, 9 errors" in capsys.readouterr().err
    results = read_jsonl(sorted(out.glob("results-*.jsonl")))
    assert sorted(json.dumps(r["id"]) for r in results) == sorted(json.dumps(r["id"]) for r in job["results"])
    errors = read_jsonl(sorted(out.glob("errors-*.jsonl")))
    assert sorted(e["line"] for e in errors) == sorted(e["line"] for e in job["errors"])
    assert all(p.read_bytes() == before[p.name] for p in out.glob("results-0*.jsonl"))
    # more records appended: a resumed run does only those
    lines = job["work"] / "prompts.jsonl"
    lines.write_text(lines.read_text() + json.dumps({"id": "late", "prompt": "XLA compiles"}) + "\n")
    assert main([*argv, "--resume"]) == 0
    assert "1 ok, 9 errors" in capsys.readouterr().err
    results = read_jsonl(sorted(out.glob("results-*.jsonl")))
    assert len(results) == len(job["results"]) + 1 == len({json.dumps(r["id"]) for r in results})
    assert len(read_jsonl(sorted(out.glob("errors-*.jsonl")))) == len(BAD)


def test_overwrite_and_fail_on_error(gpt2_tokenizer_checkpoint, tmp_path, capsys):
    path, _ = gpt2_tokenizer_checkpoint
    write_input(tmp_path / "in.jsonl", good_records(12, seed=1), bad=BAD[:2])
    argv = ["batch", "generate", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out")]
    argv += ["--model", str(path), "--max-new-tokens", "4", "--no-progress"]
    assert main([*argv, "--fail-on-error"]) == 1
    err = capsys.readouterr().err
    assert "14 records" in err and "12 ok, 2 errors -> " in err and "errors-*.jsonl" in err
    first = read_jsonl(sorted((tmp_path / "out").glob("results-*.jsonl")))
    assert main([*argv, "--overwrite"]) == 0
    again = read_jsonl(sorted((tmp_path / "out").glob("results-*.jsonl")))
    assert sorted(again, key=lambda r: str(r["id"])) == sorted(first, key=lambda r: str(r["id"]))
    assert main([*argv, "--overwrite", "--resume"]) == 2
    assert (
        main(["batch", "generate", "--input", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path)])
        == 2
    )
    assert "is not a file" in capsys.readouterr().err


def test_handler_with_plain_run_inference(gpt2_tokenizer_checkpoint):
    """The handler on its own, under Beam's RunInference batching: strings and dicts in, one result each."""
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.testing.util import assert_that

    from xlagen.beam import GenerationModelHandler

    path, _ = gpt2_tokenizer_checkpoint
    handler = GenerationModelHandler(str(path), {"max_new_tokens": 4}, max_batch_size=4)
    inputs = [
        "XLA compiles",
        {"prompt": "TensorFlow is", "max_new_tokens": 2},
        {"prompt": "x", "num_beams": 0},
    ]

    def check(results):
        by_prompt = {str(r.example): r.inference for r in results}
        assert len(results) == 3
        assert len(by_prompt["XLA compiles"]["tokens"]) <= 4
        assert len(next(v for k, v in by_prompt.items() if "TensorFlow" in k)["tokens"]) <= 2
        assert "num_beams" in next(v for k, v in by_prompt.items() if "'x'" in k)["error"]

    with beam.Pipeline(runner=FnApiRunner()) as p:
        assert_that(p | beam.Create(inputs) | RunInference(handler), check)


@pytest.mark.slow
def test_two_worker_processes(gpt2_tokenizer_checkpoint, tmp_path):
    """--workers 2 (Beam's multi-processing mode), also with one model shared by the worker processes
    (--share-model), gives the same results as the in-process run."""
    path, _ = gpt2_tokenizer_checkpoint
    write_input(tmp_path / "in.jsonl", good_records(60, seed=2), bad=BAD[:3])
    base = ["batch", "generate", "--input", str(tmp_path / "in.jsonl"), "--model", str(path), "--no-progress"]
    base += ["--max-new-tokens", "4", "--batch-size", "8"]
    assert main([*base, "--output", str(tmp_path / "one")]) == 0
    assert main([*base, "--output", str(tmp_path / "two"), "--workers", "2"]) == 0
    assert main([*base, "--output", str(tmp_path / "shared"), "--workers", "2", "--share-model"]) == 0
    key = lambda r: (str(r.get("id")), str(r.get("line")))  # noqa: E731
    for name in ("results", "errors"):
        one = sorted(read_jsonl(sorted((tmp_path / "one").glob(f"{name}-*.jsonl"))), key=key)
        for other in ("two", "shared"):
            assert sorted(read_jsonl(sorted((tmp_path / other).glob(f"{name}-*.jsonl"))), key=key) == one


def test_missing_beam_is_a_clear_error(monkeypatch, capsys):
    """Without Apache Beam, ``xlagen batch`` says which extra to install (``import xlagen`` never needs it)."""
    import sys

    monkeypatch.setitem(sys.modules, "apache_beam", None)
    assert main(["batch", "generate", "--input", "x.jsonl", "--output", "out"]) == 2
    assert "pip install 'xlagen[beam]'" in capsys.readouterr().err


def test_a_failing_batch_is_retried_record_by_record(gpt2_tokenizer_checkpoint, tmp_path, monkeypatch):
    """A batch call that raises is retried one record at a time: only the record that fails alone is
    dead-lettered; when the whole handler call raises, RunInference's exception handling dead-letters
    each record of the batch (every key still exactly once)."""
    from xlagen.beam.handlers import TextGenerator

    path, _ = gpt2_tokenizer_checkpoint
    records = [{"id": i, "prompt": "poison pill" if i == 3 else "XLA compiles"} for i in range(6)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    argv = ["batch", "generate", "--input", str(tmp_path / "in.jsonl"), "--model", str(path)]
    argv += ["--max-new-tokens", "3", "--no-progress"]
    original = TextGenerator._generate

    def poisoned(self, batch):
        if any("poison" in r["prompt"] for r in batch):
            raise RuntimeError("poisoned batch")
        return original(self, batch)

    monkeypatch.setattr(TextGenerator, "_generate", poisoned)
    assert main([*argv, "--output", str(tmp_path / "a")]) == 0
    results = read_jsonl((tmp_path / "a").glob("results-*.jsonl"))
    errors = read_jsonl((tmp_path / "a").glob("errors-*.jsonl"))
    assert sorted(r["id"] for r in results) == [0, 1, 2, 4, 5]
    assert [(e["id"], e["error"]) for e in errors] == [(3, "generation failed: RuntimeError: poisoned batch")]

    def broken(self, elements):
        raise MemoryError("out of memory")

    monkeypatch.setattr(TextGenerator, "generate_records", broken)
    assert main([*argv, "--output", str(tmp_path / "b")]) == 0
    errors = read_jsonl((tmp_path / "b").glob("errors-*.jsonl"))
    assert not read_jsonl((tmp_path / "b").glob("results-*.jsonl"))
    assert sorted(e["id"] for e in errors) == list(range(6))
    assert all(e["error"] == "inference failed: MemoryError('out of memory')" for e in errors)
    assert errors[0]["input"]["prompt"] in ("poison pill", "XLA compiles")
