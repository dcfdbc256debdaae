#!/usr/bin/env bash
# Every function declared in the public header must be exported by the shared library, and nothing else
# that looks like API may leak: the library is built with hidden visibility, so a definition that forgot
# BM_API links fine against the static library (every in-tree consumer) and fails only for .so users.
# Usage: check_exports.sh HEADER LIBBUCKETMAP.so
set -euo pipefail
header=$1 lib=$2
declared=$(grep -oE '\bbm_[a-z_]+\(' "$header" | tr -d '(' | sort -u)
# Function-pointer typedefs (bm_update_fn, ...) are written "(*bm_x_fn)(": the pattern above skips them.
exported=$(nm -D --defined-only "$lib" | awk '$2 == "T" { print $3 }' | sort -u)
missing=$(comm -23 <(echo "$declared") <(echo "$exported"))
extra=$(comm -13 <(echo "$declared") <(echo "$exported"))
status=0
if [ -n "$missing" ]; then echo "declared in $header but not exported by $lib:"; echo "$missing"; status=1; fi
if [ -n "$extra" ]; then echo "exported by $lib but not declared in $header:"; echo "$extra"; status=1; fi
[ "$status" -eq 0 ] && echo "exports match the header: $(echo "$declared" | wc -l) functions"
exit "$status"
