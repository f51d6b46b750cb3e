#!/usr/bin/env bash
# Where the CPU of a `pave standalone` run goes, for two pave binaries side
# by side: the zygote's own CPU, the CPU of the children it reaped (the
# forked tasks), and pave's (scheduler, API, executor). On a noisy machine
# these split totals tell more than wall time (bench/RESULTS.md, session 9).
#
#   bench/cpu_split.sh [-r ROUNDS] BIN_A BIN_B DAG_FILE...
#
# Each round runs every DAG file once with each binary, alternating which
# goes first, in a fresh PAVE_HOME under $TMPDIR (default /dev/shm): the
# binary unpacks its own Python SDK there, so two binaries with different
# SDKs compare their SDKs too. Per run it prints the run's wall time (from
# its start to its end, as pave recorded them) and seconds of CPU; at the
# end the medians per binary and DAG file. PAVE_PYTHON picks the tasks'
# interpreter (default: python3's real executable).
#
# The zygote's CPU is read from /proc/PID/stat every 0.1 s until it exits
# (utime + stime; cutime + cstime for its reaped children), pave's by
# /usr/bin/time.
set -euo pipefail

rounds=3
if [[ "${1:-}" == "-r" ]]; then
  rounds="$2"
  shift 2
fi
if [[ $# -lt 3 ]]; then
  echo "usage: bench/cpu_split.sh [-r ROUNDS] BIN_A BIN_B DAG_FILE..." >&2
  exit 2
fi
bin_a="$(realpath "$1")"
bin_b="$(realpath "$2")"
shift 2
for f in "$bin_a" "$bin_b" "$@"; do
  [[ -e "$f" ]] || { echo "bench/cpu_split.sh: $f does not exist" >&2; exit 2; }
done
command -v /usr/bin/time >/dev/null || { echo "bench/cpu_split.sh: needs /usr/bin/time (Debian: time)" >&2; exit 2; }
export TMPDIR="${TMPDIR:-/dev/shm}"
export PAVE_PYTHON="${PAVE_PYTHON:-$(python3 -c 'import sys; print(sys._base_executable)')}"
work="$(mktemp -d "$TMPDIR/pave-cpu-split.XXXXXX")"
trap 'rm -rf "$work"' EXIT
hz="$(getconf CLK_TCK)"

# Prints "WALL ZYGOTE CHILDREN PAVE" (seconds) for one run of $1 on DAG file $2.
# Each run gets a home of its own, all removed at the end: on ext4 without a
# journal, every inode deleted in the last 60 to 300 s is scanned past by each
# new inode of its block group, so deleting a run's home (some 4000 files
# for 1000 tasks) before the next run made each later run slower than the
# one before (bench/RESULTS.md, session 10).
one_run() {
  local bin="$1" dag="$2" home stat="$work/zygote.stat"
  home="$(mktemp -d "$work/home.XXXXXX")"
  rm -rf "$work/dags" "$stat"
  mkdir -p "$home" "$work/dags"
  cp "$dag" "$work/dags/"
  (
    while true; do
      for pid in $(pgrep -f "pave.zygote --socket $home" || true); do
        parent="$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null || true)"
        # The zygote, not one of its forked children (same command line).
        if [[ -n "$parent" ]] && ! grep -qs pave.zygote "/proc/$parent/cmdline"; then
          cat "/proc/$pid/stat" > "$stat.tmp" 2>/dev/null && [[ -s "$stat.tmp" ]] && mv "$stat.tmp" "$stat"
        fi
      done
      sleep 0.1
    done
  ) &
  local poller=$!
  PAVE_HOME="$home" /usr/bin/time -f "%U %S" -o "$work/pave.time" "$bin" standalone --dags "$work/dags" \
    --port 0 --parallelism 32 --trigger-all --exit-when-idle > "$work/pave.log" 2>&1 || true
  kill "$poller" 2>/dev/null || true
  wait "$poller" 2>/dev/null || true
  local dag_id
  dag_id="$(sed -n 's/^pave standalone: triggered \(.*\) run .*/\1/p' "$work/pave.log" | head -n 1)"
  [[ -n "$dag_id" ]] || { echo "no DAG run was triggered" >&2; return 1; }
  PAVE_HOME="$home" "$bin" dags runs "$dag_id" --json | python3 -c '
import datetime, json, sys
stat_path, time_path, hz = sys.argv[1], sys.argv[2], int(sys.argv[3])
run = json.load(sys.stdin)[0]
if run["state"] != "success" or not run.get("end_date"):
    sys.exit("the run ended " + run["state"])
f = datetime.datetime.fromisoformat
wall = (f(run["end_date"]) - f(run["start_date"])).total_seconds()
try:
    stat = open(stat_path).read()
    fields = stat[stat.rindex(")") + 2:].split()
    zygote = (int(fields[11]) + int(fields[12])) / hz
    children = (int(fields[13]) + int(fields[14])) / hz
except (OSError, ValueError):
    zygote = children = float("nan")  # no zygote seen (pre-forking off?)
user, system = map(float, open(time_path).read().split()[-2:])
print(f"{wall:.2f} {zygote:.2f} {children:.2f} {user + system:.2f}")
' "$stat" "$work/pave.time" "$hz"
}

results="$work/results"
: > "$results"
echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; tasks on $PAVE_PYTHON"
printf '%-6s %-28s %5s %8s %8s %9s %7s %7s\n' bin dag round wall zygote children pave total
for round in $(seq "$rounds"); do
  order="A B"
  (( round % 2 == 0 )) && order="B A"
  for dag in "$@"; do
    for which in $order; do
      bin="$bin_a"
      [[ "$which" == B ]] && bin="$bin_b"
      if ! line="$(one_run "$bin" "$dag")"; then
        echo "bench/cpu_split.sh: $which on $dag failed; its log:" >&2
        tail -n 20 "$work/pave.log" >&2
        exit 1
      fi
      read -r wall zygote children pave <<< "$line"
      total="$(python3 -c "print(f'{$zygote + $children + $pave:.2f}')")"
      printf '%-6s %-28s %5s %8s %8s %9s %7s %7s\n' "$which" "$(basename "$dag")" "$round" "$wall" "$zygote" "$children" "$pave" "$total"
      echo "$which $(basename "$dag") $wall $zygote $children $pave $total" >> "$results"
    done
  done
done
echo "== medians (seconds; A = $bin_a, B = $bin_b)"
python3 - "$results" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
for key in sorted({(r[0], r[1]) for r in rows}, key=lambda k: (k[1], k[0])):
    got = [list(map(float, r[2:])) for r in rows if (r[0], r[1]) == key]
    med = [statistics.median(col) for col in zip(*got)]
    print(f"{key[0]:6} {key[1]:28} wall {med[0]:.2f}  zygote {med[1]:.2f}  children {med[2]:.2f}  "
          f"pave {med[3]:.2f}  total {med[4]:.2f}")
EOF
