#!/usr/bin/env bash
# Installs the Debian packages bucketmap builds, tests and benchmarks with (idempotent).
set -euo pipefail
pkgs=(build-essential cmake pkg-config liburcu-dev libjemalloc-dev liburing-dev check liblmdb-dev gnuplot-nox
  systemtap-sdt-dev) # <sys/sdt.h>: the USDT probes (README "Profiling"); the build works without it
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
