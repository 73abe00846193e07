#!/usr/bin/env bash
# tapegrad as a project outside the tree uses it: installs a built tree to a
# temporary prefix, then builds examples/consumer against the install twice,
# with CMake (find_package) and with one g++ line (pkg-config), and runs each.
# The consumer checks its own op and the library's ops in the registry (the
# count the tree's registry_probe gives), gradients and a short training.
#
# Usage: scripts/consumer_check.sh [--static] [BUILD_DIR]
#   BUILD_DIR   a configured and built tree, tests included (default: build)
#   --static    also configures and builds the static library in
#               BUILD_DIR-static (the library and the registry probes only),
#               runs its registry ctest, and checks the consumer against its
#               install too
# Honours TG_JOBS (default: nproc).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATIC=0
BUILD_DIR=build
for arg in "$@"; do
  case "$arg" in
    --static) STATIC=1 ;;
    -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) BUILD_DIR="$arg" ;;
  esac
done
[[ "${BUILD_DIR}" = /* ]] || BUILD_DIR="${REPO}/${BUILD_DIR}"
JOBS="${TG_JOBS:-$(nproc 2>/dev/null || echo 2)}"

log() { printf '[consumer] %s\n' "$*" >&2; }
die() { printf '[consumer] ERROR: %s\n' "$*" >&2; exit 1; }

PROBE="${BUILD_DIR}/tests/registry_probe"
[[ -x "${PROBE}" ]] || die "${PROBE} not found: build ${BUILD_DIR} with the tests first"
LIBRARY_OPS=$("${PROBE}" | wc -l)
log "the tree registers ${LIBRARY_OPS} ops (${PROBE})"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tapegrad-consumer.XXXXXX")"
trap 'rm -rf "${WORK}"' EXIT

# Installs BUILD to PREFIX and checks the consumer against it both ways.
check_install() {
  local build="$1" name="$2" t0=${SECONDS}
  local prefix="${WORK}/${name}/prefix"
  cmake --install "${build}" --prefix "${prefix}" >"${WORK}/${name}-install.log" \
    || { cat "${WORK}/${name}-install.log" >&2; die "${name}: install failed"; }
  [[ "$(ls "${prefix}/include")" == tapegrad ]] || die "${name}: ${prefix}/include holds more than tapegrad/"
  log "${name}: installed to ${prefix} ($(find "${prefix}/include" -type f | wc -l) headers) in $((SECONDS - t0)) s"

  local t1=${SECONDS}
  cmake -S "${REPO}/examples/consumer" -B "${WORK}/${name}/cmake" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="${prefix}" >"${WORK}/${name}-configure.log" \
    || { cat "${WORK}/${name}-configure.log" >&2; die "${name}: the consumer's configure failed"; }
  cmake --build "${WORK}/${name}/cmake" -j"${JOBS}" >"${WORK}/${name}-build.log" \
    || { cat "${WORK}/${name}-build.log" >&2; die "${name}: the consumer's build failed"; }
  log "${name}: consumer configured and built with find_package in $((SECONDS - t1)) s"
  "${WORK}/${name}/cmake/app" "${LIBRARY_OPS}" || die "${name}: the consumer (CMake) failed"

  local t2=${SECONDS} pc_path pc libdir
  pc_path=$(dirname "$(find "${prefix}" -name tapegrad.pc)")
  pc=$(PKG_CONFIG_PATH="${pc_path}" pkg-config --cflags --libs tapegrad)
  libdir=$(PKG_CONFIG_PATH="${pc_path}" pkg-config --variable=libdir tapegrad)
  log "${name}: pkg-config --cflags --libs tapegrad: ${pc}"
  # shellcheck disable=SC2086  # the flags are words
  g++ -std=c++20 -O2 "${REPO}/examples/consumer/main.cpp" ${pc} -Wl,-rpath,"${libdir}" -o "${WORK}/${name}/app-pc" \
    || die "${name}: the one-line g++ build with pkg-config failed"
  log "${name}: consumer built with pkg-config in $((SECONDS - t2)) s"
  "${WORK}/${name}/app-pc" "${LIBRARY_OPS}" >/dev/null || die "${name}: the consumer (pkg-config) failed"
  log "${name}: install + both consumer builds and runs took $((SECONDS - t0)) s"
}

check_install "${BUILD_DIR}" shared

if [[ "${STATIC}" == 1 ]]; then
  t0=${SECONDS}
  STATIC_DIR="${BUILD_DIR}-static"
  cmake -S "${REPO}" -B "${STATIC_DIR}" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF >/dev/null
  cmake --build "${STATIC_DIR}" -j"${JOBS}" --target tapegrad registry_probe registry_probe_whole
  ctest --test-dir "${STATIC_DIR}" --output-on-failure --no-tests=error -R '^registry: '
  log "static: library and registry probes built and checked in $((SECONDS - t0)) s"
  check_install "${STATIC_DIR}" static
fi
log "all consumer checks passed"
