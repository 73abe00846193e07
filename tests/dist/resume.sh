#!/usr/bin/env bash
# A run of the main job stopped after epoch 1 and resumed from its checkpoint
# ends with the same bits as one never stopped (parameters and buffers by
# their fingerprint, and every epoch's metrics), on one process and on 2
# ranks (each rank's dropout generators and batch-norm statistics saved).
# Usage: resume.sh MPIEXEC TRAIN_BINARY WORKDIR
set -euo pipefail
mpiexec=$1 train=$2 work=$3
rm -rf "$work" && mkdir -p "$work" && cd "$work"
common=(--subset 300 --batch-size 32 --epochs 3 --threads 1)
check() {
    local label=$1; shift
    "$@" "${common[@]}" --out full >full.log 2>&1 || { cat full.log; exit 1; }
    "$@" "${common[@]}" --out part --stop-after 1 >part1.log 2>&1 || { cat part1.log; exit 1; }
    grep -q "stopped after epoch 1" part1.log || { echo "[resume.sh] $label: no stop after epoch 1"; cat part1.log; exit 1; }
    cp part/checkpoint.tgckpt epoch1.tgckpt
    "$@" "${common[@]}" --out part --resume epoch1.tgckpt >part2.log 2>&1 || { cat part2.log; exit 1; }
    local a b
    a=$(grep "fingerprint" full.log) b=$(grep "fingerprint" part2.log)
    echo "[resume.sh] $label: uninterrupted '$a', resumed '$b'"
    [[ -n "$a" && "$a" == "$b" ]] || { echo "[resume.sh] FAILED: $label resumed to other bits"; exit 1; }
    diff <(cut -d, -f1-6 full/metrics.csv) <(cut -d, -f1-6 part/metrics.csv) ||
        { echo "[resume.sh] FAILED: $label metrics differ"; exit 1; }
    rm -rf full part
}
check "one process" "$train"
check "2 ranks" "$mpiexec" --allow-run-as-root --oversubscribe -np 2 "$train" --distributed
echo "[resume.sh] passed"
