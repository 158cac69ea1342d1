#!/usr/bin/env bash
# Everything the serving benchmark (benchmarks/serve_bench.py, serve_faults.py) needs, once:
#
#   bash benchmarks/serve_setup.sh
#
# 1. the peer venvs `pt` (Transformers 5.24 + torch 2.13.0 CPU) and `fw` (faster-whisper 1.2.1)
#    from setup_peers.sh;
# 2. `transformers serve`'s own dependencies into `pt` (the `serving` extra: fastapi, uvicorn,
#    openai...; python-multipart, soundfile and soxr for its /v1/audio/transcriptions). torch stays
#    pinned: an unpinned one pulls gigabytes of CUDA wheels;
# 3. the GPT-2 124M-shape random checkpoint with a tokenizer, and Whisper tiny.en in Transformers'
#    layout (python -m benchmarks.serve_bench setup; idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
HOME_DIR=${XLAGEN_BENCH_HOME:-$HOME/.cache/xlagen-bench}
PT=$HOME_DIR/venvs/pt

bash benchmarks/setup_peers.sh pt fw
EXTRA="transformers[serving]==5.24.0 torch==2.13.0 python-multipart soundfile soxr"
if [ ! -f "$PT/.serving" ] || [ "$(cat "$PT/.serving")" != "$EXTRA" ]; then
  # shellcheck disable=SC2086
  "$PT/bin/pip" install --quiet $EXTRA
  echo "$EXTRA" > "$PT/.serving"
fi
"$PT/bin/transformers" serve --help > /dev/null
.venv/bin/python -m benchmarks.serve_bench setup
