#!/usr/bin/env bash
# compare.sh PROBE WHOLE: the registry PROBE lists equals the one WHOLE (the
# same program, linked with the whole archive) lists, in any order.
set -euo pipefail
n=$("$1" | wc -l)
[[ "$n" -gt 0 ]] || { echo "no op registered"; exit 1; }
diff <("$1" | sort) <("$2" | sort)
echo "$n ops, the same in both"
