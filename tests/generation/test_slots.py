"""The slot engine (continuous batching) against ``generate`` on each prompt alone, same weights."""

from __future__ import annotations

import numpy as np
import pytest

import xlagen
from tests.conftest import write_gpt2
from tests.models.test_opt import write_opt
from tests.models.test_t5 import write_t5
from xlagen.generation.slots import SlotEngine, SlotRequest


def drive(engine: SlotEngine, jobs: list[tuple[list[int], dict]], per_insert: int = 2) -> list[list[int]]:
    """Run ``jobs`` through the engine: fill free slots as they open (a few per insert), step until
    every job has ended. Returns each job's tokens."""
    active = np.zeros(engine.slots, bool)
    owner: dict[int, int] = {}
    outputs: list[list[int]] = [[] for _ in jobs]
    waiting = list(range(len(jobs)))
    while waiting or active.any():
        free = [s for s in range(engine.slots) if not active[s]]
        batch = []
        while free and waiting and len(batch) < per_insert:
            job, slot = waiting.pop(0), free.pop(0)
            batch.append(SlotRequest(slot, jobs[job][0], jobs[job][1]))
            owner[slot], active[slot] = job, True
        # one bucket per insert: split the batch by bucket
        for width in sorted({engine.bucket(len(r.prompt)) for r in batch}):
            group = [r for r in batch if engine.bucket(len(r.prompt)) == width]
            first = engine.insert(group)  # each request's first token
            for j, r in enumerate(group):
                outputs[owner[r.slot]] += first.tokens[j, : first.counts[j]].tolist()
                if first.finished[j]:
                    active[r.slot] = False
        out = engine.step(active)
        for slot in np.flatnonzero(active):
            outputs[owner[slot]] += out.tokens[slot, : out.counts[slot]].tolist()
            if out.finished[slot]:
                active[slot] = False
    return outputs


@pytest.fixture(scope="module")
def lively_gpt2(tmp_path_factory):
    """A tiny GPT-2 whose greedy continuations vary (large init): token equality means something."""
    path = tmp_path_factory.mktemp("gpt2_lively")
    write_gpt2(path, initializer_range=0.6)
    return xlagen.TFAutoModelForCausalLM.from_pretrained(path)


def reference(model, prompt: list[int], options: dict) -> list[int]:
    kwargs = dict(max_new_tokens=options["max_new_tokens"])
    if options.get("do_sample"):
        kwargs.update(do_sample=True, temperature=options["temperature"], top_k=options.get("top_k", 0))
        kwargs.update(top_p=options.get("top_p", 1.0), seed=(options["seed"], 0))
    if options.get("repetition_penalty", 1.0) != 1.0:
        kwargs["repetition_penalty"] = options["repetition_penalty"]
    out = model.generate(np.asarray([prompt]), **kwargs).numpy()[0]
    return out[len(prompt) :].tolist()


def test_mixed_load_matches_generate_alone(lively_gpt2):
    model = lively_gpt2
    engine = SlotEngine(model, slots=3, max_length=48, steps_per_call=3, prompt_buckets=(8, 16, 40))
    rng = np.random.default_rng(1)
    jobs = []
    for i, n in enumerate([5, 12, 3, 20, 7, 9, 30, 2]):
        options = {"max_new_tokens": int(rng.integers(2, 14))}
        if i % 3 == 1:
            options.update(do_sample=True, temperature=0.8, top_k=20, top_p=0.9, seed=100 + i)
        if i == 4:
            options["repetition_penalty"] = 1.3
        jobs.append((rng.integers(3, 128, n).tolist(), options))
    got = drive(engine, jobs)
    for (prompt, options), tokens in zip(jobs, got):
        want = reference(model, prompt, options)
        eos = model.generation_config.eos_token_ids
        if want and want[-1] in eos:  # generate pads after EOS; the engine stops there
            want = want[: want.index(want[-1]) + 1]
        assert tokens == want[: len(tokens)] and len(tokens) == len(want), (prompt, options)
    compiled = engine.compilations
    drive(engine, jobs[:3])
    assert engine.compilations == compiled, "no new program after the buckets were seen"


def test_budget_cache_end_and_ignore_eos(lively_gpt2):
    engine = SlotEngine(lively_gpt2, slots=2, max_length=20, steps_per_call=4, prompt_buckets=(8, 16))
    prompt = [5, 6, 7, 8, 9, 10]
    # the budget reaches past the cache: the slot stops when its 20 token slots are full (the last
    # token is returned without being run through the model, so it needs no slot)
    (tokens,) = drive(engine, [(prompt, {"max_new_tokens": 50, "ignore_eos": True})])
    assert len(tokens) == 20 - len(prompt) + 1
    (tokens,) = drive(engine, [(prompt, {"max_new_tokens": 1})])
    assert len(tokens) == 1  # ended by the insert itself
    out = engine.step(np.asarray([True, False]))
    assert out.counts.tolist() == [0, 0], "a finished slot does not advance"


def test_opt_and_t5_in_slots(tmp_path):
    write_opt(tmp_path / "opt")
    opt = xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path / "opt")
    engine = SlotEngine(opt, slots=2, max_length=40, steps_per_call=2, prompt_buckets=(16, 32))
    rng = np.random.default_rng(2)
    jobs = [(rng.integers(3, 128, n).tolist(), {"max_new_tokens": 6}) for n in (4, 17, 9)]
    for (prompt, options), tokens in zip(jobs, drive(engine, jobs)):
        assert tokens == reference(opt, prompt, options)[: len(tokens)]

    write_t5(tmp_path / "t5")
    t5 = xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(tmp_path / "t5")
    engine = SlotEngine(t5, slots=2, max_length=12, steps_per_call=3, prompt_buckets=(8, 16))
    jobs = [(rng.integers(3, 100, n).tolist(), {"max_new_tokens": 7}) for n in (5, 14, 3)]
    for (prompt, _), tokens in zip(jobs, drive(engine, jobs)):
        want = t5.generate(np.asarray([prompt]), max_new_tokens=7).numpy()[0, 1:].tolist()
        assert tokens == want[: len(tokens)] and len(tokens) >= 1


def test_bad_arguments(lively_gpt2):
    with pytest.raises(ValueError, match="slots"):
        SlotEngine(lively_gpt2, slots=0)
    with pytest.raises(ValueError, match="max_length"):
        SlotEngine(lively_gpt2, max_length=10_000)
    engine = SlotEngine(lively_gpt2, slots=2, max_length=32, prompt_buckets=(8, 16))
    with pytest.raises(ValueError, match="longer than the largest bucket"):
        engine.bucket(17)
    with pytest.raises(ValueError, match="slot 5"):
        engine.insert([SlotRequest(5, [1, 2], {})])
    with pytest.raises(ValueError, match="unknown slot options"):
        engine.insert([SlotRequest(0, [1, 2], {"temprature": 1.0})])


def test_llama_family_with_sliding_window_in_slots_matches_generate(tmp_path):
    from tests.models.test_llama import write_llama

    write_llama(
        tmp_path, seed=5, family="mistral", num_key_value_heads=2, sliding_window=4, initializer_range=0.5
    )
    model = xlagen.TFAutoModelForCausalLM.from_pretrained(tmp_path)
    engine = SlotEngine(model, slots=2, max_length=40, steps_per_call=2, prompt_buckets=(8, 16))
    rng = np.random.default_rng(3)
    jobs = [(rng.integers(3, 128, n).tolist(), {"max_new_tokens": 9}) for n in (6, 13, 3)]
    for (prompt, options), tokens in zip(jobs, drive(engine, jobs)):
        want = reference(model, prompt, options)
        eos = model.generation_config.eos_token_ids
        if want and want[-1] in eos:
            want = want[: want.index(want[-1]) + 1]
        assert tokens[: len(want)] == want


@pytest.mark.parametrize("variant", ["m2m_100"])  # fairseq positions: counted from the pad id
def test_bart_family_in_slots_matches_generate(tmp_path, variant):
    """Seq2seq slots: the decoder positions and cross-attention cache of a BART-family model."""
    from tests.models.test_bart import VOCAB, write_model

    write_model(tmp_path, variant)
    model = xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    engine = SlotEngine(model, slots=2, max_length=12, steps_per_call=3, prompt_buckets=(8, 16))
    rng = np.random.default_rng(4)
    jobs = [(rng.integers(3, VOCAB - 20, n).tolist(), {"max_new_tokens": 7}) for n in (5, 14, 3)]
    for (prompt, _), tokens in zip(jobs, drive(engine, jobs)):
        want = model.generate(np.asarray([prompt]), max_new_tokens=7).numpy()[0, 1:].tolist()
        assert tokens == want[: len(tokens)] and len(tokens) >= 1
