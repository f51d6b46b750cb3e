#!/usr/bin/env bash
# REST API (and web UI) latency under concurrent load, on a store the size
# of a busy installation: DAGS DAGs x RUNS runs x TASKS tasks (default
# 100 x 100 x 20 = 200,000 task instances, each with one try).
#
#   bash bench/api_latency.sh            # build, seed, serve, load, report
#   DURATION=30s CONNS=32 bash bench/api_latency.sh
#   PAVE=/path/to/pave SEED=/path/to/seed_bench_store bash bench/api_latency.sh
#   BASELINE=/path/to/older/pave bash bench/api_latency.sh   # before/after, interleaved
#
# It seeds a throwaway PAVE_HOME with crates/pave-rest/examples/
# seed_bench_store.rs, starts `pave standalone` on it, creates an API
# token, then loads each endpoint with wrk (Debian package `wrk`) from a
# second process on loopback: CONNS connections on 2 threads for DURATION,
# and prints p50/p99/max latency and requests/s per endpoint, plus the
# server's peak RSS. A report, not a test: nothing is asserted.
#
# The web UI's grid fragment (GRID_PATH, default /ui/dags/bench_dag_042/grid,
# the 20 newest runs x 20 tasks; GRID_PATH= to skip) is loaded three ways:
# as wrk asks (no compression), as a browser asks (`Accept-Encoding: gzip`),
# and as a browser polls it once it has it (`If-None-Match` with the
# fragment's ETag: a 304 when nothing changed; wrk counts 304 as non-2xx).
#
# With BASELINE set, a second server runs that binary on a copy of the same
# seeded store, and every endpoint is loaded on the baseline and then on
# PAVE, one after the other, so both see the same machine load.
set -euo pipefail
cd "$(dirname "$0")/.."

DAGS="${DAGS:-100}"; RUNS="${RUNS:-100}"; TASKS="${TASKS:-20}"
DURATION="${DURATION:-15s}"; CONNS="${CONNS:-16}"
GRID_PATH="${GRID_PATH-/ui/dags/bench_dag_042/grid}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pave-target}"
if [[ -z "${PAVE:-}" || -z "${SEED:-}" ]]; then
  cargo build --release --quiet -p pave-cli
  cargo build --release --quiet -p pave-rest --example seed_bench_store
fi
PAVE="${PAVE:-$CARGO_TARGET_DIR/release/pave}"
SEED="${SEED:-$CARGO_TARGET_DIR/release/examples/seed_bench_store}"
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }

WORK="$(mktemp -d)"
mkdir -p "$WORK/dags"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

mkdir -p "$WORK/new"
"$SEED" "$WORK/new/pave.db" "$DAGS" "$RUNS" "$TASKS"
if [[ -n "${BASELINE:-}" ]]; then cp -r "$WORK/new" "$WORK/base"; fi

# start NAME BINARY: serves $WORK/NAME; sets BASE_<NAME>, ORIGIN_<NAME>, AUTH_<NAME>, PID_<NAME>.
start() {
  local name=$1 bin=$2 log="$WORK/$1.log" base token
  PAVE_HOME="$WORK/$name" "$bin" standalone --dags "$WORK/dags" --port 0 > "$log" 2>&1 &
  PIDS+=("$!"); printf -v "PID_$name" '%s' "$!"
  for _ in $(seq 300); do grep -q 'REST API at http://' "$log" && break; sleep 0.1; done
  base="$(grep -o 'REST API at http://[^ ]*' "$log" | head -n1 | sed 's/REST API at //')"
  [[ -n "$base" ]] || { cat "$log" >&2; exit 1; }
  token="$(PAVE_HOME="$WORK/$name" "$bin" tokens create --username admin --name bench)"
  printf -v "BASE_$name" '%s' "$base"
  printf -v "ORIGIN_$name" '%s' "${base%/api/v1}"
  printf -v "AUTH_$name" '%s' "Authorization: Bearer $token"
}
SERVERS=(new)
start new "$PAVE"
if [[ -n "${BASELINE:-}" ]]; then SERVERS=(base new); start base "$BASELINE"; fi

DAG=bench_dag_042
RUN="$(curl -sf -H "$AUTH_new" "$BASE_new/dags/$DAG/dagRuns?limit=1&order_by=-logical_date" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["dag_runs"][0]["dag_run_id"])')"
RUN_Q="$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$RUN")"

# Endpoints: name, path relative to the origin, and extra wrk header ("" for none;
# "ETAG" for If-None-Match with the server's own ETag of that path).
declare -a NAMES PATHS HDRS
add() { NAMES+=("$1"); PATHS+=("$2"); HDRS+=("$3"); }
add "DAG list (100 per page)"                 "/api/v1/dags?limit=100" ""
add "runs of one DAG (25 newest)"             "/api/v1/dags/$DAG/dagRuns?limit=25&order_by=-logical_date" ""
add "task instances of one run (20)"          "/api/v1/dags/$DAG/dagRuns/$RUN_Q/taskInstances" ""
add "task instances, all runs of a DAG (100)" "/api/v1/dags/$DAG/dagRuns/~/taskInstances?limit=100" ""
if [[ -n "$GRID_PATH" ]]; then
  add "UI grid ($GRID_PATH)"                  "$GRID_PATH" ""
  add "UI grid, gzip (as browsers ask)"       "$GRID_PATH" "Accept-Encoding: gzip"
  add "UI grid, revalidated (If-None-Match)"  "$GRID_PATH" "ETAG"
fi

echo "# API latency: $DAGS DAGs x $RUNS runs x $TASKS tasks; wrk -t2 -c$CONNS -d$DURATION; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| endpoint | server | p50 | p99 | max | requests/s | non-2xx |"
echo "|---|---|---|---|---|---|---|"
for i in "${!NAMES[@]}"; do
  for s in "${SERVERS[@]}"; do
    origin_var="ORIGIN_$s"; auth_var="AUTH_$s"
    url="${!origin_var}${PATHS[$i]}"
    hdr=(-H "${!auth_var}")
    if [[ "${HDRS[$i]}" == ETAG ]]; then
      tag="$(curl -s -o /dev/null -D - -H "${!auth_var}" "$url" | tr -d '\r' | awk 'tolower($1)=="etag:"{print $2}')"
      if [[ -z "$tag" ]]; then echo "| ${NAMES[$i]} | $s | (no ETag) | | | | |"; continue; fi
      hdr+=(-H "If-None-Match: $tag")
    elif [[ -n "${HDRS[$i]}" ]]; then
      hdr+=(-H "${HDRS[$i]}")
    fi
    out="$(wrk -t2 -c"$CONNS" -d"$DURATION" --latency "${hdr[@]}" "$url")"
    p50="$(awk '$1=="50%"{print $2}' <<<"$out")"
    p99="$(awk '$1=="99%"{print $2}' <<<"$out")"
    max="$(awk '$1=="Latency"{print $4; exit}' <<<"$out")"
    rps="$(awk '$1=="Requests/sec:"{print $2}' <<<"$out")"
    bad="$(awk '/Non-2xx/{print $NF}' <<<"$out")"
    echo "| ${NAMES[$i]} | $s | $p50 | $p99 | $max | $rps | ${bad:-0} |"
  done
done
echo
for s in "${SERVERS[@]}"; do
  pid_var="PID_$s"
  echo "server $s peak RSS: $(awk '/VmHWM/{printf "%.1f MiB", $2/1024}' "/proc/${!pid_var}/status")"
done
