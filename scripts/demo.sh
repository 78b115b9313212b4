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
key=$(omnidecide keys create --scope admin --name "demo-$(date +%s)" | tail -1)
cat <<EOT

API key (scope admin, shown once; \`omnidecide keys list\` lists keys, \`keys revoke NAME\` revokes one):
  $key

Console: http://127.0.0.1:$port/ui/  -- sign in with the key above (read keys view, admin keys also act).

Serving every model on http://127.0.0.1:$port (Swagger UI at /, Ctrl-C stops). Try:
  curl -s -X POST localhost:$port/recommend -H "Authorization: Bearer $key" -H 'content-type: application/json' -d '{"user_id": "$user", "k": 5}'
  curl -s -X POST localhost:$port/allocate -H "Authorization: Bearer $key" -H 'content-type: application/json' -d '{"budget": 1000000, "periods": 8}'
From another shell (.venv/bin on PATH): omnidecide monitor --data data/synth; omnidecide report --html report.html
EOT
exec omnidecide serve --port "$port"
