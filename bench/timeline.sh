#!/usr/bin/env bash
# How a `pave standalone` run of one DAG file unfolds in time: which
# process does what, millisecond by millisecond (bench/README.md,
# "bench/timeline.sh"; bench/RESULTS.md, session 13).
#
#   bench/timeline.sh [-b BUCKET_MS] [-f FROM_MS] [-n LINES] PAVE_BIN DAG_FILE
#
# Runs the DAG file once under `perf record -a` with a few tracepoints
# (process fork and exit, connect, sendmsg, sendto, wait4), then prints:
# the run's wall time, its task instances grouped by identical start and
# end times (batches), and a strip of events per bucket from FROM_MS after
# the first hand-over: C = pave connects to a zygote, M = pave sends a
# request, F = the zygote forks a child, X = a child exits, S = the zygote
# sends (a pid, an exit line), W = the zygote reaps (wait4). Needs perf
# and tracepoint access (root, or kernel.perf_event_paranoid <= 1).
# PAVE_PYTHON picks the tasks' interpreter, as for bench/cpu_split.sh.
set -euo pipefail

bucket=2
from=300
lines=60
while getopts "b:f:n:" opt; do
  case "$opt" in
    b) bucket="$OPTARG" ;;
    f) from="$OPTARG" ;;
    n) lines="$OPTARG" ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
if [[ $# -ne 2 ]]; then
  echo "usage: bench/timeline.sh [-b BUCKET_MS] [-f FROM_MS] [-n LINES] PAVE_BIN DAG_FILE" >&2
  exit 2
fi
bin="$(realpath "$1")"
dag="$(realpath "$2")"
command -v perf >/dev/null || { echo "bench/timeline.sh: needs perf (Debian: linux-perf)" >&2; exit 2; }
export TMPDIR="${TMPDIR:-/dev/shm}"
export PAVE_PYTHON="${PAVE_PYTHON:-$(python3 -c 'import sys; print(sys._base_executable)')}"
work="$(mktemp -d "$TMPDIR/pave-timeline.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/home" "$work/dags"
cp "$dag" "$work/dags/"

events=sched:sched_process_fork,sched:sched_process_exit
for call in connect sendmsg sendto wait4; do
  events="$events,syscalls:sys_enter_$call"
done
PAVE_HOME="$work/home" perf record -q -a -e "$events" -o "$work/perf.data" -- \
  "$bin" standalone --dags "$work/dags" --port 0 --parallelism 32 --trigger-all \
  --exit-when-idle > "$work/pave.log" 2>&1 || { tail -n 20 "$work/pave.log" >&2; exit 1; }
perf script -i "$work/perf.data" -F comm,pid,tid,time,event,trace > "$work/events.txt" 2>/dev/null
dag_id="$(sed -n 's/^pave standalone: triggered \(.*\) run .*/\1/p' "$work/pave.log" | head -n 1)"
PAVE_HOME="$work/home" "$bin" dags runs "$dag_id" --json > "$work/runs.json"
PAVE_HOME="$work/home" "$bin" tasks list "$dag_id" --json > "$work/tis.json"

python3 - "$work" "$bucket" "$from" "$lines" <<'EOF'
import collections, datetime, json, os, sys

work, bucket, start_ms, lines = sys.argv[1], float(sys.argv[2]) / 1000, float(sys.argv[3]), int(sys.argv[4])
run = json.load(open(os.path.join(work, "runs.json")))[0]
when = datetime.datetime.fromisoformat
print(f"run {run['state']}: {(when(run['end_date']) - when(run['start_date'])).total_seconds():.3f} s")

# Batches: task instances whose start (end) times lie within 3 ms of the previous one.
tis = json.load(open(os.path.join(work, "tis.json")))["task_instances"]
rows = [(when(t["start_date"]).timestamp(), when(t["end_date"]).timestamp())
        for t in tis if t.get("start_date") and t.get("end_date")]
if rows:
    t0 = min(s for s, _ in rows)
    for name, times in (("starts", sorted(s - t0 for s, _ in rows)), ("ends", sorted(e - t0 for _, e in rows))):
        groups = [[times[0]]]
        for t in times[1:]:
            if t - groups[-1][-1] < 0.003:
                groups[-1].append(t)
            else:
                groups.append([t])
        sizes = [len(g) for g in groups]
        print(f"{name}: {len(groups)} groups, median size {sorted(sizes)[len(sizes) // 2]}, "
              f"first at " + ", ".join(f"{g[0] * 1000:.1f}" for g in groups[:8]) + " ms")

events = []
for line in open(os.path.join(work, "events.txt")):
    parts = line.split()
    if len(parts) < 4:
        continue
    comm, pid, t, event = parts[0], int(parts[1].split("/")[0]), float(parts[2].rstrip(":")), parts[3].rstrip(":")
    events.append((t, comm, pid, event))
forks = collections.Counter(pid for _, comm, pid, event in events
                            if comm == "python" and event == "sched:sched_process_fork")
if not forks:
    sys.exit("no forked Python task seen (is pre-forking off?)")
zygote = forks.most_common(1)[0][0]
code = {"syscalls:sys_enter_connect": "C", "syscalls:sys_enter_sendmsg": "M",
        "sched:sched_process_fork": "F", "sched:sched_process_exit": "X",
        "syscalls:sys_enter_sendto": "S", "syscalls:sys_enter_wait4": "W"}
first = next(t for t, comm, _, event in events if event == "syscalls:sys_enter_connect" and comm != "python")
strip = collections.defaultdict(str)
for t, comm, pid, event in events:
    c = code.get(event)
    if c is None or t < first:
        continue
    if c in "FX" and comm != "python":
        continue  # pave's own threads
    if c in "SW" and pid != zygote:
        continue
    if c in "CM" and comm == "python":
        continue
    strip[int((t - first) / bucket)] += c
lo = int(start_ms / 1000 / bucket)
for b in range(lo, lo + lines):
    print(f"{b * bucket * 1000:8.1f} ms  {strip.get(b, '')}")
EOF
