"""The benchmark orchestrator's bookkeeping: alternating rounds and the round kept per system."""

import pytest

from benchmarks import report
from benchmarks.run import drop_records, median_round, merge, round_orders


def _plan():
    a, b = {"name": "gpt2-b1"}, {"name": "gpt2-b8"}
    return [("x", a), ("y", a), ("z", a), ("x", b), ("y", b)]


def test_round_orders_alternate_the_systems_of_each_workload():
    order = [(s, w["name"]) for s, w in round_orders(_plan(), 3)]
    b1, b8 = "gpt2-b1", "gpt2-b8"
    assert order == [
        ("x", b1), ("y", b1), ("z", b1), ("x", b8), ("y", b8),  # round 1: forward
        ("z", b1), ("y", b1), ("x", b1), ("y", b8), ("x", b8),  # round 2: backward
        ("x", b1), ("y", b1), ("z", b1), ("x", b8), ("y", b8),
    ]  # fmt: skip
    assert round_orders(_plan(), 1) == _plan()


def test_median_round_keeps_the_median_and_every_rounds_figures():
    rounds = [
        {"ok": True, "tokens_per_s": 30.0, "ms_per_step": 33.0},
        {"ok": True, "tokens_per_s": 38.0, "ms_per_step": 26.0},
        {"ok": True, "tokens_per_s": 35.0, "ms_per_step": 28.0},
    ]
    kept = median_round(rounds)
    assert kept["tokens_per_s"] == 35.0 and kept["ms_per_step"] == 28.0
    assert kept["rounds"] == 3
    assert kept["round_tokens_per_s"] == [30.0, 38.0, 35.0]
    assert kept["round_ms_per_step"] == [33.0, 26.0, 28.0]
    assert median_round(rounds[:2])["tokens_per_s"] == 38.0  # of two: the faster
    assert median_round(rounds[:1]) is rounds[0]


def test_median_round_skips_failed_rounds_and_reports_all_failed():
    ok = {"ok": True, "tokens_per_s": 20.0}
    assert median_round([{"ok": False, "error": "timed out"}, ok])["tokens_per_s"] == 20.0
    failed = median_round([{"ok": False, "error": "a"}, {"ok": False, "error": "b"}])
    assert not failed["ok"] and failed["error"] == "b" and failed["rounds"] == 2


def test_persistent_cache_line_compares_the_warm_process_with_the_one_that_filled_the_cache():
    pc = {
        "workload": "gpt2-b1",
        "fill": {"ok": True, "first_call_s": 12.0, "median_s": 4.0},
        "warm": {"ok": True, "first_call_s": 6.0, "median_s": 4.0},
    }
    line = report.persistent_cache_line(pc)
    assert "12.0 s filling it (cold), 6.0 s in the next fresh process (0.50×)" in line
    assert "2.0 s vs 8.0 s cold (0.25×)" in line
    assert report.persistent_cache_line({**pc, "warm": {"ok": False}}) is None
    assert report.persistent_cache_line(None) is None


def test_settings_text_groups_parts_with_the_same_settings():
    plain = dict(runs=3, min_runs=3, budget_s=30)
    rounds = dict(plain, rounds=2)
    assert report._settings_text({"settings": plain}) == "Median of 3 warm runs (at least 3 past 30 s)"
    same = report._settings_text({"parts": [{"settings": plain}] * 12})
    assert same == "Median of 3 warm runs (at least 3 past 30 s) in each of the run's 12 parts"
    mixed = report._settings_text({"parts": [{"settings": s} for s in (rounds, plain, plain, rounds)]})
    assert mixed.count("3 warm runs") == 2 and "in 2 alternating rounds" in mixed
    assert mixed.endswith("in parts 2, 3") and "in parts 1, 4;" in mixed


def test_drop_records_moves_matching_rows_out_of_the_table():
    def rec(system, workload):
        return {"system": system, "workload": workload, "tokens_per_s": 1.0, "median_s": 2.0}

    doc = {
        "results": [rec("kerashub-xla", "opt-b8"), rec("kerashub-xla", "gpt2-b1"), rec("tf4-xla", "opt-b8")]
    }
    with pytest.raises(ValueError, match="matches no record"):
        drop_records(doc, "kerashub@opt-b8", "names are exact unless they end in *")
    gone = drop_records(doc, "kerashub*@opt*", "another day")
    assert [(r["system"], r["workload"]) for r in gone] == [("kerashub-xla", "opt-b8")]
    assert [(r["system"], r["workload"]) for r in doc["results"]] == [
        ("kerashub-xla", "gpt2-b1"),
        ("tf4-xla", "opt-b8"),
    ]
    assert doc["dropped"] == [dict(rec("kerashub-xla", "opt-b8"), reason="another day")]
    with pytest.raises(ValueError, match="matches no record"):
        drop_records(doc, "torch@t5", "x")
    with pytest.raises(ValueError, match="system@workload"):
        drop_records(doc, "kerashub", "x")


def test_merging_into_the_same_old_results_twice_adds_one_part():
    """The orchestrator rewrites results after every run by merging into the results it loaded at
    its start: the new part must appear once however many times that happens."""
    bw = {"read_gb_per_s": 25.0, "gemm_gflop_per_s": 150.0}
    settings = {"runs": 3, "min_runs": 3, "budget_s": 30.0}

    def doc(started, duration, results):
        return {
            "started": started,
            "duration_s": duration,
            "settings": settings,
            "bandwidth": {"start": bw, "end": bw},
            "workloads": [{"name": "gpt2-b1", "model": "gpt2"}],
            "results": results,
        }

    old = doc("day 1", 100.0, [{"system": "tf4-xla", "workload": "gpt2-b1"}])
    old["parts"] = [{"started": "day 1", "duration_s": 100.0, "settings": settings}]
    for duration in (10.0, 20.0, 30.0):
        merged = merge(old, doc("day 2", duration, [{"system": "xlagen-xla", "workload": "gpt2-b1"}]))
    assert [p["started"] for p in merged["parts"]] == ["day 1", "day 2"]
    assert merged["duration_s"] == 130.0
    assert {r["system"] for r in merged["results"]} == {"tf4-xla", "xlagen-xla"}


def test_merge_keeps_dropped_records_until_measured_again():
    bw = {"read_gb_per_s": 25.0, "gemm_gflop_per_s": 150.0}
    old = {
        "started": "day 1",
        "duration_s": 10.0,
        "settings": {},
        "bandwidth": {"start": bw, "end": bw},
        "workloads": [{"name": "gpt2-b1"}, {"name": "opt-b1"}],
        "results": [{"system": "tf4-xla", "workload": "gpt2-b1"}],
        "dropped": [
            {"system": "kerashub-xla", "workload": "gpt2-b1", "reason": "stale"},
            {"system": "kerashub-xla", "workload": "opt-b1", "reason": "stale"},
        ],
    }
    new = {**old, "started": "day 2", "results": [{"system": "kerashub-xla", "workload": "gpt2-b1"}]}
    del new["dropped"]
    merged = merge(old, new)
    assert merged["dropped"] == [{"system": "kerashub-xla", "workload": "opt-b1", "reason": "stale"}]
    assert {(r["system"], r["workload"]) for r in merged["results"]} == {
        ("tf4-xla", "gpt2-b1"),
        ("kerashub-xla", "gpt2-b1"),
    }


def test_enrich_drops_ratios_whose_records_are_gone():
    bw = {"read_gb_per_s": 25.0}
    w = {"name": "gpt2-b1", "model": "gpt2", "xlagen_vs_tf4_eager": 15.0}

    def rec(system, tps):
        return {"system": system, "workload": "gpt2-b1", "ok": True, "tokens_per_s": tps, "first_call_s": 1.0}

    doc = {"bandwidth": {"start": bw, "end": bw}, "workloads": [w], "models": {}, "results": []}
    doc["results"] = [rec("xlagen-xla", 30.0), rec("tf4-xla", 20.0)]
    report.enrich(doc)
    assert "xlagen_vs_tf4_eager" not in w  # its tf4-eager record is no longer there
    assert w["fastest_peer"] == "tf4-xla" and w["xlagen_speedup_vs_fastest_peer"] == 1.5


def test_llama_and_marian_rows_run_at_batch_1_and_8_against_the_issue_15_peers():
    from benchmarks.run import core_plan
    from benchmarks.workloads import MODEL_CONFIGS, SEQ2SEQ, SYSTEMS, workloads

    for quick in (False, True):
        ws = {w["name"]: w for w in workloads(quick)}
        assert all(w["model"] in MODEL_CONFIGS for w in ws.values() if w["model"] != "whisper")
        batches = (1, 8) if not quick else (1, 4)
        for model in ("llama", "marian"):
            rows = [w for w in ws.values() if w["model"] == model]
            assert [w["batch"] for w in rows] == list(batches)
            for w in rows:
                assert w["num_beams"] == 1 and w["new_tokens"] == ws["gpt2-b1"]["new_tokens"]
                if model in SEQ2SEQ:  # the encoder reads the prompt, the decoder starts from its start token
                    assert w["prompt_len"] == 1 and w["encoder_len"] == ws["t5-b1"]["encoder_len"]
        plan = [(s, w) for w in ws.values() for s in SYSTEMS if w["model"] in SYSTEMS[s][3]]
        core = {(w["name"], s) for s, w in core_plan(plan)}
        llama_peers = {"xlagen-xla", "torch-dynamic", "torch-static-compile", "kerashub-xla"}
        marian_peers = {"xlagen-xla", "torch-dynamic", "torch-static-compile", "tf4-xla"}
        assert {s for n, s in core if n == "llama-b1"} == llama_peers
        assert {s for n, s in core if n == "marian-b1"} == marian_peers
    cfg = MODEL_CONFIGS["marian"]["full"]  # the decoder starts from pad; no forced EOS changes the work
    assert cfg["decoder_start_token_id"] == cfg["pad_token_id"] and cfg["forced_eos_token_id"] is None


def test_marian_decode_bytes_leave_out_the_encoder_and_count_the_tied_head_once():
    from types import SimpleNamespace

    from benchmarks.checkpoints import decode_weight_bytes

    t = {
        "model.shared.weight": SimpleNamespace(nbytes=100),
        "lm_head.weight": SimpleNamespace(nbytes=100),
        "model.encoder.layers.0.fc1.weight": SimpleNamespace(nbytes=10),
        "model.decoder.layers.0.fc1.weight": SimpleNamespace(nbytes=10),
        "model.decoder.embed_positions.weight": SimpleNamespace(nbytes=7),
        "final_logits_bias": SimpleNamespace(nbytes=1),
    }
    assert decode_weight_bytes(t, "marian") == 111
