#!/usr/bin/env python3
"""Mutation testing for tapegrad: plant one small change at a time in the
library, rebuild incrementally, run the tests, and count the mutants killed.

    scripts/mutate.py --list --sample 200 --seed 1     # which mutants, not run
    scripts/mutate.py --sample 200 --seed 1            # run them (resumes)
    scripts/mutate.py --files 'ops/pool.cpp' --per-file 20
    scripts/mutate.py --rerun-survivors                # after adding tests
    scripts/mutate.py --summary                        # the report of the results file

The mutation operators (one change per mutant):

    relational  < -> <=,  <= -> <,  > -> >=,  >= -> >,  == <-> !=
    arithmetic  + <-> -,  * <-> /,  += <-> -=,  *= <-> /=   (binary operators)
    offset      a[e] -> a[e + 1] and a[e - 1];  an integer literal 0 <-> 1, k -> k + 1, k - 1
    flag        true <-> false,  !x -> x,  && <-> ||

Never mutated: comments, string and character literals, preprocessor lines
(includes), template argument and parameter lists, `if constexpr`
conditions, asserts, error paths (throw statements, the message arguments of
TG_CHECK and fail()), the bodies of samples() (test data, not code), and
lines marked `// mutate: skip`. A few forms are left out because the mutant
is equivalent by construction: x * 1, x / 1, x + 0, x - 0, shift operands.

Where the mutants are built. The script never edits the working tree: it
keeps a copy of it (BUILD_ROOT/src, tracked and untracked files, not ignored
ones; a git repository of its own) and one Release build of that copy
(BUILD_ROOT/build). At start the copy is brought up to date with the working
tree, rewriting only the files that differ, so only they are rebuilt. Each
mutant is written into the copy, built (a compile error makes it
"stillborn", not counted), tested, and the file is restored byte for byte in
a `finally` (also on Ctrl-C, SIGTERM and exceptions). At the end
`git diff --quiet` in the copy proves every file is back.

How a mutant is tested. First the focused tests: the doctest binary, with
--abort-after=1, on the test files that belong to the mutated file (by name,
see FOCUS; for ops and kernels also the registry sweep). Only if they pass,
the rest of the suite: the same binary on every other test file; then the
ctest entries labelled `process` (cases that need a process of their own,
such as TG_NUM_THREADS read at start). A failure, a crash or a timeout (a
hang: 3 times the phase's unmodified duration plus a minute) kills the
mutant; a mutant that passes every phase survives.

Results. One JSON line per mutant in BUILD_ROOT/results.jsonl, appended as
each mutant finishes, so an interrupted run resumes where it stopped (a
mutant already in the file is not run again; --rerun-survivors runs the
survivors again, the last line for a mutant wins). Mutants judged equivalent
(no test can tell them from the original) are listed with the reason in
EQUIVALENT below and reported apart; the kill rate is killed / (killed +
survived), the equivalent and stillborn ones left out. A mutant that is an
out-of-bounds access the Release build survives but the ASan suite reports
(checked by hand) is listed in CAUGHT_BY_SANITIZER and counts as killed.

Sampling is deterministic: a mutant's rank is a hash of the seed and its key
(file, the text of its line, the mutation, which occurrence on that line),
so the sample for a seed does not move when unrelated lines change.
--sample N takes N spread evenly over the areas (ops, engine/kernels,
engine/core, engine/check); --per-file N takes N from every file.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_FILES = ["ops/*", "engine/kernels/*", "engine/core/*", "engine/check/*"]
SOURCE_EXT = (".cpp", ".hpp", ".inl")

# The test files that exercise a source file, by the words of the source
# file's name: a word listed here stands for these test names (or words of
# them), any other word for itself: ops/pool.cpp -> test_conv_pool.cpp and
# test_kernels_pool.cpp; engine/core/autograd.cpp -> test_autograd.cpp, ...
FOCUS = {
    "elementwise_op": ["elementwise", "op_definition"],
    "reduction": ["tensor", "elementwise"],
    "reduce": ["tensor", "elementwise"],
    "shape": ["tensor"],
    "matmul": ["xtensor_interop", "layer_ops"],
    "gemm": ["xtensor_interop", "layer_ops"],
    "loss": ["softmax_loss"],
    "layers": ["layer_ops", "nn"],
    "norm": ["layer_ops", "nn"],
    "autograd": ["autograd", "tape_teardown", "op_definition"],
    "op": ["op_definition", "autograd"],
    "registry": ["op_definition"],
    "tensor": ["tensor", "autograd"],
    "memory": ["tensor", "tape_teardown"],
    "small_vector": ["tensor"],
    "parallel": ["parallel", "tensor", "gradcheck"],
    "random": ["tensor", "nn"],
    "dtype": ["tensor"],
    "error": ["tensor"],
    "gradcheck": ["gradcheck"],
    "sample_inputs": ["gradcheck", "op_definition"],
    "replay": ["replay", "model_gradcheck"],
    "cpu": ["kernels"],
    "simd_isa": ["kernels", "softmax_loss"],
    "simd_regions": ["kernels", "softmax_loss"],
}
# Every op and every kernel is reached by the registry sweep.
SWEEP_TEST = "test_registry_sweep"

# Mutants that no test can tell from the original, with the reason. Key:
# "file|text of the line|mutation|occurrence", as printed by --list and in
# the results. Judged one by one from the survivors (docs/mutation.md).
EQUIVALENT: dict[str, str] = {
    # Comparisons of computed doubles with a computed bound: equal bit for bit
    # only by accident, and then either side of the bound is as right.
    "engine/check/gradcheck.cpp|if (total >= lo - tolerance - err && total <= hi + tolerance + err) continue;|>= -> >|1":
        "a floating-point boundary: the subgradient sum equals the rounded bound only by accident",
    # Sizes of arrays in declarations: one more element is never read.
    "engine/check/gradcheck.cpp|double D[3][max_cotangents], N[3][max_cotangents];|[max_cotangents] -> [max_cotangents + 1]|1":
        "an array declared one element larger; the extra element is never read",
    "engine/check/gradcheck.hpp|uint64_t seed = 0;|0 -> 1|1":
        "the default seed is arbitrary: every report names the seed it used, and any seed reproduces",
    # Members that the constructor always sets.
    "engine/core/parallel.cpp|int threads_ = 1;|1 -> 0|1":
        "the constructor's start() sets threads_ before anything reads it",
    # Choices of representation or work split that give the same values.
    "engine/check/replay.cpp|int64_t limit = n_el / 4;|4 -> 3|1":
        "the sparse/dense threshold of a replayed output: both representations give the same values",
    "engine/kernels/conv.cpp|parallel_for(g.n * g.c, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, kk * l)), "
    "[&](int64_t b, int64_t e) {|* -> /|4":
        "col2im's parallel grain: each plane is written by one task whatever the chunk size",
    "engine/kernels/conv.cpp|if (q > 0 && per_part > 0) {|> -> >=|2":
        "per_part is 0 only without dw and db, and then dwq and dbq stay null either way",
    "engine/kernels/conv.cpp|for (int64_t c0 = 0; c0 < cg; c0 += bl.channels) {|< -> <=|1":
        "the extra step at c0 == cg has nch = 0 channels: an empty im2col and a product with no terms",
    "engine/kernels/pool_simd.inl|if (ow < wo) {|< -> <=|1":
        "at ow == wo the overlapping last step runs once more and writes the same values and indices",
    "engine/kernels/pool_simd.inl|(2 * oh + 1) * w + 2 * lanes <= (1 + planes_after) * 2 * ho * w) {|2 -> 1|1":
        "the bound on d is implied by the bound on g before it: with wo < lanes and w in {2wo, 2wo + 1}, "
        "oh·wo + lanes <= K·wo gives (2oh + 1)·w + 2·lanes <= 2K·w; weakening it changes no branch",
    # Test data: helpers that build the inputs of samples(), outside its body.
    "ops/pool.cpp|auto at = [&](int64_t oh, int64_t ow, int64_t e) { return 2 * oh * w + 2 * ow + (e & 1) + (e >> 1) * w; };|2 -> 1|2":
        "not library code: window_indices() builds the samples' indices; with the change they point into other "
        "windows, which the op handles (the scatter path) and the sweep checks all the same",
    "engine/kernels/reduce.hpp|inline constexpr int reduce_lanes = 8;|8 -> 9|1":
        "nine partial sums instead of eight: every kernel still shares one summation order, and sums "
        "change only by rounding",
    "engine/kernels/softmax.cpp|isa() == Isa::avx2 ? avx2::exp_row(x, shift, out, n, scale, offset) : "
    "sse2::exp_row(x, shift, out, n, scale, offset);|== -> !=|1":
        "on a CPU with AVX2 (every machine the suite runs on here) both copies run and give the same values bit "
        "for bit, each is tested on its own; the swap would fault only where AVX2 is missing",
    "engine/core/autograd.cpp|bool exclusive = g.impl_ptr().use_count() == 1 && g.impl().storage.use_count() == 1 &&|1 -> 0|1":
        "performance only: a gradient no one else holds is then copied too, which is always correct",
    # The memory pool's size classes and caps: where a buffer comes from, not what it holds.
    "engine/core/memory.cpp|size_t step = p / 8 > 4096 ? p / 8 : 4096;|8 -> 7|1":
        "differs only for p = 32768, where both branches give a step of 4096",
    "engine/core/memory.cpp|constexpr size_t pool_granule = 32;|32 -> 33|1":
        "performance only: size classes of 33 bytes; every block still holds its request",
    "engine/core/memory.cpp|if (c < pool_classes && tp && tp->counts[c] < pool_max_blocks) {|[c] -> [c + 1]|1":
        "performance only: the cap on cached blocks is read from the next class; blocks are reused the same",
    # Seed 3 (2026-12-02).
    "engine/check/gradcheck.cpp|double noise_cap = 0;            // the most noise an evaluation can carry, per unit "
    "of Σ|o·u| changed|0 -> 1|1":
        "measure_noise() sets it first thing in run_checks, before any element or probe reads it",
    "engine/check/gradcheck.cpp|for (size_t e = 0; e < saved[k].size(); ++e) x[e] = saved[k][e] + step * dir[k][e];"
    "|+ -> -|1":
        "the noise is measured along the negated random ±1 pattern, as likely a draw as the pattern itself",
    "engine/core/activation_checkpoint.cpp|if (!x.defined() || !x.requires_grad()) return x;||| -> &&|1":
        "an input without grad then goes through record(), which makes no entry for inputs that need no "
        "gradient and hands back the same values; an undefined one still returns at once",
    "engine/kernels/conv.cpp|if (sw == 1)|1 -> 0|1":
        "performance only: unit-stride rows are gathered by the strided loop instead of memcpy, the same values",
    "engine/kernels/conv.cpp|return {1, std::min(columns, std::max<int64_t>(budget / (kk * int64_t(elem)) / 16 * 16, "
    "16))};|/ -> *|1":
        "performance only: one column block of every column instead of blocks that fit the budget; same products",
    "engine/kernels/conv.cpp|const T* bmat = xin + c0 * plane + p0;|+ -> -|2":
        "the pointer is used only for a pointwise convolution, whose blocking is one block of all columns: p0 is 0",
    "engine/kernels/conv.cpp|return in_parallel_region() || num_threads() == 1 ? 1 : std::clamp<int64_t>(items, 1, "
    "4 * int64_t(num_threads()));|4 -> 5|1":
        "performance only: the images of a backward split into up to 5 parts a thread instead of 4, the same "
        "sums grouped otherwise (rounding only, and still deterministic for a given thread count)",
    "engine/kernels/conv.cpp|int64_t size() const { return wt + (parts - 1) * per_part; }|- -> +|1":
        "a workspace two parts larger than needed; the extra parts are never read",
    "engine/kernels/conv.cpp|const int64_t per_part = (dw ? s.out_channels * s.k() : 0) + (db ? s.out_channels : 0);"
    "|0 -> 1|2":
        "each part one element larger when there is no bias gradient; the extra element is never written or read",
    "engine/check/replay.cpp|constexpr int max_rank = 8, max_inputs = 4;|8 -> 9|1":
        "the bound and the arrays it sizes move together: a rank-9 pointwise op would take the delta path instead of the dense replay, with the same values",
    "engine/core/memory.cpp|return (bytes + step - 1) / step * step;|- -> +|1":
        "performance only: a large buffer rounded up one bucket step further when its size is a step's multiple minus one; it still holds the request",
    "engine/core/memory.cpp|constexpr size_t pool_classes = 32;            // blocks up to 1 KiB|32 -> 33|1":
        "performance only: one more small-block size class; every block still holds its request",
    "engine/kernels/gemm_simd.inl|else if (n >= 2 * lanes) tile.template operator()<2, false>(n - 2 * lanes, 2 * lanes);|* -> /|3":
        "the column count of a full tile (Tail false) is never read: only a partial last vector uses it",
    "engine/kernels/gemm_simd.inl|else if (n > lanes) tile.template operator()<2, true>(0, n);|> -> >=|1":
        "n == lanes never reaches this branch: rest <= lanes && n >= lanes above takes it with the same one-vector tile",
    "engine/core/tensor.cpp|size_t nbytes = 0;|0 -> 1|1":
        "__builtin_mul_overflow always writes its result, overflow or not: the initial value is never read",
    "engine/check/replay.cpp|bool is_leaf_source(int s) { return s <= -2; }|2 -> 1|1":
        "its one caller, state(), is never asked for constant_source (-1): propagate() skips constant inputs first",
    "engine/core/memory.cpp|TG_CHECK(machine == 0 || bytes <= machine, \"out of memory allocating \", bytes, "
    "\" bytes, more than the \",|0 -> 1|1":
        "machine is 0 only when sysinfo() fails, which it does not on Linux, and is never 1",
    "engine/core/parallel.cpp|for (int spin = 0; done_chunks_.load(std::memory_order_acquire) < chunks; ++spin) {|0 -> 1|1":
        "timing only: the caller spins 2000 times instead of 2001 before it sleeps on the counter",
    "engine/core/parallel.cpp|threads_.store(threads < 1 ? 1 : threads, std::memory_order_relaxed);|1 -> 0|2":
        "unreachable: both callers pass at least 1 (default_threads() clamps, set_num_threads() checks)",
    "engine/check/gradcheck.cpp|const bool kink = levels >= 2 && std::abs(g0) > 8 * rho_first[i] + t && "
    "std::abs(g1) > 8 * rho_last[i] + t &&|> -> >=|1":
        "a floating-point boundary: a one-sided gap equal bit for bit to 8·noise + tolerance happens only by "
        "accident, and then either verdict is as right (the first entry of this table, for the kink test)",
    "engine/kernels/pool.cpp|__int128 out = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;  // ⌊num / s⌋ + 1"
    "|>= -> >|1":
        "at num = 0, the one value the change moves to the other arm, both arms give 0 (s >= 1)",
    "engine/kernels/pool_simd.inl|(2 * oh + 1) * w + 2 * lanes <= (1 + planes_after) * 2 * ho * w) {|+ -> -|1":
        "as the 2 -> 1 mutant of the same line: the bound on d is implied by the bound on g before it, so a "
        "weaker one changes no branch",
    "engine/kernels/pool_simd.inl|} else if (in + w + 2 * lanes <= p1 * plane && out + lanes <= p1 * ho * wo) {|2 -> 1|1":
        "the read bound is implied by the write bound after it: out + lanes <= p1·ho·wo leaves k >= lanes/wo "
        "output rows, so at least 2w·k >= 4·lanes input elements from row 2oh on, and w + 2·lanes <= 4·lanes "
        "(w <= 2wo + 1 < 2·lanes); weakening it changes no branch",
    "engine/kernels/reduce.hpp|for (int j = 0; j < reduce_lanes; ++j) m = m < acc[j] ? acc[j] : m;|< -> <=|2":
        "differs only when lanes tie, and then only if the tie is -0 against +0: the maximum is either zero; "
        "max_row is a shift (x - m, exp) where the two give the same values up to the sign of an exact zero, "
        "which tapegrad does not specify (nor does PyTorch)",
    "ops/pool.cpp|bool ceil_mode = false;|false -> true|4":
        "avg_pool2d_backward's Attrs default is read only by two samples, [2,2,5,5] k3 s2 p1, whose windows are "
        "the same with ceil_mode ((5 + 2 - 3) / 2 is exact); avg_pool2d_backward() always sets it, and the "
        "samples with ceil_mode true are there",
    "ops/loss.cpp|TG_CHECK(z.dim() == 2 && is_floating(z.dtype()), op, \": expected float rows [M, C], got \", "
    "dtype_name(z.dtype()),|&& -> |||1":
        "both primitives that call count_valid get their rows from as_rows(), which checks the dtype and makes the rank 2 first",
}

# Mutants that are undefined behaviour (an access out of bounds) which the
# Release build runs without a visible effect, and which the suite as CI runs
# it, under AddressSanitizer (build-asan), reports. Each was checked by hand:
# the mutant built into build-asan, the named test run, the report seen.
# They count as killed; the summary lists them apart.
CAUGHT_BY_SANITIZER: dict[str, str] = {
    # Seed 3, the rest of the sample (2026-12-03): the sanitizer build now has _GLIBCXX_ASSERTIONS.
    "engine/check/gradcheck.cpp|for (int c = 0; c < C; ++c)|< -> <=|2":
        "_GLIBCXX_ASSERTIONS: std::array index 8 of 8 in refine()'s test of open gaps, test_gradcheck "
        "'projections onto 4 to 8 cotangents' (x³ at 0 with 8 cotangents: refined, every gap closed)",
    "engine/check/gradcheck.cpp|for (int c = 0; c < C; ++c) {|< -> <=|18":
        "_GLIBCXX_ASSERTIONS: std::array index 8 of 8 in measure_noise's third differences, any check with 8 "
        "cotangents (test_gradcheck 'projections onto 4 to 8 cotangents')",
    "ops/loss.cpp|for (size_t i = 0; i < c.size(); ++i) c[i] = width * centers[i % 9];|[i % 9] -> [(i % 9) + 1]|1":
        "UBSan: index 9 out of bounds for double[9] in the samples' away_from_kinks (test data), the registry sweep",
    "engine/kernels/softmax.cpp|lse[2 * r] = lse[2 * r + 1] = 0;|[2 * r + 1] -> [(2 * r + 1) + 1]|1":
        "ASan: heap-buffer-overflow one past lse in cross_entropy_forward<double> for an ignored last row "
        "(the suite: a cross_entropy with ignore_index on its last row)",
    "engine/check/gradcheck.cpp|for (int c = 0; c < C; ++c) out[c] += (o[i] - o0[i]) * u[i * C + c];|< -> <=|1":
        "stack-buffer-overflow in project(), test_gradcheck 'output elements that are infinite and stay so' with "
        "8 cotangents (one past the projections of the last one)",
    "engine/check/gradcheck.cpp|sigma[i] = std::max(sigma[i], std::max(eps * size[i], local));|[i] -> [i - 1]|3":
        "UBSan: index -1 out of bounds for double[8] in local_noise, any test that checks an element (test_gradcheck 'correct ops pass')",
    "engine/check/gradcheck.cpp|Generator gen(mix_seed(o.seed, k, tasks[size_t(t)].group, uint64_t(tasks[size_t(t)].probe)));|[size_t(t)] -> [(size_t(t)) + 1]|2":
        "ASan: heap-buffer-overflow reading the task after the last, any fast-mode check (test_gradcheck 'fast mode passes correct large inputs')",
    "engine/check/gradcheck.cpp|q.analytic[c] = N[f][c] - D[f][c];|[c] -> [c - 1]|1":
        "UBSan: index -1 out of bounds for double[8] in a probe, any fast-mode check (test_gradcheck 'fast mode passes correct large inputs')",
    "engine/check/gradcheck.cpp|for (int64_t e = 0; e < n; ++e) scale = std::max(scale, std::abs(alpha * g0[e]) + std::abs(beta * g1[e]));|[e] -> [e + 1]|1":
        "ASan: heap-buffer-overflow one past the gradient in the linearity check, any structural check (test_gradcheck 'correct ops pass')",
    "engine/core/activation_checkpoint.cpp|value = outputs[recipe.differentiable[0]].detach();|0 -> 1|1":
        "ASan: heap-buffer-overflow one past the list of differentiable outputs, any checkpoint with one (test_activation_checkpoint 'tg::grad captures through it')",
    "engine/core/autograd.cpp|for (size_t k = 0; k < i && k < 32; ++k) n += mask >> k & 1;|< -> <=|2":
        "UBSan: shift exponent 32 too large for the 32-bit saved-input mask, test_autograd 'an op with more inputs "
        "than the saved-input mask has bits (concat of 40)'",
}

# --------------------------------------------------------------------------------------------
# Lexing: enough of C++ to tell code from comments, strings and preprocessor lines.

PUNCT = sorted(
    """>>= <<= <=> ->* ... :: -> ++ -- << >> <= >= == != && || += -= *= /= %= &= |= ^= .*
    { } [ ] ( ) ; : , . ? ~ ! + - * / % ^ & | = < > #""".split(),
    key=len, reverse=True)
IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
NUMBER_RE = re.compile(r"\.?[0-9](?:[eEpP][+-]|'[0-9A-Za-z]|[0-9A-Za-z_.])*")
RAW_STRING_RE = re.compile(r'(?:u8|u|U|L)?R"([^(\s]{0,16})\(')
STRING_RE = re.compile(r"(?:u8|u|U|L)?(['\"])")


@dataclasses.dataclass
class Tok:
    kind: str  # ident number string char punct pp
    text: str
    start: int
    end: int
    line: int


def lex(src: str) -> list[Tok]:
    toks: list[Tok] = []
    i, n, line, line_start = 0, len(src), 1, True
    while i < n:
        c = src[i]
        if c == "\n":
            line, i, line_start = line + 1, i + 1, True
            continue
        if c in " \t\r\f\v":
            i += 1
            continue
        if c == "\\" and src.startswith("\\\n", i):
            line, i = line + 1, i + 2
            continue
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
            continue
        if src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            line += src.count("\n", i, j)
            i = j
            continue
        if c == "#" and line_start:  # a preprocessor line with its continuations: one token
            j = i
            while True:
                k = src.find("\n", j)
                if k < 0:
                    k = n
                    break
                if src[k - 1] != "\\":
                    break
                j = k + 1
            toks.append(Tok("pp", src[i:k], i, k, line))
            line += src.count("\n", i, k)
            i = k
            continue
        line_start = False
        m = RAW_STRING_RE.match(src, i)
        if m:
            close = ")" + m.group(1) + '"'
            j = src.find(close, m.end())
            j = n if j < 0 else j + len(close)
            toks.append(Tok("string", src[i:j], i, j, line))
            line += src.count("\n", i, j)
            i = j
            continue
        m = STRING_RE.match(src, i)
        ident = IDENT_RE.match(src, i)
        if m and (not ident or ident.end() == m.start(1)):
            q, j = m.group(1), m.end()
            while j < n and src[j] != q:
                j += 2 if src[j] == "\\" else 1
            j = min(j + 1, n)
            toks.append(Tok("string" if q == '"' else "char", src[i:j], i, j, line))
            i = j
            continue
        if ident:
            toks.append(Tok("ident", ident.group(), i, ident.end(), line))
            i = ident.end()
            continue
        m = NUMBER_RE.match(src, i)
        if m:
            toks.append(Tok("number", m.group(), i, m.end(), line))
            i = m.end()
            continue
        p = next((p for p in PUNCT if src.startswith(p, i)), c)
        toks.append(Tok("punct", p, i, i + len(p), line))
        i += len(p)
    return toks


# --------------------------------------------------------------------------------------------
# The mutation operators

RELATIONAL = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "=="}
ARITHMETIC = {"+": "-", "-": "+", "*": "/", "/": "*", "+=": "-=", "-=": "+=", "*=": "/=", "/=": "*="}
LOGICAL = {"&&": "||", "||": "&&"}
BOOLEAN = {"true": "false", "false": "true"}

KEYWORDS = set(
    """alignas alignof auto bool break case catch char class const constexpr consteval constinit
    const_cast continue decltype default delete do double dynamic_cast else enum explicit extern
    false float for friend goto if inline int long mutable namespace new noexcept nullptr operator
    private protected public reinterpret_cast requires return short signed sizeof static
    static_assert static_cast struct switch template this throw true try typedef typename union
    unsigned using virtual void volatile while""".split())
BUILTIN_TYPES = set(
    """void bool char short int long float double signed unsigned auto const size_t ptrdiff_t
    int8_t int16_t int32_t int64_t uint8_t uint16_t uint32_t uint64_t intptr_t uintptr_t
    T U V vf vi vd typename class struct std string vector array""".split())
# Calls whose arguments are not code under test: messages, assertions, sizes.
SKIP_CALLS = {"assert", "static_assert", "fail", "TG_REGISTER_OP", "TG_REGISTER_SAMPLES",
              "alignas", "__attribute__", "reserve", "setw", "setprecision", "sizeof", "alignof"}
# Literals are mutated where they are offsets, bounds and starts: next to one of these.
LITERAL_BEFORE = {"+", "-", "*", "/", "%", "<", ">", "<=", ">=", "==", "!=", "[", "=", "+=", "-=",
                  "return", "?", ":"}
LITERAL_AFTER = {"+", "-", "*", "/", "%", "<", ">", "<=", ">=", "==", "!=", "]", "?"}
SKIP_MARK = "mutate: skip"


def declared_types(paths: list[str]) -> set[str]:
    """Names declared as types anywhere in the tree, to tell `T* p` from `a * b`."""
    names = set(BUILTIN_TYPES)
    pat = re.compile(r"\b(?:struct|class|union|enum(?:\s+class)?|typename)\s+([A-Za-z_]\w*)"
                     r"|\busing\s+([A-Za-z_]\w*)\s*="
                     r"|\btypedef\b[^;]*?\b([A-Za-z_]\w*)\s*(?:__attribute__\s*\(\(.*?\)\))?\s*;")
    for p in paths:
        with open(p, encoding="utf-8", errors="replace") as fh:
            for m in pat.finditer(fh.read()):
                names.update(g for g in m.groups() if g)
    return names


@dataclasses.dataclass
class Mutant:
    file: str
    line: int
    start: int  # the replaced characters of the file: [start, end)
    end: int
    new: str
    kind: str  # relational arithmetic offset flag
    desc: str  # "< -> <="
    original: str  # the line, before and after
    mutated: str
    key: str = ""

    def apply(self, text: str) -> str:
        return text[:self.start] + self.new + text[self.end:]

    @property
    def area(self) -> str:
        return area_of(self.file)


def area_of(path: str) -> str:
    """ops, engine/kernels, engine/core, engine/check"""
    parts = path.split("/")
    return "/".join(parts[:2]) if parts[0] == "engine" else parts[0]


class Analyzer:
    """The mutants of one file: the tokens that may change, and into what."""

    def __init__(self, path: str, text: str, types: set[str]):
        self.path, self.text, self.types = path, text, types
        self.toks = lex(text)
        self.lines = text.split("\n")
        n = len(self.toks)
        self.match = [-1] * n  # the matching bracket of ( [ { ) ] }
        self.skip = [False] * n  # not code under test
        self.in_template = [False] * n  # inside a template argument or parameter list
        self._match_brackets()
        self._find_templates()
        self._find_skips()

    # -- structure --------------------------------------------------------------------------
    def _match_brackets(self):
        stack = []
        for i, t in enumerate(self.toks):
            if t.kind != "punct":
                continue
            if t.text in "([{":
                stack.append(i)
            elif t.text in ")]}":
                want = {")": "(", "]": "[", "}": "{"}[t.text]
                while stack and self.toks[stack[-1]].text != want:
                    stack.pop()
                if stack:
                    j = stack.pop()
                    self.match[j], self.match[i] = i, j

    def _find_templates(self):
        """Mark `name<...>` argument lists and `template <...>` parameter lists: their
        angle brackets are not comparisons, their contents are types and constants."""
        toks = self.toks
        inside_ok = {"::", ",", "*", "&", "...", "<", ">", ">>", "(", ")", "[", "]"}
        for i, t in enumerate(toks):
            if t.text != "<" or t.kind != "punct" or i == 0:
                continue
            prev = toks[i - 1]
            if prev.kind != "ident" or prev.text == "operator" or (i >= 2 and toks[i - 2].text == "operator"):
                continue
            depth, paren, j, ok = 1, 0, i + 1, False
            while j < min(len(toks), i + 80):
                u = toks[j]
                if u.kind in ("ident", "number"):
                    if u.text in ("return", "if", "for", "while"):
                        break
                elif u.kind != "punct" or u.text not in inside_ok:
                    break
                elif u.text == "(":
                    paren += 1
                elif u.text == ")":
                    paren -= 1
                    if paren < 0:
                        break
                elif u.text == "<":
                    depth += 1
                elif u.text in (">", ">>"):
                    depth -= 1 if u.text == ">" else 2
                    if depth <= 0:
                        ok = depth == 0 or depth == -1 and u.text == ">>"
                        break
                j += 1
            if ok and paren == 0:
                for k in range(i, j + 1):
                    self.in_template[k] = True
        for i, t in enumerate(toks):
            if t.text == "template" and i + 1 < len(toks) and toks[i + 1].text == "<":
                depth, j = 0, i + 1
                while j < len(toks):
                    depth += {"<": 1, ">": -1, ">>": -2}.get(toks[j].text, 0)
                    if depth <= 0:
                        break
                    j += 1
                self._mark(i, j)

    def _mark(self, a: int, b: int):
        for k in range(a, min(b + 1, len(self.toks))):
            self.skip[k] = True

    def _after_first_arg(self, open_idx: int) -> int:
        """The comma after the first argument of the call opened at open_idx."""
        j, end = open_idx + 1, self.match[open_idx]
        while j < end:
            if self.toks[j].text in "([{" and self.match[j] > 0:
                j = self.match[j]
            elif self.toks[j].text == "," and not self.in_template[j]:
                return j
            j += 1
        return end

    def _find_skips(self):
        toks = self.toks
        for i, t in enumerate(toks):
            if t.kind == "pp" or SKIP_MARK in self.lines[t.line - 1]:
                self.skip[i] = True
            if t.kind != "ident":
                continue
            nxt = toks[i + 1].text if i + 1 < len(toks) else ""
            call = nxt == "(" and self.match[i + 1] > 0
            if t.text in SKIP_CALLS and call:
                self._mark(i, self.match[i + 1])
            elif t.text == "TG_CHECK" and call:  # the condition is code, the rest the message
                self._mark(self._after_first_arg(i + 1), self.match[i + 1])
            elif t.text in ("requires", "decltype", "noexcept") and call:
                self._mark(i, self.match[i + 1])
            elif t.text == "throw":
                j = i
                while j < len(toks) and toks[j].text != ";":
                    j = self.match[j] if toks[j].text in "([{" and self.match[j] > 0 else j
                    j += 1
                self._mark(i, j)
            elif t.text == "if" and nxt == "constexpr" and i + 2 < len(toks) and self.match[i + 2] > 0:
                self._mark(i, self.match[i + 2])
            elif t.text == "samples" and call:  # the body of samples(): test data
                j = self.match[i + 1] + 1
                while j < len(toks) and toks[j].text in ("const", "noexcept", "override"):
                    j += 1
                if j < len(toks) and toks[j].text == "{" and self.match[j] > 0:
                    self._mark(i, self.match[j])
            elif t.text == "operator":
                self._mark(i, i + 2)

    # -- classification ---------------------------------------------------------------------
    def ends_operand(self, i: int) -> bool:
        """Does token i end an operand, so that the operator after it is binary?"""
        if i < 0:
            return False
        t = self.toks[i]
        if t.kind in ("number", "char"):
            return True
        if t.kind == "ident":
            return t.text in ("this", "true", "false", "nullptr") or \
                (t.text not in KEYWORDS and t.text not in self.types)
        return t.text in (")", "]")

    def operand_is(self, i: int, literals: tuple[str, ...]) -> bool:
        """Is the right operand of the operator at i one of these literals, alone?"""
        if i + 1 >= len(self.toks):
            return False
        t = self.toks[i + 1]
        after = self.toks[i + 2].text if i + 2 < len(self.toks) else ";"
        return t.kind == "number" and t.text.rstrip("fFlLuU") in literals and \
            after in (")", ";", ",", "]", "}", "+", "-", "?", ":", "<", ">", "==", "!=", "<=", ">=", "&&", "||")

    def next_to_string(self, i: int) -> bool:
        return (i > 0 and self.toks[i - 1].kind == "string") or \
            (i + 1 < len(self.toks) and self.toks[i + 1].kind == "string")

    def declares_array(self, i: int) -> bool:
        """Is the `[` at i the size of an array in a declaration (`double d[3][n]`)?"""
        j = i - 1
        while j > 0 and self.toks[j].text == "]" and self.match[j] > 0:
            j = self.match[j] - 1
        before = self.toks[j - 1] if j > 0 else None
        return before is not None and before.kind == "ident" and \
            (before.text in self.types or before.text in KEYWORDS and before.text not in ("return", "this"))

    def in_shift(self, i: int) -> bool:
        """A shift operand (`1 << k`, `os << x`): powers of two and formatting."""
        before = self.toks[i - 1].text if i > 0 else ""
        after = self.toks[i + 1].text if i + 1 < len(self.toks) else ""
        return before in ("<<", ">>") or after in ("<<", ">>") or \
            (before == "(" and after == ")" and i + 2 < len(self.toks) and self.toks[i + 2].text in ("<<", ">>"))

    # -- the mutants ------------------------------------------------------------------------
    def mutants(self) -> list[Mutant]:
        out: list[Mutant] = []
        toks = self.toks

        def add(kind, i, new, desc, start=None, end=None):
            a = toks[i].start if start is None else start
            b = toks[i].end if end is None else end
            line = toks[i].line
            original = self.lines[line - 1]
            line_start = self.text.rfind("\n", 0, a) + 1
            mutated = self.apply_to_line(line_start, a, b, new)
            out.append(Mutant(self.path, line, a, b, new, kind, desc, original.strip(), mutated.strip()))

        for i, t in enumerate(toks):
            if self.skip[i] or self.in_template[i]:
                continue
            s = t.text
            prev = toks[i - 1] if i > 0 else None
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            binary = self.ends_operand(i - 1)
            if t.kind == "punct":
                if s in RELATIONAL and (s not in ("<", ">") or binary):
                    add("relational", i, RELATIONAL[s], f"{s} -> {RELATIONAL[s]}")
                elif s in ("+", "-") and binary and not self.next_to_string(i):
                    if not self.operand_is(i, ("0", "0.0", "0.")):
                        add("arithmetic", i, ARITHMETIC[s], f"{s} -> {ARITHMETIC[s]}")
                elif s in ("*", "/") and binary:
                    if nxt is not None and nxt.text in (")", ",", ">", "=", "&", ";", "const"):
                        continue  # a pointer type: `int*)`, `T* const`
                    if not self.operand_is(i, ("1", "1.0", "1.")):
                        add("arithmetic", i, ARITHMETIC[s], f"{s} -> {ARITHMETIC[s]}")
                elif s in ("+=", "-=", "*=", "/=") and not self.next_to_string(i):
                    add("arithmetic", i, ARITHMETIC[s], f"{s} -> {ARITHMETIC[s]}")
                elif s in LOGICAL and binary:
                    add("flag", i, LOGICAL[s], f"{s} -> {LOGICAL[s]}")
                elif s == "!" and nxt is not None and (nxt.kind == "ident" or nxt.text == "("):
                    add("flag", i, "", "! dropped")
                elif s == "[" and binary and self.match[i] > i + 1 and not self.declares_array(i):
                    close = self.match[i]
                    if any(self.skip[i:close + 1]) or toks[i + 1].text == "[" or \
                            close == i + 2 and toks[i + 1].kind == "number":
                        continue  # `[[attribute]]`; `a[2]` is the literal's own mutant
                    a, b = toks[i + 1].start, toks[close - 1].end
                    inner = self.text[a:b]
                    if "\n" in inner:
                        continue
                    e = inner if close == i + 2 else f"({inner})"
                    add("offset", i + 1, f"{e} + 1", f"[{inner}] -> [{e} + 1]", start=a, end=b)
                    add("offset", i + 1, f"{e} - 1", f"[{inner}] -> [{e} - 1]", start=a, end=b)
            elif t.kind == "ident" and s in BOOLEAN:
                add("flag", i, BOOLEAN[s], f"{s} -> {BOOLEAN[s]}")
            elif t.kind == "number":
                m = re.fullmatch(r"([1-9][0-9]*|0)([uUlLzZ]*)", s)
                if not m or self.in_shift(i):
                    continue
                if prev is not None and prev.text == "[" and (not self.ends_operand(i - 2) or self.declares_array(i - 1)):
                    continue  # an array size in a declaration
                # `f(0)` and `input(1)` are choices of argument, not offsets: left out
                # unless the literal takes part in arithmetic or a comparison.
                near_op = nxt is not None and nxt.text in LITERAL_AFTER
                if prev is not None and prev.text == "(" and i >= 2 and toks[i - 2].kind == "ident" \
                        and toks[i - 2].text not in KEYWORDS and not near_op:
                    continue
                if not (near_op or prev is not None and prev.text in LITERAL_BEFORE):
                    continue
                v, suffix = int(m.group(1)), m.group(2)
                for w in ([1] if v == 0 else [0] if v == 1 else [v + 1, v - 1]):
                    add("offset", i, f"{w}{suffix}", f"{s} -> {w}{suffix}")
        # A key that survives edits elsewhere in the file: the line's text, the
        # mutation, and which occurrence of that pair it is.
        seen: dict[str, int] = defaultdict(int)
        for m in out:
            base = f"{m.file}|{m.original}|{m.desc}"
            seen[base] += 1
            m.key = f"{base}|{seen[base]}"
        return out

    def apply_to_line(self, line_start: int, a: int, b: int, new: str) -> str:
        line_end = self.text.find("\n", b)
        line_end = len(self.text) if line_end < 0 else line_end
        return self.text[line_start:a] + new + self.text[b:line_end]


# --------------------------------------------------------------------------------------------
# Choosing the files and the sample


def git_files(repo: str) -> list[str]:
    """Tracked and untracked files, not ignored ones."""
    out = subprocess.run(["git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         check=True, capture_output=True).stdout.decode()
    return sorted(f for f in out.split("\0") if f and os.path.isfile(os.path.join(repo, f)))


def translation_units_including(repo: str, files: list[str]) -> dict[str, set[str]]:
    """For every source file, the .cpp files that include it, directly or not."""
    include_re = re.compile(r'^\s*#\s*(?:include|define\s+TG_SIMD_BODY)\s+"([^"]+)"', re.M)
    sources = [f for f in files if f.endswith(SOURCE_EXT)]
    known = set(sources)
    includes: dict[str, set[str]] = {}
    for f in sources:
        with open(os.path.join(repo, f), encoding="utf-8", errors="replace") as fh:
            names = include_re.findall(fh.read())
        includes[f] = {c for name in names
                       for c in (name, os.path.normpath(os.path.join(os.path.dirname(f), name)), "include/" + name)
                       if c in known}
    users: dict[str, set[str]] = defaultdict(set)
    for tu in sources:
        if not tu.endswith(".cpp"):
            continue
        seen, todo = {tu}, [tu]
        while todo:
            for d in includes.get(todo.pop(), ()):
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        for f in seen:
            users[f].add(tu)
    return users


def rank(seed: int, m: Mutant) -> str:
    return hashlib.sha1(f"{seed}:{m.key}".encode()).hexdigest()


def take_sample(pool: list[Mutant], seed: int, total: int | None, per_file: int | None) -> list[Mutant]:
    """The lowest-ranked mutants: per_file of every file, or total spread evenly over the areas."""
    groups: dict[str, list[Mutant]] = defaultdict(list)
    for m in pool:
        groups[m.file if per_file else m.area].append(m)
    for g in groups.values():
        g.sort(key=lambda m: rank(seed, m))
    if per_file:
        quota = {g: min(per_file, len(ms)) for g, ms in groups.items()}
    else:
        quota, left, open_groups = {g: 0 for g in groups}, total, sorted(groups)
        while left > 0 and open_groups:  # equal shares; what a small area cannot take goes to the others
            share = max(1, left // len(open_groups))
            for g in list(open_groups):
                take = min(share, len(groups[g]) - quota[g], left)
                quota[g] += take
                left -= take
                if quota[g] == len(groups[g]):
                    open_groups.remove(g)
    chosen = {id(m) for g, ms in groups.items() for m in ms[:quota[g]]}
    return [m for m in pool if id(m) in chosen]


# --------------------------------------------------------------------------------------------
# The copy of the tree, its build, and running one mutant


class Interrupted(Exception):
    pass


def on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


class Workspace:
    def __init__(self, args, files: list[str]):
        self.args = args
        self.root = os.path.abspath(args.build_root)
        self.src = os.path.join(self.root, "src")
        self.build = os.path.join(self.root, "build")
        self.files = files
        self.mtime = 0.0

    def run(self, cmd: list[str], timeout: float | None, cwd: str | None = None):
        """(exit code, or "timeout"; output). The command and its children are killed on a timeout."""
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
            return proc.returncode, out.decode(errors="replace")
        except subprocess.TimeoutExpired:
            return "timeout", ""
        finally:
            if proc.poll() is None:  # a timeout, Ctrl-C or SIGTERM: the whole process group goes
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()

    def git(self, *cmd: str) -> int:
        return subprocess.run(["git", "-C", self.src, "-c", "user.name=mutate", "-c", "user.email=mutate@localhost",
                               *cmd], capture_output=True).returncode

    def sync(self):
        """Make the copy equal the working tree, rewriting only the files that differ."""
        os.makedirs(self.src, exist_ok=True)
        for f in self.files:
            with open(os.path.join(REPO, f), "rb") as fh:
                data = fh.read()
            dest = os.path.join(self.src, f)
            try:
                with open(dest, "rb") as fh:
                    if fh.read() == data:
                        continue
            except OSError:
                pass
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as fh:
                fh.write(data)
        wanted = set(self.files)
        for top, dirs, names in os.walk(self.src):
            dirs[:] = [d for d in dirs if d != ".git"]
            for name in names:
                if os.path.relpath(os.path.join(top, name), self.src) not in wanted:
                    os.remove(os.path.join(top, name))
        # The copy is a repository of its own, so that `git diff --quiet` can say it is clean.
        if not os.path.isdir(os.path.join(self.src, ".git")):
            self.git("init", "-q")
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", "the working tree at the start of a run")

    def configure_and_build(self):
        if not os.path.exists(os.path.join(self.build, "CMakeCache.txt")):
            rc, out = self.run(["cmake", "-S", self.src, "-B", self.build, "-G", "Ninja",
                                f"-DCMAKE_BUILD_TYPE={self.args.build_type}",
                                f"-DCMAKE_CXX_FLAGS_{self.args.build_type.upper()}={self.args.cxx_flags}"], 600)
            if rc != 0:
                sys.exit(f"mutate.py: configuring {self.build} failed:\n{out[-3000:]}")
        rc, out = self.compile(None)
        if rc != 0:
            sys.exit(f"mutate.py: the unmodified tree does not build:\n{out[-5000:]}")

    def compile(self, timeout):
        return self.run(["ninja", "-C", self.build, "-j", str(self.args.jobs), "tapegrad_tests"], timeout)

    def write(self, rel: str, text: str):
        path = os.path.join(self.src, rel)
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        # Strictly newer than the last write, whatever the file system's clock resolution.
        now = max(time.time(), self.mtime + 0.01)
        os.utime(path, (now, now))
        self.mtime = now

    def focused_tests(self, rel: str) -> list[str]:
        """The test files that belong to a source file (FOCUS), and the sweep for ops and kernels."""
        stem = os.path.splitext(os.path.basename(rel))[0]
        words = (set(stem.split("_")) - {"simd", "op"}) | {stem}
        wanted = {w2 for w in words for w2 in FOCUS.get(w, [w])}

        def belongs(test: str) -> bool:  # "tests/test_conv_pool.cpp": "conv_pool", "conv" or "pool"
            name = test[len("tests/test_"):-len(".cpp")]
            return any(w == name or w in name.split("_") for w in wanted)
        tests = sorted(os.path.basename(f) for f in self.files
                       if f.startswith("tests/test_") and f.endswith(".cpp") and belongs(f))
        if rel.startswith(("ops/", "engine/kernels/")):
            tests.append(SWEEP_TEST + ".cpp")
        return tests

    def phases(self, rel: str) -> list[tuple[str, list[str]]]:
        """The focused test files, then the rest of the suite: together, every test case once;
        then the ctest entries labelled `process`, cases that need a process of their own (an
        environment variable read at start). The layering checks, ctest entries too, look at
        includes, which no mutant changes."""
        binary = [os.path.join(self.build, "tests", "tapegrad_tests"), "--abort-after=1", "--no-version",
                  "--no-colors"]
        process = ("process", ["ctest", "--test-dir", self.build, "-L", "process", "--timeout", "60"])
        tests = ",".join("*" + t for t in self.focused_tests(rel))
        if not tests:
            return [("full", binary), process]
        return [("focused", binary + ["--source-file=" + tests]), ("rest", binary + ["--source-file-exclude=" + tests]),
                process]

    def baseline(self) -> dict[str, float]:
        """Run the unmodified suite once (it must pass): the seconds each test file takes,
        from which every phase's timeout follows."""
        cmd = [os.path.join(self.build, "tests", "tapegrad_tests"), "--reporters=xml", "--duration=true"]
        rc, out = self.run(cmd, 3600, cwd=self.build)
        if rc != 0:
            sys.exit(f"mutate.py: the unmodified suite fails:\n{out[-3000:]}")
        rc, more = self.run(self.phases("")[-1][1], 600, cwd=self.build)
        if rc != 0:
            sys.exit(f"mutate.py: the unmodified suite's `process` entries fail:\n{more[-3000:]}")
        seconds: dict[str, float] = defaultdict(float)
        case_re = re.compile(r'<TestCase name="[^"]*" filename="([^"]*)"[^>]*[^/]>\s*'
                             r'<OverallResultsAsserts [^>]*duration="([^"]+)"')
        for path, duration in case_re.findall(out):
            seconds[os.path.basename(path)] += float(duration)
        return seconds

    def timeout(self, cmd: list[str], seconds: dict[str, float]) -> float:
        """A phase's limit: --timeout-factor times what its test files took unmodified, plus --timeout-slack."""
        if cmd[-1].startswith("--source-file="):
            files = {f.lstrip("*") for f in cmd[-1].split("=", 1)[1].split(",")}
            base = sum(t for f, t in seconds.items() if f in files)
        elif cmd[0] == "ctest":  # a few short cases, each limited by ctest itself
            base = 0.0
        elif cmd[-1].startswith("--source-file-exclude="):
            files = {f.lstrip("*") for f in cmd[-1].split("=", 1)[1].split(",")}
            base = sum(t for f, t in seconds.items() if f not in files)
        else:
            base = sum(seconds.values())
        return self.args.timeout_factor * base + self.args.timeout_slack

    def run_mutant(self, m: Mutant, original_text: str, baseline_s: dict[str, float]) -> dict:
        res = {"key": m.key, "file": m.file, "line": m.line, "kind": m.kind, "mutation": m.desc,
               "original": m.original, "mutated": m.mutated}
        t0 = time.monotonic()
        try:
            self.write(m.file, m.apply(original_text))
            rc, out = self.compile(self.args.build_timeout)
            res["build_s"] = round(time.monotonic() - t0, 1)
            if rc != 0:
                res["status"] = "stillborn"
                errors = [line for line in out.splitlines() if "error" in line]
                res["detail"] = (errors[0] if errors else f"build: {rc}")[-240:]
                return res
            t1 = time.monotonic()
            res["status"] = "survived"
            for phase, cmd in self.phases(m.file):
                limit = self.timeout(cmd, baseline_s)
                rc, out = self.run(cmd, limit, cwd=self.build)
                if rc != 0:
                    res["status"], res["phase"] = "killed", phase
                    res["detail"] = describe_failure(rc, out, limit)
                    break
            res["test_s"] = round(time.monotonic() - t1, 1)
            return res
        finally:
            self.write(m.file, original_text)


def describe_failure(rc, out: str, limit: float) -> str:
    if rc == "timeout":
        return f"timeout after {limit:.0f} s"
    # doctest prints a block per test case that reported anything (messages too):
    # the failing case is the first block with an error in it.
    for block in re.split(r"^={20,}$", out, flags=re.M):
        name = re.search(r"TEST CASE:\s+(.*)", block)
        if name and re.search(r"\b(ERROR|FATAL ERROR|TEST CASE FAILED)\b", block):
            return name.group(1).strip()[:160]
    return f"exit {rc}" if isinstance(rc, int) and rc >= 0 else f"signal {-rc}"


# --------------------------------------------------------------------------------------------
# Results and the report


def load_results(path: str) -> dict[str, dict]:
    """The last result for each mutant."""
    results: dict[str, dict] = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    r = json.loads(line)
                    results[r["key"]] = r
    return results


def disposition(r: dict) -> str:
    if r["status"] == "survived" and r["key"] in EQUIVALENT:
        return "equivalent"
    if r["status"] == "survived" and r["key"] in CAUGHT_BY_SANITIZER:
        return "killed"
    return r["status"]


def summary(results: list[dict]) -> str:
    lines = []

    def row(name, rs):
        c = defaultdict(int)
        for r in rs:
            c[disposition(r)] += 1
        counted = c["killed"] + c["survived"]
        rate = f"{100.0 * c['killed'] / counted:.1f}%" if counted else "-"
        return f"{name:<34} {len(rs):>7} {c['stillborn']:>9} {c['killed']:>6} {c['survived']:>8} " \
               f"{c['equivalent']:>10} {rate:>9}", c

    header = f"{'':<34} {'mutants':>7} {'stillborn':>9} {'killed':>6} {'survived':>8} {'equivalent':>10} {'kill rate':>9}"
    for group in ("area", "file"):
        by = defaultdict(list)
        for r in results:
            by[r["file"] if group == "file" else area_of(r["file"])].append(r)
        lines.append(header.replace(" " * 34, f"{group:<34}", 1))
        lines += [row(g, by[g])[0] for g in sorted(by)]
        lines.append("")
    text, c = row("total", results)
    lines.append(text)
    counted = c["killed"] + c["survived"]
    lines.append(f"kill rate = killed / (killed + survived) = {c['killed']}/{counted}"
                 + (f" = {100.0 * c['killed'] / counted:.1f}%" if counted else "")
                 + "; stillborn (do not compile) and equivalent mutants are not counted")
    asan = [r for r in results if r["status"] == "survived" and r["key"] in CAUGHT_BY_SANITIZER]
    if asan:
        lines += ["", "killed only by the sanitizer suite (counted as killed):"]
        for r in asan:
            lines.append(f"  {r['file']}:{r['line']}: {r['mutation']}")
            lines.append(f"      + {r['mutated']}")
            lines.append(f"      ({CAUGHT_BY_SANITIZER[r['key']]})")
    for title, status in (("survivors", "survived"), ("equivalent", "equivalent")):
        rs = [r for r in results if disposition(r) == status]
        if rs:
            lines += ["", f"{title}:"]
            for r in rs:
                lines.append(f"  {r['file']}:{r['line']}: {r['mutation']}")
                lines.append(f"      - {r['original']}")
                lines.append(f"      + {r['mutated']}")
                if status == "equivalent":
                    lines.append(f"      ({EQUIVALENT[r['key']]})")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", action="append", metavar="GLOB",
                    help="files to mutate (repeatable; default " + " ".join(DEFAULT_FILES)
                    + ", without the headers more than --max-users translation units include)")
    ap.add_argument("--max-users", type=int, default=4,
                    help="with the default files: a header included by more .cpp files than this is left out, "
                    "each of its mutants would rebuild them all (default 4)")
    ap.add_argument("--kinds", help="comma-separated: relational,arithmetic,offset,flag (default all)")
    ap.add_argument("--sample", type=int, metavar="N", help="N mutants, spread evenly over the areas")
    ap.add_argument("--per-file", type=int, metavar="N", help="N mutants of every file")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--list", action="store_true", help="print the chosen mutants and their keys, run nothing")
    ap.add_argument("--summary", action="store_true",
                    help="print the report of the results file (of the chosen mutants, with a selection), run nothing")
    ap.add_argument("--skip", type=int, default=0, metavar="N",
                    help="skip the first N mutants to run, in run order (resuming a run whose results file was "
                         "lost); with --list, print the ones left")
    ap.add_argument("--at", action="append", metavar="FILE:LINE",
                    help="only the chosen mutants on this line (repeatable): to run again the survivors of a "
                         "sample whose results file was lost")
    ap.add_argument("--rerun-survivors", action="store_true",
                    help="run again the chosen mutants that survived in the results file")
    ap.add_argument("--build-root", default=os.path.join(REPO, "build-mut"))
    ap.add_argument("--build-type", default="Release")
    ap.add_argument("--cxx-flags", default="-O1 -DNDEBUG",
                    help="the build type's flags: -O1 rebuilds a file fastest and keeps the tests fast")
    ap.add_argument("--jobs", type=int, default=2, help="ninja -j (default 2)")
    ap.add_argument("--build-timeout", type=float, default=900)
    ap.add_argument("--timeout-factor", type=float, default=3.0,
                    help="a test phase times out after this many times its unmodified duration")
    ap.add_argument("--timeout-slack", type=float, default=60.0,
                    help="seconds added to every phase's limit: the machine's load varies (default 60)")
    ap.add_argument("--results", help="the results file (default BUILD_ROOT/results.jsonl)")
    args = ap.parse_args()
    results_path = args.results or os.path.join(args.build_root, "results.jsonl")

    files = git_files(REPO)
    users = translation_units_including(REPO, files)
    globs = args.files or DEFAULT_FILES
    targets = [f for f in files if f.endswith(SOURCE_EXT) and any(fnmatch.fnmatch(f, g) for g in globs)
               and (args.files or len(users.get(f, ())) <= args.max_users)]
    types = declared_types([os.path.join(REPO, f) for f in files if f.endswith(SOURCE_EXT)])
    texts = {}
    for f in targets:
        with open(os.path.join(REPO, f), encoding="utf-8", newline="") as fh:
            texts[f] = fh.read()
    pool = [m for f in targets for m in Analyzer(f, texts[f], types).mutants()]
    if args.kinds:
        pool = [m for m in pool if m.kind in args.kinds.split(",")]
    chosen = take_sample(pool, args.seed, args.sample, args.per_file) if args.sample or args.per_file else pool
    if args.at:  # a selection within the sample, so the mutants keep their sample's identity
        chosen = [m for m in chosen if f"{m.file}:{m.line}" in set(args.at)]

    done = load_results(results_path)
    if args.summary:  # the chosen mutants that have a result; all of them without a selection
        if args.sample or args.per_file or args.files:
            results = [done[m.key] for m in chosen if m.key in done]
        else:
            results = sorted(done.values(), key=lambda r: (r["file"], r["line"]))
        print(summary(results))
        return
    if args.list and not args.skip:
        for m in chosen:
            status = done[m.key]["status"] if m.key in done else "not run"
            print(f"{m.file}:{m.line}: [{m.kind}] {m.desc}   ({status})\n      - {m.original}\n"
                  f"      + {m.mutated}\n      key {m.key}")
        per_area = defaultdict(int)
        for m in chosen:
            per_area[m.area] += 1
        print(f"{len(chosen)} mutants chosen of {len(pool)} in {len(targets)} files: "
              + ", ".join(f"{a} {n}" for a, n in sorted(per_area.items())))
        return

    if args.rerun_survivors:
        todo = [m for m in chosen if m.key in done and disposition(done[m.key]) == "survived"]
    else:
        todo = [m for m in chosen if m.key not in done]
    # One file after another (fewer rebuilds), the files taken from the areas in
    # turn, so that a run stopped early has still reached every area.
    by_area: dict[str, list[str]] = defaultdict(list)
    for f in sorted({m.file for m in todo}):
        by_area[area_of(f)].append(f)
    turns = [f for k in range(max(map(len, by_area.values()), default=0)) for a in sorted(by_area)
             for f in by_area[a][k:k + 1]]
    todo.sort(key=lambda m: (turns.index(m.file), m.start))
    if args.skip:  # the results of the first N were lost: run the rest, and say what was skipped
        skipped, todo = todo[:args.skip], todo[args.skip:]
        per_area = defaultdict(int)
        for m in skipped:
            per_area[m.area] += 1
        print(f"skipping the first {len(skipped)} in run order: "
              + ", ".join(f"{a} {n}" for a, n in sorted(per_area.items())), flush=True)
        if args.list:
            for m in todo:
                print(f"{m.file}:{m.line}: [{m.kind}] {m.desc}")
            return
    print(f"mutate.py (pid {os.getpid()}): {len(chosen)} mutants chosen (seed {args.seed}), {len(todo)} to run",
          flush=True)
    if not todo:
        print(summary([done[m.key] for m in chosen if m.key in done]))
        return

    ws = Workspace(args, files)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    clean = True
    try:
        ws.sync()
        ws.configure_and_build()
        baseline_s = ws.baseline()
        print(f"unmodified suite: {sum(baseline_s.values()):.1f} s in its test cases", flush=True)
        started = time.monotonic()
        os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
        with open(results_path, "a", encoding="utf-8") as out:
            for n, m in enumerate(todo, 1):
                res = ws.run_mutant(m, texts[m.file], baseline_s)
                res["seed"] = args.seed
                res["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                out.write(json.dumps(res) + "\n")
                out.flush()
                done[m.key] = res
                eta = (time.monotonic() - started) / n * (len(todo) - n) / 60
                detail = f"; {res['detail']}" if "detail" in res else ""
                print(f"[{n}/{len(todo)}] {res['status']:<9} {m.file}:{m.line} {m.desc}  "
                      f"({res['build_s']} + {res.get('test_s', 0)} s{detail})  eta {eta:.0f} min", flush=True)
    except (KeyboardInterrupt, Interrupted) as e:
        print(f"\nmutate.py: interrupted ({e or 'Ctrl-C'}); the file is restored, the results kept", file=sys.stderr)
    finally:
        if os.path.isdir(os.path.join(ws.src, ".git")):
            clean = ws.git("diff", "--quiet") == 0
            print(f"copy of the tree restored: {'yes' if clean else 'NO: see git -C ' + ws.src + ' diff'}",
                  flush=True)
    print()
    print(summary([done[m.key] for m in chosen if m.key in done]))
    if not clean:
        sys.exit(1)


if __name__ == "__main__":
    main()
