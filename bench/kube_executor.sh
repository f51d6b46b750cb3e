#!/usr/bin/env bash
# The Kubernetes executor against the simulated cluster (in process, pods
# succeed at once): pods created and tracked per second, and the latency
# from an upstream task's success to its downstream pod's create.
# See bench/README.md ("Kubernetes executor") and bench/RESULTS.md.
#
#   bash bench/kube_executor.sh [N_PODS] [CHAIN_LENGTH] [PROFILE]
#   defaults: 1000 50 release
set -euo pipefail
n="${1:-1000}"
chain="${2:-50}"
profile="${3:-release}"
cd "$(dirname "$0")/.."
flag=()
[ "$profile" = release ] && flag=(--release)
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); nproc: $(nproc); profile: $profile"
cargo run -q "${flag[@]}" -p pave-kube-executor --example kube_bench -- "$n" "$chain"
