#!/usr/bin/env bash
# The GPU path, measured (issue 23 §2): run on a machine with a CUDA GPU, from the repository root.
#   bash benchmarks/gpu_check.sh            # under 8 minutes; writes benchmarks/results/gpu-check-*.md
# Needs the data folder in METABENCH_DATA (Omniglot). Without CUDA the GPU sections are skipped
# with a message and the rest runs on the CPU. See benchmarks/gpu_check.py for what is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
export GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736}"
exec timeout 480 python benchmarks/gpu_check.py "$@"
