#!/usr/bin/env bash
# bmctl end to end: build a small persistent map with put, then check info / verify / dump / get output and
# exit codes, usage errors, and that verify exits 1 on a damaged entry.
set -uo pipefail
BMCTL=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/d0" "$dir/d1"
R="$dir/restart"
D=("$dir/d0" "$dir/d1")
K1=$(printf '11%.0s' $(seq 32))
K2=$(printf 'a2%.0s' $(seq 32))
K0=$(printf '00%.0s' $(seq 32))
fails=0
# expect CODE DESCRIPTION -- command...: runs it, output in $out, checks the exit code.
expect() {
    local want=$1 what=$2
    shift 3
    out=$("$@" 2>&1)
    local got=$?
    if [ "$got" -ne "$want" ]; then
        echo "FAIL: $what: exit $got, expected $want"; echo "$out" | sed 's/^/    /'; fails=$((fails + 1)); return 1
    fi
    return 0
}
has() { # has DESCRIPTION REGEX: $out contains a line matching REGEX
    if ! grep -Eq -- "$2" <<<"$out"; then
        echo "FAIL: $1: no line matching /$2/ in:"; echo "$out" | sed 's/^/    /'; fails=$((fails + 1))
    fi
}

expect 0 "help" -- "$BMCTL" --help && has "help" '^commands:'
for c in info verify dump get put; do
    expect 0 "$c --help" -- "$BMCTL" "$c" --help && has "$c --help" "^usage: bmctl $c "
done
expect 2 "no command" -- "$BMCTL"
expect 2 "unknown command" -- "$BMCTL" frob --restart "$R" "${D[@]}"
expect 2 "put without --elem-size on a new map" -- "$BMCTL" put --restart "$R" --refcount 1 "$K1" "${D[@]}"
has "put without --elem-size" 'needs --elem-size'
[ -e "$R" ] && { echo "FAIL: a refused put created the restart file"; fails=$((fails + 1)); }
expect 2 "info on a missing restart file" -- "$BMCTL" info --restart "$R" "${D[@]}"
has "missing restart" 'No such file or directory'

# Build the map: K1 with two elements (option after KEYHEX, as in the synopsis), K2 with none.
expect 0 "put K1 (creates)" -- "$BMCTL" put --restart "$R" --elem-size 8 "$K1" --refcount 3 \
    --elem 0100000000000000 --elem 0200000000000000 "${D[@]}"
expect 0 "put K2" -- "$BMCTL" put --restart "$R" --refcount 18446744073709551615 "$K2" "${D[@]}"
expect 2 "put: bad refcount" -- "$BMCTL" put --restart "$R" --refcount -1 "$K2" "${D[@]}"
expect 2 "put: short elem" -- "$BMCTL" put --restart "$R" --refcount 1 --elem 01 "$K2" "${D[@]}"
has "short elem" 'not exactly 8 bytes of hex'
expect 2 "put: other elem size" -- "$BMCTL" put --restart "$R" --elem-size 16 --refcount 1 "$K2" "${D[@]}"
has "other elem size" 'another elem_size'

expect 0 "info" -- "$BMCTL" info --restart "$R" -v "${D[@]}"
has "info entries" '^entries +2$'
has "info elem_size" '^elem_size +8$'
has "info buckets" '^buckets +256 \(2 allocated\)$'
has "info drive 1" "^1 +[0-9]+ +[0-9]+ .*$dir/d1\$"
has "info bucket table" '^bucket +entries +slots +load'
expect 0 "info --json" -- "$BMCTL" info --json -v --restart "$R" "${D[@]}"
has "info json" '^\{.*"entries":2,.*"buckets":\[\{"bucket":.*\}$'

expect 0 "verify" -- "$BMCTL" verify --restart "$R" "${D[@]}"
has "verify entries" '^entries +2$'
has "verify counters" '^undo_replayed +0$'
has "verify clean" '^result +clean$'
expect 0 "verify --json" -- "$BMCTL" verify --json --restart "$R" "${D[@]}"
has "verify json" '^\{"clean":true,"entries":2,.*"undo_replayed":0\}$'

expect 0 "dump" -- "$BMCTL" dump --restart "$R" "${D[@]}"
has "dump K1" "^$K1  refcount 3  n 2  0100000000000000 0200000000000000\$"
has "dump K2" "^$K2  refcount 18446744073709551615  n 0\$"
[ "$(wc -l <<<"$out")" -eq 2 ] || { echo "FAIL: dump printed $(wc -l <<<"$out") lines"; fails=$((fails + 1)); }
expect 0 "dump --limit 1 --json" -- "$BMCTL" dump --limit 1 --json --restart "$R" "${D[@]}"
has "dump json" '^\{"elem_size":8,"entries":\[\{"key":"[0-9a-f]{64}","refcount":[0-9]+,"n":[0-9]+,"elems":\[.*\]\}\],"shown":1,"total":2\}$'

expect 0 "get K1" -- "$BMCTL" get --restart "$R" "$K1" "${D[@]}"
has "get K1" '^refcount 3  n 2  0100000000000000 0200000000000000$'
expect 0 "get K2 --json" -- "$BMCTL" get --json --restart "$R" "$K2" "${D[@]}"
has "get json" "^\\{\"key\":\"$K2\",\"found\":true,\"refcount\":18446744073709551615,\"n\":0,\"elems\":\\[\\]\\}\$"
KU=$(tr a-f A-F <<<"$K2")
expect 0 "get 0x-prefixed capital KEYHEX --json" -- "$BMCTL" get --json --restart "$R" "0x$KU" "${D[@]}"
has "get json normalised key" "^\\{\"key\":\"$K2\",\"found\":true,"
expect 1 "get absent" -- "$BMCTL" get --restart "$R" "$K0" "${D[@]}"
has "get absent" 'key not found'
expect 1 "get absent --json" -- "$BMCTL" get --json --restart "$R" "$K0" "${D[@]}"
has "get absent json" '"found":false'
expect 2 "get malformed key" -- "$BMCTL" get --restart "$R" zz "${D[@]}"
expect 2 "get with one drive of two" -- "$BMCTL" get --restart "$R" "$K1" "$dir/d0"
has "drive count" "records a map on 2 drive directories, 1 given"

# Damage K1's index entry (flip one bit of its key): verify must exit 1 and count it.
f=$(LC_ALL=C grep -lUaP '\x11{32}' "$dir"/d*/*idx*.bm | head -1)
off=$(LC_ALL=C grep -obUaP '\x11{32}' "$f" | head -1 | cut -d: -f1)
if [ -n "$off" ]; then
    printf '\x13' | dd of="$f" bs=1 seek=$((off + 5)) conv=notrunc 2>/dev/null
    expect 1 "verify after damage" -- "$BMCTL" verify --restart "$R" "${D[@]}"
    has "verify damage" '^bad_entry_sums +[1-9]'
    has "verify problems" '^result +PROBLEMS FOUND$'
else
    echo "FAIL: could not find K1 in an index file"; fails=$((fails + 1))
fi

if [ "$fails" -ne 0 ]; then echo "bmctl: $fails check(s) failed"; exit 1; fi
echo "bmctl: all checks passed"
