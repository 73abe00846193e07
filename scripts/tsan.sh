#!/usr/bin/env bash
# ThreadSanitizer: builds the suite with -fsanitize=thread in build-tsan/ and
# runs the tests where threads meet: several user threads training and
# gradchecking on the shared pool while it is resized, the pool itself,
# concurrent checkpoint saves, grad mode per thread. Any report fails the run.
# OpenBLAS is not instrumented; tapegrad keeps it to one thread, so nothing of
# it is suppressed (tests/tsan.supp is empty but for this note).
#
# Usage: scripts/tsan.sh [doctest test-case filter, default the threaded ones]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${TG_TSAN_BUILD_DIR:-${REPO}/build-tsan}"
FILTER="${1:-threads:*,parallel:*,*threads saving*,*grad mode*,*thread*}"

TG_BUILD_DIR="${BUILD_DIR}" TG_BUILD_TYPE=RelWithDebInfo TG_CMAKE_ARGS="-DTAPEGRAD_TSAN=ON" \
TG_BUILD_TARGETS="tapegrad_tests" "${REPO}/scripts/setup.sh"

export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=${REPO}/tests/tsan.supp"
"${BUILD_DIR}/tests/tapegrad_tests" --test-case="${FILTER}" 2>&1 | tee "${BUILD_DIR}/tsan.log"
! grep -q "WARNING: ThreadSanitizer" "${BUILD_DIR}/tsan.log"
