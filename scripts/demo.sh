#!/usr/bin/env bash
# The main job on the embedded default: synthetic world -> train every model -> serve them over HTTP.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
users=${DEMO_USERS:-2000}
[ -f data/synth/truth.json ] || omnidecide data synth --out data/synth --users "$users" --seed 0
omnidecide train all --data data/synth
exec omnidecide serve --port "${PORT:-3000}"
