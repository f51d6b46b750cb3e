#!/usr/bin/env bash
# Python tasks end to end (`pave dags test`), with and without the
# pre-forked interpreter (docs/python-runtime.md), side by side with bare
# `python3 -c pass` spawns at the same parallelism, in the same run.
#
#   py_fanout   N no-op `@task`s, independent (default N=1000)
#   py_chain40  40 no-op `@task`s in sequence (the "under 0.5 s" target)
#   py_chain100 100 no-op `@task`s in sequence (per-hop latency)
#
# Each pave case runs with the zygote (PAVE_PYTHON_PREFORK unset) and
# without it (PAVE_PYTHON_PREFORK=0: `python3 -m pave.runtime` per attempt).
# Baselines: N x `python3 -c pass` through `xargs -P $PAR`; 40 and 100 x
# `python3 -c pass` one after the other.
#
# Usage: bench/python_tasks.sh [RUNS]   (default 3; median reported)
# Env:   PAVE=path/to/pave (default target/release/pave, built if missing)
#        PAR=32 (parallelism of `pave dags test` and of xargs)
#        N=1000 (fan-out width)
#        PY=python3 (also what pave's tasks run: PAVE_PYTHON=$PY)
#        SKIP_NOPREFORK=1 skips the (slow) PAVE_PYTHON_PREFORK=0 fan-out
#        PAVE_BEFORE=path/to/another/pave adds its py_* cases (with the
#          zygote), suffixed `_before`, to the same interleaved rounds: a
#          before/after comparison under the same noise (copy that binary and
#          its sibling pave-supervise somewhere private first)
# The commands are interleaved round-robin (one warm-up round first), so
# the machine's noise hits them all alike; compare ratios within one run.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${1:-3}"
PAR="${PAR:-32}"
N="${N:-1000}"
PY="${PY:-python3}"
PAVE="${PAVE:-target/release/pave}"
if [[ ! -x "$PAVE" ]]; then
  cargo build --release -p pave-cli
fi
PAVE="$(realpath "$PAVE")"
PAVE_BEFORE="${PAVE_BEFORE:+$(realpath "$PAVE_BEFORE")}"
# pave's Python tasks and the baselines run the same interpreter. A pyenv
# `python3` is a shell-script shim that costs ~200 ms per start: pass the
# real executable (PY="$(python3 -c 'import sys; print(sys.executable)')")
# to measure the interpreter rather than the shim.
export PAVE_PYTHON="$PY"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/pave-pybench.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export TMPDIR="$WORK"   # pave dags test makes its throwaway home under TMPDIR

gen_fanout() {
  cat <<PYDAG
from pave import dag, task


@dag(dag_id="bench_py_fanout", schedule=None, max_active_tasks=100000)
def bench_py_fanout():
    @task
    def noop():
        return None

    for i in range($1):
        noop.override(task_id=f"t{i:04d}")()


bench_py_fanout()
PYDAG
}
gen_chain() {
  cat <<PYDAG
from pave import chain, dag, task


@dag(dag_id="bench_py_chain$1", schedule=None)
def bench_py_chain():
    @task
    def noop():
        return None

    chain(*[noop.override(task_id=f"t{i:04d}")() for i in range($1)])


bench_py_chain()
PYDAG
}
gen_fanout "$N" > "$WORK/py_fanout.py"
gen_chain 40 > "$WORK/py_chain40.py"
gen_chain 100 > "$WORK/py_chain100.py"

check() {
  local file="$1" want="$2" out n
  out="$("$PAVE" dags test "$file" --json --parallelism "$PAR")"
  n="$(grep -o '"state":"success"' <<<"$out" | wc -l)"
  if [[ "$n" -ne $((want + 1)) ]]; then
    echo "check failed for $file: $n success states, wanted $((want + 1))" >&2
    echo "$out" | head -c 2000 >&2
    exit 1
  fi
}
check "$WORK/py_chain40.py" 40
check "$WORK/py_fanout.py" "$N"
PAVE_PYTHON_PREFORK=0 check "$WORK/py_chain40.py" 40
if [[ -n "$PAVE_BEFORE" ]]; then
  PAVE="$PAVE_BEFORE" check "$WORK/py_chain40.py" 40
fi

LOAD_START="$(cut -d" " -f1-3 /proc/loadavg)"
declare -a NAMES CMDS
add() { NAMES+=("$1"); CMDS+=("$2"); }
DT="\"$PAVE\" dags test --json --parallelism $PAR"
OFF="PAVE_PYTHON_PREFORK=0"
add "py_fanout$N"                "$DT \"$WORK/py_fanout.py\" >/dev/null"
add "bare_python_x${N}_P$PAR"    "seq $N | xargs -P $PAR -n 1 $PY -c pass"
if [[ -z "${SKIP_NOPREFORK:-}" ]]; then
  add "py_fanout${N}_noprefork"  "$OFF $DT \"$WORK/py_fanout.py\" >/dev/null"
fi
add py_chain40                   "$DT \"$WORK/py_chain40.py\" >/dev/null"
add py_chain40_noprefork         "$OFF $DT \"$WORK/py_chain40.py\" >/dev/null"
add bare_python_chain40          "for i in \$(seq 40); do $PY -c pass; done"
add py_chain100                  "$DT \"$WORK/py_chain100.py\" >/dev/null"
add bare_python_chain100         "for i in \$(seq 100); do $PY -c pass; done"
if [[ -n "$PAVE_BEFORE" ]]; then
  DTB="\"$PAVE_BEFORE\" dags test --json --parallelism $PAR"
  add "py_fanout${N}_before"     "$DTB \"$WORK/py_fanout.py\" >/dev/null"
  add py_chain40_before          "$DTB \"$WORK/py_chain40.py\" >/dev/null"
  add py_chain100_before         "$DTB \"$WORK/py_chain100.py\" >/dev/null"
fi

declare -A TIMES MEDIAN MIN MAX
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

m() { echo "${MEDIAN[$1]}"; }
calc() { awk "BEGIN{printf \"%.3f\", $1}"; }
echo
echo "## Python tasks: pave dags test vs bare python ($RUNS runs, median; parallelism $PAR; $(nproc) CPUs)"
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
echo "| **fan-out $N / bare \`$PY -c pass\` x$N -P$PAR (target <= 2)** | $(calc "$(m py_fanout$N) / $(m bare_python_x${N}_P$PAR)") |"
if [[ -z "${SKIP_NOPREFORK:-}" ]]; then
  echo "| fan-out $N without the zygote / bare | $(calc "$(m py_fanout${N}_noprefork) / $(m bare_python_x${N}_P$PAR)") |"
fi
echo "| fan-out $N: ms per task above bare | $(calc "($(m py_fanout$N) - $(m bare_python_x${N}_P$PAR)) * 1000 / $N") |"
echo "| **chain 40 end to end, s (target < 0.5)** | $(calc "$(m py_chain40)") |"
echo "| chain 40 without the zygote, s | $(calc "$(m py_chain40_noprefork)") |"
echo "| chain 100: ms per hop | $(calc "$(m py_chain100) * 1000 / 100") |"
echo "| chain 100: ms per hop above bare \`$PY -c pass\` chain | $(calc "($(m py_chain100) - $(m bare_python_chain100)) * 1000 / 100") |"
if [[ -n "$PAVE_BEFORE" ]]; then
  echo "| before: fan-out $N / bare | $(calc "$(m py_fanout${N}_before) / $(m bare_python_x${N}_P$PAR)") |"
  echo "| before: chain 40 end to end, s | $(calc "$(m py_chain40_before)") |"
  echo "| before: chain 100: ms per hop | $(calc "$(m py_chain100_before) * 1000 / 100") |"
  echo "| chain 40 after / before | $(calc "$(m py_chain40) / $(m py_chain40_before)") |"
  echo "| chain 100 after / before | $(calc "$(m py_chain100) / $(m py_chain100_before)") |"
  echo "| fan-out $N after / before | $(calc "$(m py_fanout$N) / $(m py_fanout${N}_before)") |"
fi
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
