#!/usr/bin/env bash
# tapegrad: the one set-up script (used by scripts/test.sh, scripts/run.sh and .ci/run).
#
#   1. installs the Debian 12 packages the build needs, if any is missing
#      (needs root or sudo only when something is missing);
#   2. configures and builds the project with CMake.
#
# Usage: scripts/setup.sh [--deps-only | --no-deps] [--build-dir DIR] [-- EXTRA_CMAKE_ARGS...]
#
# Environment (all optional):
#   TG_BUILD_DIR    build directory (default: <repo>/build; relative paths are
#                   taken relative to the repo)
#   TG_BUILD_TYPE   CMAKE_BUILD_TYPE (default: Release)
#   TG_CMAKE_ARGS   extra cmake configure args, space-separated
#                   (e.g. "-DTAPEGRAD_SANITIZE=ON")
#   TG_JOBS         parallel build jobs (default: nproc)
#   TG_EXTRA_PACKAGES  more Debian packages to install (scripts/fuzz.sh: clang)
#   TG_BUILD_TARGETS   build only these targets, space-separated (default: all)
#   TG_SKIP_DEPS=1  do not check/install packages
#   TG_DEPS_ONLY=1  install packages, do not configure/build
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Debian 12 (bookworm) package names. libxtensor-dev is the real package
# behind the transitional xtensor-dev.
PACKAGES=(
  g++ cmake make pkg-config
  libxtensor-dev libxtensor-blas-dev libopenblas-dev
  doctest-dev zlib1g-dev
  libopenmpi-dev openmpi-bin
  dataset-fashion-mnist
)
if [[ -n "${TG_EXTRA_PACKAGES:-}" ]]; then
  read -r -a EXTRA_PACKAGES <<<"${TG_EXTRA_PACKAGES}"
  PACKAGES+=("${EXTRA_PACKAGES[@]}")
fi

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

BUILD_DIR="${TG_BUILD_DIR:-build}"
BUILD_TYPE="${TG_BUILD_TYPE:-Release}"
SKIP_DEPS="${TG_SKIP_DEPS:-0}"
DEPS_ONLY="${TG_DEPS_ONLY:-0}"
EXTRA_CMAKE_ARGS=()
if [[ -n "${TG_CMAKE_ARGS:-}" ]]; then
  read -r -a EXTRA_CMAKE_ARGS <<<"${TG_CMAKE_ARGS}"
fi

while [[ $# -gt 0 ]]; do
  case "$1" in
    --deps-only) DEPS_ONLY=1 ;;
    --no-deps) SKIP_DEPS=1 ;;
    --build-dir) [[ $# -ge 2 ]] || die "--build-dir needs a value"; BUILD_DIR="$2"; shift ;;
    --build-dir=*) BUILD_DIR="${1#*=}" ;;
    -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; EXTRA_CMAKE_ARGS+=("$@"); break ;;
    *) die "unknown argument: $1 (extra cmake args go after --)" ;;
  esac
  shift
done
[[ "${BUILD_DIR}" = /* ]] || BUILD_DIR="${REPO}/${BUILD_DIR}"

# ---------------------------------------------------------------- packages
is_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

install_deps() {
  command -v dpkg-query >/dev/null 2>&1 \
    || die "dpkg-query not found: this script supports Debian 12 (bookworm) only. Needed packages: ${PACKAGES[*]}"

  local missing=() p
  for p in "${PACKAGES[@]}"; do
    is_installed "$p" || missing+=("$p")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    log "all ${#PACKAGES[@]} packages already installed"
    return 0
  fi

  local sudo=()
  if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      die "missing packages: ${missing[*]}
        Not running as root and sudo is not available. Install them as root with:
          apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
    fi
  fi

  local aptlog
  aptlog="$(mktemp "${TMPDIR:-/tmp}/tapegrad-apt.XXXXXX.log")"
  log "installing ${#missing[@]} missing package(s): ${missing[*]} (log: ${aptlog})"
  local t0=${SECONDS}
  local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300)
  if ! { "${apt[@]}" update && "${apt[@]}" install --no-install-recommends "${missing[@]}"; } >"${aptlog}" 2>&1; then
    printf '[setup] ---- apt output (last 80 lines of %s) ----\n' "${aptlog}" >&2
    tail -n 80 "${aptlog}" >&2
    die "apt-get failed installing: ${missing[*]}"
  fi
  for p in "${missing[@]}"; do
    is_installed "$p" || die "package $p still not installed after apt-get (see ${aptlog})"
  done
  log "packages installed in $((SECONDS - t0)) s"
  rm -f "${aptlog}"
}

if [[ "${SKIP_DEPS}" != 1 ]]; then
  install_deps
fi
[[ "${DEPS_ONLY}" == 1 ]] && exit 0

# ---------------------------------------------------------------- build
[[ -f "${REPO}/CMakeLists.txt" ]] || die "no CMakeLists.txt in ${REPO}"
command -v cmake >/dev/null 2>&1 || die "cmake not found (run without --no-deps / TG_SKIP_DEPS)"

JOBS="${TG_JOBS:-$(nproc 2>/dev/null || echo 2)}"
log "configure: ${BUILD_DIR} (${BUILD_TYPE}${EXTRA_CMAKE_ARGS[*]:+, ${EXTRA_CMAKE_ARGS[*]}})"
cmake -S "${REPO}" -B "${BUILD_DIR}" -DCMAKE_BUILD_TYPE="${BUILD_TYPE}" "${EXTRA_CMAKE_ARGS[@]}"
TARGETS=()
if [[ -n "${TG_BUILD_TARGETS:-}" ]]; then
  read -r -a TARGETS <<<"${TG_BUILD_TARGETS}"
  TARGETS=(--target "${TARGETS[@]}")
fi
log "build: -j${JOBS}${TG_BUILD_TARGETS:+ (${TG_BUILD_TARGETS})}"
cmake --build "${BUILD_DIR}" -j"${JOBS}" "${TARGETS[@]}"
log "build OK: ${BUILD_DIR}"
