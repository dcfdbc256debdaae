#!/bin/sh
# The scale run (issue 9 part 4): bm-scale inserts N keys (default 100M) into one persistent map on 4 drive
# directories under a fresh scratch dir, then measures gets, bytes per entry, RSS, bm_flush, close, clean
# reopen and reopen after a killed writer (bench/README.md "Scale run" says what each number means).
#   bench/scale.sh [--bin-dir DIR] [--out DIR] [--] [bm-scale options: --n N --buckets B --dir PARENT ...]
#   bench/scale.sh --plot-only [--out DIR]   redraws the plot from DIR/scale_insert.csv (also a partial one:
#                                            bm-scale writes a row per window as it goes)
# Outputs in --out (default ./scale-out): scale_insert.csv (one row per window of keys), scale_results.md
# (the table, with the commit and date), scale_report.txt (everything printed), scale_insert.png (insert
# Mops/s vs millions of keys inserted; needs gnuplot). `bm-scale --help` lists its options.
# The 100M run: bench/scale.sh --n 100000000 (about 10 GB in /tmp, which should fit in the page cache).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
bin=""
out=scale-out
plot_only=0
while [ $# -gt 0 ]; do
    case "$1" in
    --bin-dir) bin=$2; shift ;;
    --out) out=$2; shift ;;
    --) shift; break ;;
    --plot-only) plot_only=1 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) break ;;   # the rest goes to bm-scale
    esac
    shift
done
commit=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$here" status --porcelain --untracked-files=no 2>/dev/null)" ]; then commit="$commit+dirty"; fi
if [ "$plot_only" -eq 0 ]; then
if [ -z "$bin" ]; then
    for d in "$here/../build-rel/bench" "$here/../build/bench"; do
        if [ -x "$d/bm-scale" ]; then bin=$d; break; fi
    done
fi
if [ -z "$bin" ] || [ ! -x "$bin/bm-scale" ]; then
    echo "scale.sh: bm-scale not found; build it (cmake --build build-rel --target bm-scale) or pass --bin-dir" >&2
    exit 2
fi

mkdir -p "$out"
rm -f "$out/scale_results.md"   # bm-scale writes it only when it gets to the end
echo "scale.sh: commit $commit, $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)" \
    | tee "$out/scale_report.txt"
status=0
{ "$bin/bm-scale" --out "$out" "$@" 2>&1 || echo "scale.sh: bm-scale exited with status $?"; } | tee -a "$out/scale_report.txt"
if grep -q '^scale.sh: bm-scale exited' "$out/scale_report.txt"; then status=1; fi
if [ -f "$out/scale_results.md" ]; then
    { echo "commit $commit, $(date -u '+%Y-%m-%d'), command: bm-scale $*"; echo; cat "$out/scale_results.md"; } \
        > "$out/scale_results.md.tmp" && mv "$out/scale_results.md.tmp" "$out/scale_results.md"
fi
[ "$status" -eq 0 ] || exit "$status"
fi

if ! command -v gnuplot >/dev/null 2>&1; then
    echo "scale.sh: gnuplot not found, no plot" >&2
    exit 0
fi
csv=$out/scale_insert.csv
if [ ! -f "$csv" ] || [ "$(wc -l < "$csv")" -lt 2 ]; then
    echo "scale.sh: no insert windows in $csv, no plot" >&2
    exit 0
fi
keys=$(tail -n 1 "$csv" | cut -d, -f1)
gnuplot <<GP
set terminal pngcairo size 1000,560 font "sans,11"
set output "$out/scale_insert.png"
set datafile separator ","
set title sprintf("bm-scale: insert rate per window while filling one persistent map to %.0fM keys (commit $commit)", $keys)
set xlabel "millions of keys inserted"
set ylabel "M inserts/s in the window"
set y2label "GiB"
set ytics nomirror
set y2tics
set grid
set key top right
set xrange [0:*]
set yrange [0:*]
set y2range [0:*]
plot "$csv" using 1:4 skip 1 with linespoints lw 2 pt 7 ps 0.5 title "insert Mops/s", \
     "" using 1:(\$7/1073741824.0) skip 1 axes x1y2 with lines lw 1 dt 2 title "map files (GiB, right)", \
     "" using 1:(\$6/1073741824.0) skip 1 axes x1y2 with lines lw 1 dt 3 title "RSS (GiB, right)"
GP
echo "plot: $out/scale_insert.png"
