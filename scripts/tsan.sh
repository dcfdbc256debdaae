#!/usr/bin/env bash
# Builds with ThreadSanitizer and runs the test suites under it (liburcu's own internals suppressed: see
# tsan.supp). Extra args go to ctest, e.g. ./scripts/tsan.sh -R concurrency
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-deps.sh
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DBM_TSAN=ON -DBM_BUILD_ABLATION=OFF >/dev/null
cmake --build build-tsan -j"$(nproc)"
TSAN_OPTIONS="suppressions=$PWD/tsan.supp halt_on_error=1" \
  ctest --test-dir build-tsan --output-on-failure --timeout 900 -LE bench "$@"
