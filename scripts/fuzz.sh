#!/usr/bin/env bash
# The libFuzzer targets of tests/fuzz (IDX, .npy, .npz, checkpoint, a whole resume):
# installs clang and libFuzzer if missing, builds the targets with ASan and
# UBSan in build-fuzz/, then runs each for SECONDS from its committed corpus
# (which it replays first). A crash, leak, timeout, out-of-memory or a broken
# property (tests/fuzz/fuzz_target.hpp) fails the run; the input is kept in
# build-fuzz/fuzz-artifacts/ (add it to tests/fuzz/corpus/<target>/ with the fix).
#
# Usage: scripts/fuzz.sh [SECONDS per target, default 60] [TARGET...]
#   e.g. scripts/fuzz.sh 1800 checkpoint     (half an hour on one target)
# Environment: TG_FUZZ_BUILD_DIR (default build-fuzz), TG_FUZZ_RUNS (stop
# after this many executions instead, e.g. 10000000), TG_FUZZ_JOBS (targets
# fuzzed side by side, default 1).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=(idx npy npz checkpoint resume)
BUILD_DIR="${TG_FUZZ_BUILD_DIR:-build-fuzz}"
[[ "${BUILD_DIR}" = /* ]] || BUILD_DIR="${REPO}/${BUILD_DIR}"

BINARIES=()
for t in "${TARGETS[@]}"; do BINARIES+=("fuzz_${t}"); done
CXX="${CXX:-clang++}" CC="${CC:-clang}" \
TG_EXTRA_PACKAGES="clang libclang-rt-14-dev" TG_BUILD_DIR="${BUILD_DIR}" TG_BUILD_TYPE=RelWithDebInfo \
TG_CMAKE_ARGS="-DTAPEGRAD_FUZZ=ON -DTAPEGRAD_MPI=OFF" TG_BUILD_TARGETS="${BINARIES[*]}" \
  "${REPO}/scripts/setup.sh"

ARTIFACTS="${BUILD_DIR}/fuzz-artifacts"
mkdir -p "${ARTIFACTS}"
LIMITS=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 -max_len=65536 -print_final_stats=1)
if [[ -n "${TG_FUZZ_RUNS:-}" ]]; then LIMITS+=(-runs="${TG_FUZZ_RUNS}"); fi
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

fuzz_one() {
  local t="$1" scratch="${BUILD_DIR}/fuzz-corpus/$1" log="${BUILD_DIR}/fuzz-$1.log"
  mkdir -p "${scratch}"
  # New inputs go to the scratch directory, never into the committed corpus.
  if "${BUILD_DIR}/tests/fuzz/fuzz_${t}" "${LIMITS[@]}" -max_total_time="${SECONDS_PER_TARGET}" \
       -artifact_prefix="${ARTIFACTS}/${t}-" "${scratch}" "${REPO}/tests/fuzz/corpus/${t}" >"${log}" 2>&1; then
    printf '[fuzz] %-10s ok: %s executions in %s s (%s/s), corpus %s inputs, peak RSS %s MB\n' "${t}" \
      "$(sed -n 's/^stat::number_of_executed_units: *//p' "${log}")" "${SECONDS_PER_TARGET}" \
      "$(sed -n 's/^stat::average_exec_per_sec: *//p' "${log}")" \
      "$(find "${scratch}" "${REPO}/tests/fuzz/corpus/${t}" -type f | wc -l)" \
      "$(sed -n 's/^stat::peak_rss_mb: *//p' "${log}")"
  else
    printf '[fuzz] %s FAILED; the last 40 lines of %s:\n' "${t}" "${log}" >&2
    tail -n 40 "${log}" >&2
    return 1
  fi
}

status=0
pids=()
for t in "${TARGETS[@]}"; do
  if [[ "${TG_FUZZ_JOBS:-1}" -gt 1 ]]; then
    fuzz_one "${t}" & pids+=($!)
    while [[ $(jobs -rp | wc -l) -ge "${TG_FUZZ_JOBS}" ]]; do sleep 1; done
  else
    fuzz_one "${t}" || status=1
  fi
done
for p in "${pids[@]}"; do wait "${p}" || status=1; done
exit "${status}"
