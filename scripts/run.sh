#!/usr/bin/env bash
# tapegrad quick start #1: install deps if missing, build, run the main job.
#
# Usage: scripts/run.sh [args passed to the main binary...]
# Honours the same environment as scripts/setup.sh (TG_BUILD_DIR, TG_BUILD_TYPE,
# TG_CMAKE_ARGS, TG_JOBS, TG_SKIP_DEPS).
set -euo pipefail

# The main job, relative to the build dir.
# Later: samples/train_fashion_mnist
MAIN_BIN="${TG_MAIN_BIN:-samples/train_fashion_mnist}"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${TG_BUILD_DIR:-build}"
[[ "${BUILD_DIR}" = /* ]] || BUILD_DIR="${REPO}/${BUILD_DIR}"

"${REPO}/scripts/setup.sh" --build-dir "${BUILD_DIR}"

BIN="${BUILD_DIR}/${MAIN_BIN}"
[[ -x "${BIN}" ]] || { echo "[run] ERROR: ${BIN} was not built" >&2; exit 1; }
echo "[run] ${BIN} $*" >&2
exec "${BIN}" "$@"
