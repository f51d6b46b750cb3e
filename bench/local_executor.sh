#!/usr/bin/env bash
# End-to-end benchmark of `pave dags test` with the local executor.
#
# Generates YAML DAGs into a temporary folder and times `pave dags test` on
# each, side by side with baselines that spawn the same processes directly,
# in the same run (the machine is shared and noisy: compare within one run).
#
#   (a) fanout: 1000 independent tasks, each the command `true`
#   (b) chain:  100 tasks `true`, each downstream of the previous one
#   (c) mapped: one task `true` mapped over a literal list of 1000 inputs
#   (d) one:    a single task `true` (pave's fixed cost per invocation)
#   (e) examples/ml_pipeline.yaml
#   (f) py_fanout: 100 independent no-op Python `@task`s (python3 -m pave.runtime each)
#   (g) py_chain:  20 no-op Python `@task`s in sequence
#
# Command tasks go to the supervision server (docs/local-executor.md); the
# fan-out and the chain also run with PAVE_SUPERVISION_SERVER=0 (a
# supervisor process per attempt), for the same-run comparison.
#
# Baselines: 1000 x `true` and 1000 x `bash -c true` through `xargs -P $PAR`;
# 1000 x `pave-supervise -- bash -c true` (the supervisor the local executor
# starts, when it lies next to `pave`) and 1000 x `pave supervise -- bash -c
# true` (the same code in the full binary, the fallback) through `xargs -P
# $PAR`: the per-task process cost pave pays, without the scheduler; 100 x
# `true`, `bash -c true` and the supervisors one after the other (the bare
# chain). For the Python DAGs: `python3 -c pass` x100 through `xargs -P
# $PAR`, and x20 one after the other.
#
# Usage: bench/local_executor.sh [RUNS]   (default 5; median reported)
# Env:   PAVE=path/to/pave (default target/release/pave, built if missing);
#        its sibling pave-supervise is used for the supervisor baselines
#        (else target/release/pave-supervise)
#        PAR=32 (parallelism of `pave dags test --parallelism` and of the
#        xargs baselines)
#        PY=python3 (the Python cases are skipped if it cannot import pave's SDK)
#        NO_HYPERFINE=1 to force the date +%s%N loop.
# Uses hyperfine when installed, else a loop with `date +%s%N`.
# Peak RSS of pave comes from `/usr/bin/time -v` (install `time` if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${1:-5}"
PAR="${PAR:-32}"
PAVE="${PAVE:-target/release/pave}"
if [[ ! -x "$PAVE" ]]; then
  cargo build --release -p pave-cli
fi
PAVE="$(realpath "$PAVE")"
SMALL_SUP="$(dirname "$PAVE")/pave-supervise"
if [[ ! -x "$SMALL_SUP" ]]; then
  SMALL_SUP="$(realpath target/release/pave-supervise)"
fi
PY="${PY:-python3}"
HAVE_PY=""
if PYTHONPATH="$PWD/sdk/python" "$PY" -c "import pave" >/dev/null 2>&1; then
  HAVE_PY=1
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/pave-bench.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export TMPDIR="$WORK"   # pave dags test makes its throwaway home under TMPDIR

# ------------------------------------------------------------------ DAGs

gen_fanout() {
  echo "dag_id: bench_fanout"
  echo "max_active_tasks: 10000"
  echo "tasks:"
  for i in $(seq -w 0 999); do
    printf '  t%s: {command: "true"}\n' "$i"
  done
}
gen_chain() {
  echo "dag_id: bench_chain"
  echo "max_active_tasks: 10000"
  echo "tasks:"
  printf '  t000: {command: "true"}\n'
  for i in $(seq 1 99); do
    printf '  t%03d: {command: "true", upstream: t%03d}\n' "$i" "$((i - 1))"
  done
}
gen_mapped() {
  echo "dag_id: bench_mapped"
  echo "max_active_tasks: 10000"
  echo "tasks:"
  echo "  m:"
  echo "    command: \"true\""
  printf '    expand: {x: [%s]}\n' "$(seq -s ', ' 0 999)"
}
gen_one() {
  echo "dag_id: bench_one"
  echo "tasks:"
  echo '  t: {command: "true"}'
}
gen_py_fanout() {
  cat <<'PYDAG'
from pave import dag, task


@dag(dag_id="bench_py_fanout", schedule=None, max_active_tasks=10000)
def bench_py_fanout():
    for i in range(100):
        @task(task_id=f"t{i:03d}")
        def noop():
            return None

        noop()


bench_py_fanout()
PYDAG
}
gen_py_chain() {
  cat <<'PYDAG'
from pave import dag, task


@dag(dag_id="bench_py_chain", schedule=None, max_active_tasks=10000)
def bench_py_chain():
    prev = None
    for i in range(20):
        @task(task_id=f"t{i:03d}")
        def noop():
            return None

        cur = noop()
        if prev is not None:
            prev >> cur
        prev = cur


bench_py_chain()
PYDAG
}
gen_py_fanout > "$WORK/py_fanout.py"
gen_py_chain > "$WORK/py_chain.py"
gen_fanout > "$WORK/fanout.yaml"
gen_chain > "$WORK/chain.yaml"
gen_mapped > "$WORK/mapped.yaml"
gen_one > "$WORK/one.yaml"
cp examples/ml_pipeline.yaml "$WORK/ml_pipeline.yaml"

# A check that every DAG runs and every task instance succeeds (once).
check() {
  local file="$1" want="$2" out n
  out="$("$PAVE" dags test "$file" --json --parallelism "$PAR")"
  n="$(grep -o '"state":"success"' <<<"$out" | wc -l)"
  # one of the "success" states is the run's own
  if [[ "$n" -ne $((want + 1)) ]]; then
    echo "check failed for $file: $n success states, wanted $((want + 1))" >&2
    echo "$out" | head -c 2000 >&2
    exit 1
  fi
}
check "$WORK/one.yaml" 1
check "$WORK/fanout.yaml" 1000
check "$WORK/chain.yaml" 100
check "$WORK/mapped.yaml" 1000
if [[ -n "$HAVE_PY" ]]; then
  check "$WORK/py_fanout.py" 100
  check "$WORK/py_chain.py" 20
fi

# Baseline: the supervisor pave runs per task, called directly (no scheduler).
SUP="$WORK/sup"
mkdir -p "$SUP"
SUPERVISE="\"$PAVE\" supervise --result \"$SUP/{}.result\" --log \"$SUP/{}.log\" -- bash -c true"
SMALL_SUPERVISE="\"$SMALL_SUP\" --result \"$SUP/{}.result\" --log \"$SUP/{}.log\" -- bash -c true"

LOAD_START="$(cut -d" " -f1-3 /proc/loadavg)"
declare -a NAMES CMDS
add() { NAMES+=("$1"); CMDS+=("$2"); }
DT="\"$PAVE\" dags test --parallelism $PAR"
add one          "$DT \"$WORK/one.yaml\" --json >/dev/null"
add fanout       "$DT \"$WORK/fanout.yaml\" --json >/dev/null"
add bare_true_x1000_P$PAR      "seq 1000 | xargs -P $PAR -n 1 /bin/true"
add bare_bash_x1000_P$PAR      "seq 1000 | xargs -P $PAR -n 1 bash -c true"
add bare_small_supervise_x1000_P$PAR "rm -f \"$SUP\"/*; seq 1000 | xargs -P $PAR -I{} $SMALL_SUPERVISE"
add bare_supervise_x1000_P$PAR "rm -f \"$SUP\"/*; seq 1000 | xargs -P $PAR -I{} $SUPERVISE"
add fanout_no_server "PAVE_SUPERVISION_SERVER=0 $DT \"$WORK/fanout.yaml\" --json >/dev/null"
add chain        "$DT \"$WORK/chain.yaml\" --json >/dev/null"
add chain_no_server "PAVE_SUPERVISION_SERVER=0 $DT \"$WORK/chain.yaml\" --json >/dev/null"
add bare_true_chain100        "for i in \$(seq 100); do /bin/true; done"
add bare_bash_chain100        "for i in \$(seq 100); do bash -c true; done"
add bare_small_supervise_chain100 "rm -f \"$SUP\"/*; seq 100 | xargs -P 1 -I{} $SMALL_SUPERVISE"
add bare_supervise_chain100   "rm -f \"$SUP\"/*; seq 100 | xargs -P 1 -I{} $SUPERVISE"
add mapped       "$DT \"$WORK/mapped.yaml\" --json >/dev/null"
add ml_pipeline  "$DT \"$WORK/ml_pipeline.yaml\" --json >/dev/null"
if [[ -n "$HAVE_PY" ]]; then
  add py_fanout100   "$DT \"$WORK/py_fanout.py\" --json >/dev/null"
  add bare_python_x100_P$PAR "seq 100 | xargs -P $PAR -n 1 $PY -c pass"
  add py_chain20     "$DT \"$WORK/py_chain.py\" --json >/dev/null"
  add bare_python_chain20    "for i in \$(seq 20); do $PY -c pass; done"
fi

declare -A MEDIAN MIN MAX
if command -v hyperfine >/dev/null 2>&1 && [[ -z "${NO_HYPERFINE:-}" ]]; then
  TOOL="hyperfine $(hyperfine --version | awk '{print $2}')"
  args=()
  for i in "${!NAMES[@]}"; do args+=(-n "${NAMES[$i]}" "${CMDS[$i]}"); done
  hyperfine --style basic --warmup 1 --runs "$RUNS" --export-json "$WORK/hf.json" "${args[@]}" >&2
  for i in "${!NAMES[@]}"; do
    MEDIAN[${NAMES[$i]}]="$(jq -r ".results[$i].median" "$WORK/hf.json")"
    MIN[${NAMES[$i]}]="$(jq -r ".results[$i].min" "$WORK/hf.json")"
    MAX[${NAMES[$i]}]="$(jq -r ".results[$i].max" "$WORK/hf.json")"
  done
else
  TOOL="bash loop with date +%s%N"
  # Interleave the commands (round-robin) so noise hits them all alike.
  declare -A TIMES
  for i in "${!NAMES[@]}"; do bash -c "${CMDS[$i]}"; done   # warm-up
  for ((r = 0; r < RUNS; r++)); do
    for i in "${!NAMES[@]}"; do
      t0=$(date +%s%N)
      bash -c "${CMDS[$i]}"
      t1=$(date +%s%N)
      TIMES[${NAMES[$i]}]+="$(( t1 - t0 )) "
    done
  done
  for n in "${NAMES[@]}"; do
    sorted=($(tr ' ' '\n' <<<"${TIMES[$n]}" | grep -v '^$' | sort -n))
    k=${#sorted[@]}
    MEDIAN[$n]="$(awk -v ns="${sorted[$((k / 2))]}" 'BEGIN{printf "%.6f", ns/1e9}')"
    MIN[$n]="$(awk -v ns="${sorted[0]}" 'BEGIN{printf "%.6f", ns/1e9}')"
    MAX[$n]="$(awk -v ns="${sorted[$((k - 1))]}" 'BEGIN{printf "%.6f", ns/1e9}')"
  done
fi

# ------------------------------------------------------------------ peak RSS
declare -A RSS
RSS_DAGS=(one fanout chain mapped ml_pipeline)
for d in "${RSS_DAGS[@]}"; do
  if [[ -x /usr/bin/time ]]; then
    RSS[$d]="$( { /usr/bin/time -v "$PAVE" dags test --parallelism "$PAR" "$WORK/$d.yaml" --json >/dev/null; } 2>&1 \
      | awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2/1024}')"
  else
    RSS[$d]="n/a"
  fi
done

# ------------------------------------------------------------------ report
m() { echo "${MEDIAN[$1]}"; }
calc() { awk "BEGIN{printf \"%.3f\", $1}"; }

echo
echo "## local executor: pave dags test vs bare spawns ($TOOL, $RUNS runs, median; parallelism $PAR)"
echo
echo "load average at the start: $LOAD_START"
echo
echo "| command | median s | min s | max s |"
echo "|---|---|---|---|"
for n in "${NAMES[@]}"; do
  printf '| %s | %.3f | %.3f | %.3f |\n' "$n" "${MEDIAN[$n]}" "${MIN[$n]}" "${MAX[$n]}"
done
echo
echo "| derived | value |"
echo "|---|---|"
echo "| fanout 1000: ms per task above bare \`true\` x1000 -P$PAR | $(calc "($(m fanout) - $(m bare_true_x1000_P$PAR)) * 1000 / 1000") |"
echo "| fanout 1000: ms per task above bare \`bash -c true\` x1000 -P$PAR | $(calc "($(m fanout) - $(m bare_bash_x1000_P$PAR)) * 1000 / 1000") |"
echo "| fanout 1000: ms per task above \`pave-supervise\` x1000 -P$PAR (scheduler + store only) | $(calc "($(m fanout) - $(m bare_small_supervise_x1000_P$PAR)) * 1000 / 1000") |"
echo "| fanout 1000: ms per task above \`pave supervise\` x1000 -P$PAR | $(calc "($(m fanout) - $(m bare_supervise_x1000_P$PAR)) * 1000 / 1000") |"
echo "| supervisor cost per task: \`pave-supervise\` / \`pave supervise\` x1000 -P$PAR above bare \`bash -c true\` (ms) | $(calc "($(m bare_small_supervise_x1000_P$PAR) - $(m bare_bash_x1000_P$PAR)) * 1000 / 1000") / $(calc "($(m bare_supervise_x1000_P$PAR) - $(m bare_bash_x1000_P$PAR)) * 1000 / 1000") |"
echo "| fanout 1000 minus fixed cost (one-task DAG): ms per task above bare \`true\` | $(calc "($(m fanout) - $(m one) - $(m bare_true_x1000_P$PAR)) * 1000 / 1000") |"
echo "| fanout 1000 with a supervisor process per attempt (\`PAVE_SUPERVISION_SERVER=0\`): ms per task above bare \`bash -c true\` | $(calc "($(m fanout_no_server) - $(m bare_bash_x1000_P$PAR)) * 1000 / 1000") |"
echo "| mapped 1000: ms per task above bare \`true\` x1000 -P$PAR | $(calc "($(m mapped) - $(m bare_true_x1000_P$PAR)) * 1000 / 1000") |"
echo "| chain 100: ms per hop above bare \`true\` chain | $(calc "($(m chain) - $(m bare_true_chain100)) * 1000 / 100") |"
echo "| chain 100: ms per hop above bare \`bash -c true\` chain | $(calc "($(m chain) - $(m bare_bash_chain100)) * 1000 / 100") |"
echo "| chain 100 with a supervisor process per attempt: ms per hop above bare \`bash -c true\` chain | $(calc "($(m chain_no_server) - $(m bare_bash_chain100)) * 1000 / 100") |"
echo "| chain 100: ms per hop above \`pave-supervise\` chain (scheduler + store only) | $(calc "($(m chain) - $(m bare_small_supervise_chain100)) * 1000 / 100") |"
echo "| chain 100: ms per hop above \`pave supervise\` chain | $(calc "($(m chain) - $(m bare_supervise_chain100)) * 1000 / 100") |"
if [[ -n "$HAVE_PY" ]]; then
  echo "| Python fanout 100: ms per task above bare \`$PY -c pass\` x100 -P$PAR | $(calc "($(m py_fanout100) - $(m bare_python_x100_P$PAR)) * 1000 / 100") |"
  echo "| Python chain 20: ms per hop above bare \`$PY -c pass\` x20 | $(calc "($(m py_chain20) - $(m bare_python_chain20)) * 1000 / 20") |"
fi
echo "| one-task DAG (fixed cost of \`pave dags test\`) s | $(calc "$(m one)") |"
echo
echo "| DAG | pave peak RSS MiB (/usr/bin/time -v) |"
echo "|---|---|"
for d in "${RSS_DAGS[@]}"; do echo "| $d | ${RSS[$d]} |"; done

# ------------------------------------------------------------------ chain hop breakdown
# From the task instances' own timestamps (one extra run of the chain):
# start_date is taken just before the supervisor is spawned, end_date when
# the scheduler handles the completion, so per hop
#   in-attempt  = end(i) - start(i)    (spawn, supervisor, bash, watcher, event)
#   scheduler   = start(i+1) - end(i)  (store the result, decide, admit, queue, spawn call)
if command -v python3 >/dev/null 2>&1; then
  "$PAVE" dags test --parallelism "$PAR" "$WORK/chain.yaml" --json > "$WORK/chain.json"
  python3 - "$WORK/chain.json" <<'PY'
import json, sys, statistics
from datetime import datetime
tis = sorted(json.load(open(sys.argv[1]))["task_instances"], key=lambda t: t["task_id"])
ts = lambda s: datetime.fromisoformat(s).timestamp()
inside = [ts(t["end_date"]) - ts(t["start_date"]) for t in tis]
gaps = [ts(b["start_date"]) - ts(a["end_date"]) for a, b in zip(tis, tis[1:])]
print()
print("| chain 100, one run: per hop | median ms | p90 ms |")
print("|---|---|---|")
for name, xs in (("in-attempt (end - start)", inside), ("scheduler (next start - end)", gaps)):
    xs = sorted(xs)
    print(f"| {name} | {statistics.median(xs)*1e3:.2f} | {xs[int(len(xs)*0.9)]*1e3:.2f} |")
PY
fi
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
