#!/usr/bin/env bash
# The layering rule of ARCHITECTURE.md, checked: a file includes headers of
# its own part or of parts below it, never above and never beside it.
#
#   rank 0  engine/core     tensor, memory, threads, tape and autodiff, random, op definitions
#   rank 1  engine/kernels  loops on raw buffers, SIMD, BLAS
#   rank 2  ops             the op families
#   rank 3  engine/check    gradient checker, replay, registry sweep
#   rank 3  engine/io       .npy, .npz, checkpoints, xtensor arrays
#   rank 4  data            datasets
#   rank 5  nn, optim       modules, optimizers
#   rank 6  dist            processes on MPI, data-parallel training
#   rank 7  include         the public headers
# samples/, tests/ and bench/ stand on everything.
#
# Usage: scripts/check_layers.sh [REPO]        check the tree (default: this repo)
#        scripts/check_layers.sh --self-test   check that a planted violation is caught
set -euo pipefail

part_of() {
    case "$1" in
    engine/core/*) echo core ;;
    engine/kernels/*) echo kernels ;;
    engine/check/*) echo check ;;
    engine/io/*) echo io ;;
    ops/*) echo ops ;;
    data/*) echo data ;;
    nn/*) echo nn ;;
    optim/*) echo optim ;;
    dist/*) echo dist ;;
    include/*) echo include ;;
    *) echo "" ;;
    esac
}

rank_of() {
    case "$1" in
    core) echo 0 ;;
    kernels) echo 1 ;;
    ops) echo 2 ;;
    check | io) echo 3 ;;
    data) echo 4 ;;
    nn | optim) echo 5 ;;
    dist) echo 6 ;;
    include) echo 7 ;;
    esac
}

# Where the compiler finds a quoted include in the tree: the including file's
# folder first ("../core/tensor.hpp" from a header), then the include path
# (the root and include/). Prints the path from the root, or nothing.
resolve() {
    local dir base path
    dir=$(dirname "$1")
    for base in "$dir" . include; do
        path=$(realpath -m --relative-to=. "$base/$2")
        if [[ "$path" != ../* && -f "$path" ]]; then
            echo "$path"
            return
        fi
    done
}

check_tree() {
    local repo="$1" violations=0 checked=0
    cd "$repo"
    local files
    files=$(find engine ops data nn optim dist include -type f \( -name '*.cpp' -o -name '*.hpp' -o -name '*.inl' \) 2>/dev/null | sort)
    for f in $files; do
        local from from_rank
        from=$(part_of "$f")
        [[ -n "$from" ]] || continue
        from_rank=$(rank_of "$from")
        while IFS= read -r inc; do
            [[ -n "$inc" ]] || continue
            checked=$((checked + 1))
            local path
            path=$(resolve "$f" "$inc")
            if [[ -z "$path" ]]; then
                echo "$f: includes \"$inc\", which is not in the tree" >&2
                violations=$((violations + 1))
                continue
            fi
            local to to_rank
            to=$(part_of "$path")
            [[ -n "$to" ]] || continue
            to_rank=$(rank_of "$to")
            if [[ "$to" != "$from" && "$to_rank" -ge "$from_rank" ]]; then
                echo "$f ($from, rank $from_rank) includes \"$inc\" ($to, rank $to_rank): only parts below may be included" >&2
                violations=$((violations + 1))
            fi
        done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
    done
    if [[ "$checked" -eq 0 ]]; then
        echo "check_layers: no includes found under $repo: nothing was checked" >&2
        return 1
    fi
    if [[ "$violations" -gt 0 ]]; then
        echo "check_layers: $violations include(s) break the layering" >&2
        return 1
    fi
    echo "check_layers: $checked includes follow the layering"
}

if [[ "${1:-}" == "--self-test" ]]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mkdir -p "$tmp/engine/core" "$tmp/ops"
    printf '#pragma once\n#include "../engine/core/tensor.hpp"\n' >"$tmp/ops/shape.hpp"
    printf '#include "engine/core/tensor.hpp"\n' >"$tmp/ops/shape.cpp"
    printf '#pragma once\n' >"$tmp/engine/core/tensor.hpp"
    check_tree "$tmp" >/dev/null || { echo "self-test: a clean tree was rejected" >&2; exit 1; }
    # The core reaching up, once from the root and once relative to the file.
    printf '#include "ops/shape.hpp"\n' >"$tmp/engine/core/tensor.cpp"
    if check_tree "$tmp" 2>/dev/null; then
        echo "self-test: an include from engine/core into ops was not caught" >&2
        exit 1
    fi
    rm "$tmp/engine/core/tensor.cpp"
    printf '#pragma once\n#include "../../ops/shape.hpp"\n' >"$tmp/engine/core/memory.hpp"
    # Caught as a layering violation, not as an include that does not resolve.
    if report=$(check_tree "$tmp" 2>&1) || [[ "$report" != *'"../../ops/shape.hpp" (ops, rank 2)'* ]]; then
        echo "self-test: a relative include from engine/core into ops was not caught" >&2
        exit 1
    fi
    echo "check_layers self-test: planted upward includes (from the root and relative) are caught"
    exit 0
fi

check_tree "${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
