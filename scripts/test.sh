#!/usr/bin/env bash
# tapegrad quick start #2: install deps if missing, build, run the test suite.
#
# Usage: scripts/test.sh [extra ctest args...]
# Honours the same environment as scripts/setup.sh (TG_BUILD_DIR, TG_BUILD_TYPE,
# TG_CMAKE_ARGS, TG_JOBS, TG_SKIP_DEPS); TG_CTEST_ARGS adds ctest args.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${TG_BUILD_DIR:-build}"
[[ "${BUILD_DIR}" = /* ]] || BUILD_DIR="${REPO}/${BUILD_DIR}"

"${REPO}/scripts/setup.sh" --build-dir "${BUILD_DIR}"

CTEST_ARGS=()
if [[ -n "${TG_CTEST_ARGS:-}" ]]; then
  read -r -a CTEST_ARGS <<<"${TG_CTEST_ARGS}"
fi
ctest --test-dir "${BUILD_DIR}" --output-on-failure "${CTEST_ARGS[@]}" "$@"
