#!/usr/bin/env bash
# A rank that dies or stalls mid-step: the run must end, non-zero, within
# LIMIT seconds, with MESSAGE in its output (not hang on the collectives).
# Usage: fault.sh MPIEXEC RANKS BINARY --die|--stall RANK LIMIT MESSAGE
set -u
mpiexec=$1 ranks=$2 binary=$3 mode=$4 rank=$5 limit=$6 message=$7
start=$SECONDS
out=$(timeout $((limit + 30)) "$mpiexec" --allow-run-as-root --oversubscribe -np "$ranks" "$binary" "$mode" "$rank" 2>&1)
rc=$?
took=$((SECONDS - start))
echo "$out"
echo "[fault.sh] exit status $rc after $took s (limit $limit s)"
[[ $rc -ne 0 ]] || { echo "[fault.sh] FAILED: the run succeeded"; exit 1; }
[[ $rc -ne 124 && $took -le $limit ]] || { echo "[fault.sh] FAILED: took longer than $limit s"; exit 1; }
grep -qE "$message" <<<"$out" || { echo "[fault.sh] FAILED: no '$message' in the output"; exit 1; }
echo "[fault.sh] passed"
