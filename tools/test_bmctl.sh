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

# Salvage: a map whose data file is gone is refused by every command, with the file named; salvage keeps
# what is intact, drops the rest, and the map is clean and plain to open afterwards.
S=("$dir/s0" "$dir/s1")
RS="$dir/restart-s"
mkdir "${S[@]}"
K3=$(printf '33%.0s' $(seq 32))
expect 0 "salvage map: put K1" -- "$BMCTL" put --restart "$RS" --elem-size 8 --refcount 3 \
    --elem 0100000000000000 --elem 0200000000000000 "$K1" "${S[@]}"
expect 0 "salvage map: put K2" -- "$BMCTL" put --restart "$RS" --refcount 4 "$K2" "${S[@]}"
expect 0 "salvage map: put K3" -- "$BMCTL" put --restart "$RS" --refcount 5 --elem 0300000000000000 \
    --elem 0400000000000000 --elem 0500000000000000 "$K3" "${S[@]}"
victim=$(ls "$dir"/s*/*-d1-*.bm 2>/dev/null | head -1) # K1's two elements: the only size-class-1 file
if [ -z "$victim" ] || [ "$(ls "$dir"/s*/*-d1-*.bm | wc -l)" -ne 1 ]; then
    echo "FAIL: salvage map: expected exactly one class-1 data file"; fails=$((fails + 1))
else
    rm "$victim"
    vname=$(basename "$victim")
    for c in info verify dump; do
        expect 2 "$c of a map with a deleted data file" -- "$BMCTL" "$c" --restart "$RS" "${S[@]}"
        has "$c names the missing file" "^bmctl: .*$vname: missing"
        has "$c suggests salvage" "bmctl salvage"
    done
    expect 2 "get of a map with a deleted data file" -- "$BMCTL" get --restart "$RS" "$K2" "${S[@]}"
    has "get names the missing file" "^bmctl: .*$vname: missing"
    cp -a "$dir/s0" "$dir/s0.bak"; cp -a "$dir/s1" "$dir/s1.bak"; cp "$RS" "$RS.bak"
    expect 0 "salvage" -- "$BMCTL" salvage --restart "$RS" "${S[@]}"
    has "salvage note" "^note +.*$vname: missing"
    has "salvage kept" '^entries kept +2$'
    has "salvage dropped" '^recovered_entries_dropped +1$'
    has "salvage scrubbed" '^buckets_scrubbed +3$'
    has "salvage verify" '^result +clean$'
    expect 1 "get K1 after salvage" -- "$BMCTL" get --restart "$RS" "$K1" "${S[@]}"
    expect 0 "get K3 after salvage" -- "$BMCTL" get --restart "$RS" "$K3" "${S[@]}"
    has "K3 intact" '^refcount 5  n 3  0300000000000000 0400000000000000 0500000000000000$'
    expect 0 "verify after salvage" -- "$BMCTL" verify --restart "$RS" "${S[@]}"
    has "verify after salvage" '^entries +2$'
    # The same salvage, as JSON, from the backed-up damaged state.
    rm -rf "$dir/s0" "$dir/s1"; mv "$dir/s0.bak" "$dir/s0"; mv "$dir/s1.bak" "$dir/s1"; mv "$RS.bak" "$RS"
    expect 0 "salvage --json" -- "$BMCTL" salvage --json --restart "$RS" "${S[@]}"
    has "salvage json" '^\{"entries":2,"recovered_entries_dropped":1,"recovered_cells_freed":0,"buckets_scrubbed":3,"orphan_files_removed":0,"note":".*: missing [^"]*","verify":\{"clean":true,"entries":2,.*"undo_replayed":0\}\}$'
fi
expect 0 "salvage --help" -- "$BMCTL" salvage --help && has "salvage --help" '^usage: bmctl salvage '
expect 2 "salvage without a restart file" -- "$BMCTL" salvage --restart "$dir/nope" "${S[@]}"

if [ "$fails" -ne 0 ]; then echo "bmctl: $fails check(s) failed"; exit 1; fi
echo "bmctl: all checks passed"
