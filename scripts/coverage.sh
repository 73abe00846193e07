#!/usr/bin/env bash
# Line and branch coverage of the library (ops/, engine/kernels/, the rest of
# engine/) by the test suite, per file.
#
#   1. configures a separate build (default build-cov/) with --coverage -O0,
#      no sanitizers, and builds it;
#   2. runs the whole ctest suite, then the tests that call kernels and ops
#      directly once more with TG_ISA=sse2 (kernels dispatch on the CPU's
#      instruction set; the sweep and the checker's own tests are left out of
#      that pass: they are most of the time and reach no ISA branch the
#      kernel tests, which run every variant, miss);
#   3. collects with lcov, branches on, and keeps only branches of decisions:
#      exception edges (a call's "throw" arc and its fall-through twin) are
#      dropped, and so are branches on lines with no if/for/while/switch/case/
#      ?:/&&/||/TG_CHECK (compiler-made: the clean-up of temporaries at -O0),
#      as lcov 2's --filter branch does (see docs/coverage.md);
#   4. prints one table per part (ops/, engine/kernels/, engine/ other),
#      each with its total, and writes an HTML report.
#
# Not part of .ci/run: the instrumented build and run take about 15 minutes
# on 2 cores. Needs lcov (apt-get install lcov) besides the build's packages.
#
# Usage: scripts/coverage.sh [--no-build] [--no-tests] [--build-dir DIR] [--doc]
#   --no-build   do not configure and build (reuse DIR as it is)
#   --no-tests   collect what the last run left (the .gcda files), do not run ctest
#   --doc        also write the tables into docs/coverage.md, between its markers
# Environment: TG_JOBS (default 2), TG_CTEST_ARGS (extra ctest args of the main pass, e.g. "-E corpus").
# Output: DIR/coverage/{coverage.info,table.md,html/index.html}. Counted: the
# library's objects (headers count as far as the library's code uses them).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR=build-cov
BUILD=1
TESTS=1
DOC=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-build) BUILD=0 ;;
    --no-tests) TESTS=0 ;;
    --doc) DOC=1 ;;
    --build-dir) [[ $# -ge 2 ]] || { echo "--build-dir needs a value" >&2; exit 2; }; BUILD_DIR="$2"; shift ;;
    --build-dir=*) BUILD_DIR="${1#*=}" ;;
    -h|--help) sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
[[ "${BUILD_DIR}" = /* ]] || BUILD_DIR="${REPO}/${BUILD_DIR}"
JOBS="${TG_JOBS:-2}"
OUT="${BUILD_DIR}/coverage"
log() { printf '[coverage] %s\n' "$*" >&2; }
for tool in lcov geninfo genhtml gcov perl; do
  command -v "${tool}" >/dev/null 2>&1 || { echo "${tool} not found (apt-get install lcov)" >&2; exit 1; }
done

# ---------------------------------------------------------------- build
if [[ "${BUILD}" == 1 ]]; then
  # A build type of its own, so no Release/Debug flags mix in. -O0 keeps every
  # source branch a branch of the object code; atomic counters, since the
  # kernels run on the thread pool (racy counters come out wrong, even negative).
  cmake -S "${REPO}" -B "${BUILD_DIR}" -DCMAKE_BUILD_TYPE=Coverage -DTAPEGRAD_SANITIZE=OFF \
    -DCMAKE_CXX_FLAGS_COVERAGE="-O0 -g --coverage -fprofile-update=atomic" \
    -DCMAKE_EXE_LINKER_FLAGS_COVERAGE="--coverage" \
    -DCMAKE_SHARED_LINKER_FLAGS_COVERAGE="--coverage" >/dev/null
  cmake --build "${BUILD_DIR}" -j"${JOBS}"
fi
LIB_OBJ="${BUILD_DIR}/CMakeFiles/tapegrad.dir"
[[ -d "${LIB_OBJ}" ]] || { echo "no library objects in ${LIB_OBJ} (build first)" >&2; exit 1; }

# ---------------------------------------------------------------- tests
if [[ "${TESTS}" == 1 ]]; then
  lcov --quiet --zerocounters --directory "${BUILD_DIR}"
  CTEST_ARGS=()
  [[ -n "${TG_CTEST_ARGS:-}" ]] && read -r -a CTEST_ARGS <<<"${TG_CTEST_ARGS}"
  t0=${SECONDS}
  # A failing test still leaves its coverage: report it, collect anyway.
  ctest --test-dir "${BUILD_DIR}" -j"${JOBS}" --output-on-failure "${CTEST_ARGS[@]}" >"${BUILD_DIR}/ctest-coverage.log" \
    || log "ctest FAILED (collecting anyway; see ${BUILD_DIR}/ctest-coverage.log)"
  tail -n 3 "${BUILD_DIR}/ctest-coverage.log" >&2
  # Its own selection, without TG_CTEST_ARGS: ctest keeps only the last -E, so
  # an -E there would replace this one and run the whole suite again.
  TG_ISA=sse2 ctest --test-dir "${BUILD_DIR}" -j"${JOBS}" --output-on-failure -E "^gradcheck|registry sweep|model gradcheck" \
    >"${BUILD_DIR}/ctest-coverage-sse2.log" || log "ctest with TG_ISA=sse2 FAILED (collecting anyway)"
  # An instruction set this CPU lacks, or no such name: detection decides.
  TG_ISA=avx512 ctest --test-dir "${BUILD_DIR}" -R "smoke" >/dev/null || log "ctest with TG_ISA=avx512 FAILED"
  log "tests took $((SECONDS - t0)) s"
fi

# ---------------------------------------------------------------- collect
mkdir -p "${OUT}"
# geninfo runs gcov through this wrapper, which drops the exception edges from
# gcov's JSON: Debian's lcov 1.16 ignores geninfo_no_exception_branch in JSON
# mode (a second, older intermediate_json_to_info overrides the one that
# honours it), and its text mode cannot read gcc 12's .gcno files. A call
# that may throw ends its block with two arcs, the fall-through and the
# "throw" one, listed in that order: both go, a decision's two arcs stay.
cat >"${OUT}/gcov-no-throw" <<'EOF'
#!/usr/bin/env bash
set -e
gcov "$@"
for f in *.gcov.json.gz; do
  [[ -e "$f" ]] || continue
  perl -MJSON::PP -MIO::Uncompress::Gunzip=gunzip -MIO::Compress::Gzip=gzip -e '
    my $f = shift; my $in; gunzip($f => \$in) or die "gunzip $f";
    my $d = JSON::PP->new->decode($in);
    for my $file (@{$d->{files}}) {
      for my $l (@{$file->{lines}}) {
        my @b = @{$l->{branches}}; my @keep;
        for (my $i = 0; $i < @b; ++$i) {
          if ($i + 1 < @b && $b[$i + 1]{throw} && !$b[$i]{throw}) { ++$i; next; }
          push @keep, $b[$i] unless $b[$i]{throw};
        }
        $l->{branches} = \@keep;
      }
    }
    my $out = JSON::PP->new->encode($d); gzip(\$out => $f) or die "gzip $f";' "$f"
done
EOF
chmod +x "${OUT}/gcov-no-throw"
LCOV_RC=(--rc lcov_branch_coverage=1)
log "collecting (a few minutes)"
geninfo --quiet "${LCOV_RC[@]}" --gcov-tool "${OUT}/gcov-no-throw" --base-directory "${REPO}" \
  --output-filename "${OUT}/all.info" "${LIB_OBJ}" 2>"${OUT}/geninfo.log"
lcov --quiet "${LCOV_RC[@]}" --extract "${OUT}/all.info" "${REPO}/ops/*" "${REPO}/engine/*" \
  --output-file "${OUT}/extracted.info"

# Branches of decisions only: drop branch records on lines without one (after
# removing // comments), then recount BRF/BRH per file.
perl -e '
  my $keep_re = qr/\b(?:if|for|while|switch|case|catch)\b|\?|&&|\|\||\bTG_CHECK\b|\bTG_DISPATCH_\w+/;
  my ($sf, @src, @br, $brf, $brh);
  while (my $l = <STDIN>) {
    if ($l =~ /^SF:(.*)$/) { $sf = $1; open(my $s, "<", $sf) or die "$sf: $!"; @src = <$s>; $brf = $brh = 0; print $l; next; }
    if ($l =~ /^BRDA:(\d+),\d+,\d+,(\S+)$/) {
      my ($line, $taken) = ($1, $2);
      (my $code = $src[$line - 1] // "") =~ s{//.*}{};
      next unless $code =~ $keep_re;
      ++$brf; ++$brh if $taken ne "-" && $taken > 0;
      print $l; next;
    }
    next if $l =~ /^BR[FH]:/;
    if ($l =~ /^end_of_record/) { print "BRF:$brf\nBRH:$brh\n"; }
    print $l;
  }' <"${OUT}/extracted.info" >"${OUT}/coverage.info"
genhtml --quiet "${LCOV_RC[@]}" --prefix "${REPO}" --output-directory "${OUT}/html" "${OUT}/coverage.info" >/dev/null

# One table per part: lines and branches hit / found (LH/LF, BRH/BRF), per file and in total.
awk -v repo="${REPO}/" '
  /^SF:/ { f = substr($0, 4); sub(repo, "", f); if (!(f in seen)) { seen[f] = 1; order[++n] = f } }
  /^LF:/ { lf[f] += substr($0, 4) } /^LH:/ { lh[f] += substr($0, 4) }
  /^BRF:/ { bf[f] += substr($0, 5) } /^BRH:/ { bh[f] += substr($0, 5) }
  function pct(h, t) { return t ? sprintf("%.1f%%", 100 * h / t) : "-" }
  function part(f) { return f ~ /^ops\// ? "ops/" : f ~ /^engine\/kernels\// ? "engine/kernels/" : "engine/ (core, check, io)" }
  END {
    np = split("ops/|engine/kernels/|engine/ (core, check, io)", parts, "|")
    for (p = 1; p <= np; ++p) {
      printf "\n| %s | lines | branches |\n| --- | ---: | ---: |\n", parts[p]
      cmd = "sort"
      LH = LF = BH = BF = 0
      for (i = 1; i <= n; ++i) {
        f = order[i]
        if (part(f) != parts[p]) continue
        printf "| %s | %s (%d/%d) | %s (%d/%d) |\n", f, pct(lh[f], lf[f]), lh[f], lf[f], pct(bh[f], bf[f]), bh[f], bf[f] | cmd
        LH += lh[f]; LF += lf[f]; BH += bh[f]; BF += bf[f]
      }
      close(cmd)
      printf "| **total** | %s (%d/%d) | %s (%d/%d) |\n", pct(LH, LF), LH, LF, pct(BH, BF), BH, BF
    }
  }' "${OUT}/coverage.info" | tee "${OUT}/table.md"

if [[ "${DOC}" == 1 ]]; then
  DOC_FILE="${REPO}/docs/coverage.md"
  begin='<!-- coverage table: generated by scripts/coverage.sh --doc -->'
  end='<!-- end of coverage table -->'
  grep -qF "${begin}" "${DOC_FILE}" && grep -qF "${end}" "${DOC_FILE}" \
    || { echo "${DOC_FILE} lacks the table markers" >&2; exit 1; }
  TABLE="${OUT}/table.md" BEGIN_MARK="${begin}" END_MARK="${end}" perl -i -ne '
    BEGIN { open(my $t, "<", $ENV{TABLE}) or die; local $/; $table = <$t>; }
    if (index($_, $ENV{BEGIN_MARK}) >= 0) { print; print $table, "\n"; $skip = 1; next; }
    $skip = 0 if index($_, $ENV{END_MARK}) >= 0;
    print unless $skip;' "${DOC_FILE}"
  log "table written into docs/coverage.md"
fi
log "report: ${OUT}/html/index.html, table: ${OUT}/table.md"
