#!/usr/bin/env bash
# The main job on the embedded default: synthetic world -> train every model -> serve them over HTTP.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
users=${DEMO_USERS:-2000}
[ -f data/synth/truth.json ] || omnidecide data synth --out data/synth --users "$users" --seed 0
omnidecide train all --data data/synth
port=${PORT:-3000}
user=$(sed -n 2p data/synth/users.csv | cut -d, -f1)
# A fresh admin key for this demo (the last one is revoked): the console and the curl calls below use it.
omnidecide keys revoke demo-admin >/dev/null 2>&1 || true
key=$(omnidecide keys create --scope admin --name demo-admin | tail -n 1)
cat <<EOT

Serving every model on http://127.0.0.1:$port (Swagger UI at /, Ctrl-C stops).

Console: http://127.0.0.1:$port/ui/  -- sign in with this admin key (shown once; \`omnidecide keys create\` makes more):
  $key

Try:
  curl -s -X POST localhost:$port/recommend -H "authorization: Bearer $key" -H 'content-type: application/json' -d '{"user_id": "$user", "k": 5}'
  curl -s -X POST localhost:$port/allocate -H "authorization: Bearer $key" -H 'content-type: application/json' -d '{"budget": 1000000, "periods": 8}'
From another shell (.venv/bin on PATH): omnidecide monitor --data data/synth; omnidecide report --html report.html
EOT
exec omnidecide serve --port "$port"
