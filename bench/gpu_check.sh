#!/usr/bin/env bash
# The GPU checks in one call (about 8 minutes on one H200, 16 cores): a Ray MCL job with a bf16 GPU worker and the
# faiss-GPU clustering actor, the overhead benchmark and the data-scale throughput rows on this machine's cores.
# Results go to bench/results/gpu_*.json (MCL_BENCH_PREFIX keeps the CPU results of the same benchmarks intact).
# Usage (repository root, the package installed):  bash bench/gpu_check.sh
set -uo pipefail
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 MCL_BENCH_PREFIX=gpu_
status=0
run() { echo "== $*"; timeout "$1" "${@:2}" || { echo "!! failed ($?): ${*:2}"; status=1; }; }
run 240 python -m bench.gpu_check
run 150 python -m bench.overhead --quick
run 120 python -m bench.data_scale --sizes 100000 --steps 20 --repeats 1
exit $status
