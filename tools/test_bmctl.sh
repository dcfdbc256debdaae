#!/usr/bin/env bash
# bmctl end to end: build a small persistent map with put, then info / verify / dump / get.
set -euo pipefail
BMCTL=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/d0" "$dir/d1"
R="$dir/d0/restart"
K1=$(printf '11%.0s' $(seq 32))
K2=$(printf 'a2%.0s' $(seq 32))
"$BMCTL" put --restart "$R" --elem-size 8 --refcount 3 --elem 0100000000000000 --elem 0200000000000000 "$K1" "$dir/d0" "$dir/d1"
"$BMCTL" put --restart "$R" --refcount 7 "$K2" "$dir/d0" "$dir/d1"
"$BMCTL" info --restart "$R" -v "$dir/d0" "$dir/d1" | grep -q '^entries *2$'
"$BMCTL" info --json --restart "$R" "$dir/d0" "$dir/d1" | grep -q '"entries":2'
"$BMCTL" verify --restart "$R" "$dir/d0" "$dir/d1" | grep -q '^clean$'
"$BMCTL" dump --restart "$R" "$dir/d0" "$dir/d1" | grep -q "^$K1  refcount 3  n 2  0100000000000000 0200000000000000$"
"$BMCTL" get --json --restart "$R" "$K2" "$dir/d0" "$dir/d1" | grep -q '"refcount":7,"n":0'
# An absent key exits 1, a malformed one 2, a wrong restart file 2.
set +e
"$BMCTL" get --restart "$R" "$(printf '00%.0s' $(seq 32))" "$dir/d0" "$dir/d1" 2>/dev/null; [ $? -eq 1 ] || exit 1
"$BMCTL" get --restart "$R" zz "$dir/d0" "$dir/d1" 2>/dev/null; [ $? -eq 2 ] || exit 1
"$BMCTL" info --restart "$dir/nope" "$dir/d0" "$dir/d1" 2>/dev/null; [ $? -eq 2 ] || exit 1
echo "bmctl: all checks passed"
