#!/usr/bin/env bash
# The web UI's page weight and the latency of its live fragments, measured
# against a real `pave standalone` on a temporary home with the examples.
#
#   cargo build --release -p pave-cli
#   bash bench/ui_page_weight.sh [RUNS] [REQUESTS]
#   PAVE=/path/to/pave bash bench/ui_page_weight.sh
#
# It logs in with the printed admin password, triggers `ml_pipeline` RUNS
# times from the UI's trigger form (default 20) and waits for the runs, then:
#   1. page weight: the DAG page (grid tab) and every asset it links, in
#      bytes as sent with and without gzip (curl --compressed), cold cache;
#      and the other pages' HTML;
#   2. fragment latency: REQUESTS sequential GETs (default 200) of the grid
#      fragment (/ui/dags/ml_pipeline/grid), the DAG list fragment, the task
#      instance page and a log chunk, p50/p90/p99 from curl's time_total.
# Report only: nothing is asserted. Needs bash, curl, gzip, awk, sort.
set -euo pipefail

RUNS=${1:-20}
REQUESTS=${2:-200}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PAVE=${PAVE:-${CARGO_TARGET_DIR:-$ROOT/target}/release/pave}
[ -x "$PAVE" ] || { echo "no pave binary at $PAVE (cargo build --release -p pave-cli, or set PAVE)" >&2; exit 2; }

WORK=$(mktemp -d)
HOME_DIR="$WORK/home"
LOG="$WORK/standalone.log"
JAR="$WORK/cookies"
cleanup() {
  if [ -n "${PID:-}" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PAVE_HOME="$HOME_DIR" "$PAVE" standalone --port 0 >"$LOG" 2>&1 &
PID=$!
for _ in $(seq 1 600); do grep -q "scheduling" "$LOG" && break; sleep 0.1; done
URL=$(grep -o 'web UI at http://[^ ]*' "$LOG" | head -1 | sed 's/web UI at //; s:/$::')
PASSWORD=$(grep -o 'with password: .*' "$LOG" | head -1 | sed 's/with password: //')
[ -n "$URL" ] && [ -n "$PASSWORD" ] || { cat "$LOG" >&2; exit 1; }

# The login form carries a pre-session token (cookie + hidden field).
LOGIN_TOKEN=$(curl -s -c "$JAR" "$URL/login" | grep -o 'name="csrf_token" value="[^"]*"' | head -1 | sed 's/.*value="//; s/"$//')
curl -s -b "$JAR" -c "$JAR" -o /dev/null --data-urlencode "username=admin" --data-urlencode "password=$PASSWORD" \
  --data-urlencode "csrf_token=$LOGIN_TOKEN" "$URL/login"
CSRF=$(curl -s -b "$JAR" "$URL/dags/ml_pipeline/trigger" | grep -o 'name="csrf_token" value="[^"]*"' | head -1 | sed 's/.*value="//; s/"$//')
for i in $(seq 1 "$RUNS"); do
  ts=$(date -u -d "2026-01-01 +$i hour" +%Y-%m-%dT%H:%M)
  curl -s -b "$JAR" -o /dev/null --data-urlencode "csrf_token=$CSRF" --data-urlencode "logical_date=$ts" "$URL/dags/ml_pipeline/trigger"
done
echo "triggered $RUNS runs of ml_pipeline; waiting for them"
for _ in $(seq 1 1200); do
  active=$(curl -s -b "$JAR" "$URL/api/v1/dags/ml_pipeline/dagRuns?state=queued,running&limit=1" | grep -o '"total_entries":[0-9]*' | cut -d: -f2)
  [ "${active:-1}" = "0" ] && break
  sleep 0.5
done

echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "## 1. Page weight (bytes on the wire)"
echo
printf '| resource | identity | gzip |\n|---|---|---|\n'
size() { curl -s -b "$JAR" -o /dev/null -w '%{size_download}' "$@"; }
total_id=0; total_gz=0
row() {
  local name=$1 path=$2 a b
  a=$(size "$URL$path"); b=$(size --compressed "$URL$path")
  printf '| %s | %s | %s |\n' "$name" "$a" "$b"
  total_id=$((total_id + a)); total_gz=$((total_gz + b))
}
PAGE=/dags/ml_pipeline
row "DAG page HTML (grid tab, $RUNS runs)" "$PAGE"
# Templates escape `/` in attributes as `&#x2f;`: decode before looking.
assets() { curl -s -b "$JAR" "$URL$1" | sed 's/&#x2f;/\//g' | grep -o '/static/[^"?]*?v=[0-9a-f]*' | sort -u; }
for asset in $(assets "$PAGE"); do
  row "$asset" "$asset"
done
printf '| **DAG page, cold cache** | **%s** | **%s** |\n' "$total_id" "$total_gz"
total_id=0; total_gz=0
row "dagre (graph tab only)" "$(assets "$PAGE?tab=graph" | grep dagre | head -1)"
RUN_ID=$(curl -s -b "$JAR" "$URL/api/v1/dags/ml_pipeline/dagRuns?order_by=-id&limit=1" | grep -o '"dag_run_id":"[^"]*"' | head -1 | cut -d'"' -f4)
ENC_RUN=$(printf '%s' "$RUN_ID" | od -An -tx1 | tr -d ' \n' | sed 's/\(..\)/%\1/g')
row "DAG list HTML" "/"
row "grid fragment (poll)" "/ui/dags/ml_pipeline/grid?runs=20&expand="
row "graph JSON (poll)" "/ui/dags/ml_pipeline/graph"
row "run page HTML" "/dags/ml_pipeline/runs/$ENC_RUN"
row "task instance page HTML" "/dags/ml_pipeline/runs/$ENC_RUN/tasks/evaluate/-1"

echo
echo "## 2. Fragment latency ($REQUESTS sequential requests each, ms)"
echo
printf '| endpoint | p50 | p90 | p99 | max |\n|---|---|---|---|---|\n'
lat() {
  local name=$1 path=$2
  for _ in $(seq 1 "$REQUESTS"); do
    curl -s -b "$JAR" --compressed -o /dev/null -w '%{time_total}\n' "$URL$path"
  done | sort -n | awk -v name="$name" '{ v[NR] = $1 * 1000 }
    END { printf "| %s | %.1f | %.1f | %.1f | %.1f |\n", name, v[int(NR*0.5)], v[int(NR*0.9)], v[int(NR*0.99)], v[NR] }'
}
lat "grid fragment /ui/dags/{id}/grid" "/ui/dags/ml_pipeline/grid?runs=20&expand="
lat "DAG list fragment /ui/dags" "/ui/dags"
lat "DAG page /dags/{id}" "/dags/ml_pipeline"
lat "task instance page" "/dags/ml_pipeline/runs/$ENC_RUN/tasks/evaluate/-1"
lat "log chunk" "/ui/dags/ml_pipeline/runs/$ENC_RUN/tasks/evaluate/-1/logs/1?offset=0"
