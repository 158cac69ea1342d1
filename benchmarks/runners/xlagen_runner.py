"""xlagen, through its public API: ``model.generate`` (XLA by default, ``jit_compile=False`` eager)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from benchmarks import harness
from benchmarks.workloads import SEQ2SEQ, generated_length, prompt_ids


def long_form_transcribe(model, processor, audio: np.ndarray, num_beams: int) -> tuple[str, int]:
    """Audio over 30 s: xlagen's long-form API (``WhisperPipeline.transcribe``), decoding as the
    faster-whisper runner does: English, no timestamps (plain 30 s windows), temperature 0 only
    (no fallback), no conditioning on the previous window's text. Returns (text, tokens)."""
    import xlagen

    pipeline = _PIPELINE.get(id(model))
    if pipeline is None:
        pipeline = _PIPELINE[id(model)] = xlagen.WhisperPipeline(model, processor)
    result = pipeline.transcribe(
        audio,
        language="en",
        beam_size=num_beams,
        timestamps=False,
        temperature=0.0,
        condition_on_previous_text=False,
    )
    return result.text.strip(), sum(len(s.tokens) for s in result.segments)


_PIPELINE: dict[int, object] = {}


def run_whisper(spec: dict, jit: bool) -> dict:
    import xlagen

    w = spec["workload"]
    t0 = time.perf_counter()
    model = xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(spec["checkpoint"])
    processor = xlagen.AutoProcessor.from_pretrained(spec["checkpoint"])
    load_s = time.perf_counter() - t0
    audio = np.load(spec["audio"])
    seconds = len(audio) / 16000
    beams = int(w["num_beams"])

    def transcribe() -> tuple[str, int]:
        if seconds > 30:
            return long_form_transcribe(model, processor, audio, beams)
        features = processor(audio, sampling_rate=16000, return_tensors="np").input_features
        prompt = len(model.decoder_prompt_ids())
        out = model.generate(
            features, num_beams=beams, max_new_tokens=int(w["max_new_tokens"]), jit_compile=jit
        )
        ids = np.asarray(out)[0]
        return processor.batch_decode(ids[None], skip_special_tokens=True)[0].strip(), len(ids) - prompt

    rec = harness.measure_transcription(transcribe, spec, seconds)
    rec.update(
        load_s=load_s, generation_stats=_stats(model), versions=harness.versions("xlagen", "tensorflow")
    )
    return rec


def _stats(model) -> dict:
    stats = model.generation_stats()
    return {"compilations": stats["compilations"], "calls": stats["calls"]}


def run(spec: dict) -> dict:
    import xlagen

    w = spec["workload"]
    jit = spec["variant"] == "xla"
    if w["model"] == "whisper":
        return run_whisper(spec, jit)
    meta = json.loads((Path(spec["checkpoint"]) / "meta.json").read_text())
    seq2seq = w["model"] in SEQ2SEQ
    cls = xlagen.TFAutoModelForSeq2SeqLM if seq2seq else xlagen.TFAutoModelForCausalLM
    t0 = time.perf_counter()
    model = cls.from_pretrained(spec["checkpoint"])
    load_s = time.perf_counter() - t0
    length = w["encoder_len"] if seq2seq else w["prompt_len"]
    ids = prompt_ids(w["batch"], length, meta["vocab_size"])
    mask = np.ones_like(ids)
    skip = 1 if seq2seq else length  # T5 returns decoder ids from the start token on

    def call(n: int) -> int:
        out = model.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=n,
            num_beams=w["num_beams"],
            do_sample=False,
            jit_compile=jit,
        )
        return generated_length(np.asarray(out)[:, skip:], meta["eos_token_ids"])

    rec = harness.measure_generation(call, spec)
    rec.update(
        load_s=load_s, generation_stats=_stats(model), versions=harness.versions("xlagen", "tensorflow")
    )
    return rec


if __name__ == "__main__":
    harness.main(run)
