#!/usr/bin/env bash
# Sets everything up, builds, and runs the stress harness on a temporary drive (extra args go to bm-stress).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-deps.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-release -j"$(nproc)"
exec build-release/stress/bm-stress "$@"
