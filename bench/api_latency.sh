#!/usr/bin/env bash
# REST API (and web UI) latency under concurrent load, on a store the size
# of a busy installation: DAGS DAGs x RUNS runs x TASKS tasks (default
# 100 x 100 x 20 = 200,000 task instances, each with one try).
#
#   bash bench/api_latency.sh            # build, seed, serve, load, report
#   DURATION=30s CONNS=32 bash bench/api_latency.sh
#   PAVE=/path/to/pave SEED=/path/to/seed_bench_store bash bench/api_latency.sh
#
# It seeds a throwaway PAVE_HOME with crates/pave-rest/examples/
# seed_bench_store.rs, starts `pave standalone` on it, creates an API
# token, then loads each endpoint with wrk (Debian package `wrk`) from a
# second process on loopback: CONNS connections on 2 threads for DURATION,
# and prints p50/p99/max latency and requests/s per endpoint, plus the
# server's peak RSS. A report, not a test: nothing is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."

DAGS="${DAGS:-100}"; RUNS="${RUNS:-100}"; TASKS="${TASKS:-20}"
DURATION="${DURATION:-15s}"; CONNS="${CONNS:-16}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pave-target}"
if [[ -z "${PAVE:-}" || -z "${SEED:-}" ]]; then
  cargo build --release --quiet -p pave-cli
  cargo build --release --quiet -p pave-rest --example seed_bench_store
fi
PAVE="${PAVE:-$CARGO_TARGET_DIR/release/pave}"
SEED="${SEED:-$CARGO_TARGET_DIR/release/examples/seed_bench_store}"
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }

WORK="$(mktemp -d)"
export PAVE_HOME="$WORK/home"
mkdir -p "$PAVE_HOME" "$WORK/dags"
SERVER=""
cleanup() { [[ -n "$SERVER" ]] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

"$SEED" "$PAVE_HOME/pave.db" "$DAGS" "$RUNS" "$TASKS"
"$PAVE" standalone --dags "$WORK/dags" --port 0 > "$WORK/standalone.log" 2>&1 &
SERVER=$!
for _ in $(seq 300); do
  grep -q 'REST API at http://' "$WORK/standalone.log" && break
  sleep 0.1
done
BASE="$(grep -o 'REST API at http://[^ ]*' "$WORK/standalone.log" | head -n1 | sed 's/REST API at //')"
ORIGIN="${BASE%/api/v1}"
[[ -n "$BASE" ]] || { cat "$WORK/standalone.log" >&2; exit 1; }
TOKEN="$("$PAVE" tokens create --username admin --name bench)"
AUTH="Authorization: Bearer $TOKEN"

DAG=bench_dag_042
RUN="$(curl -sf -H "$AUTH" "$BASE/dags/$DAG/dagRuns?limit=1&order_by=-logical_date" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["dag_runs"][0]["dag_run_id"])')"
RUN_Q="$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$RUN")"

declare -a NAMES URLS
add() { NAMES+=("$1"); URLS+=("$2"); }
add "DAG list (100 per page)"                 "$BASE/dags?limit=100"
add "runs of one DAG (25 newest)"             "$BASE/dags/$DAG/dagRuns?limit=25&order_by=-logical_date"
add "task instances of one run (20)"          "$BASE/dags/$DAG/dagRuns/$RUN_Q/taskInstances"
add "task instances, all runs of a DAG (100)" "$BASE/dags/$DAG/dagRuns/~/taskInstances?limit=100"
# The web UI's grid (runs x tasks), when the UI serves one: GRID_PATH, e.g.
# GRID_PATH=/dags/bench_dag_042/grid (the UI's own route; relative to the origin).
if [[ -n "${GRID_PATH:-}" ]]; then add "UI grid ($GRID_PATH)" "$ORIGIN$GRID_PATH"; fi

echo "# API latency: $DAGS DAGs x $RUNS runs x $TASKS tasks; wrk -t2 -c$CONNS -d$DURATION; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| endpoint | p50 | p99 | max | requests/s | non-2xx |"
echo "|---|---|---|---|---|---|"
for i in "${!NAMES[@]}"; do
  out="$(wrk -t2 -c"$CONNS" -d"$DURATION" --latency -H "$AUTH" "${URLS[$i]}")"
  p50="$(awk '$1=="50%"{print $2}' <<<"$out")"
  p99="$(awk '$1=="99%"{print $2}' <<<"$out")"
  max="$(awk '$1=="Latency"{print $4; exit}' <<<"$out")"
  rps="$(awk '$1=="Requests/sec:"{print $2}' <<<"$out")"
  bad="$(awk '/Non-2xx/{print $NF}' <<<"$out")"
  echo "| ${NAMES[$i]} | $p50 | $p99 | $max | $rps | ${bad:-0} |"
done
echo
echo "server peak RSS: $(awk '/VmHWM/{printf "%.1f MiB", $2/1024}' /proc/$SERVER/status)"
