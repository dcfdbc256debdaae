#!/bin/sh
# Runs the whole comparison: bm-bench (bucketmap, lfht, lmdb, lmdb-wmap) and bm-bench-rwlock (the
# reader-rwlock ablation) append to one results CSV, then bm-bench --report merges it into one table with
# the issues' target ratios and the flush-cost table (workload 7), and gnuplot draws the two plots.
# Workload 4 runs at the default bucket count and at 16 buckets, the persistent maps with the background
# flusher at 1000 ms (bm-bench's default --w4-flush-ms; pass -- --w4-flush-ms 0 to run without it).
# Then a second pass at 10M keys (--big N; 0 skips it; --quick skips it) on the bucketmap rows and
# lmdb-wmap: inserts (bytes per entry), single and batched gets, reopen; its own CSV and report.
#   bench/run.sh [--quick] [--big N] [--bin-dir DIR] [--out DIR] [-- extra bm-bench options]
# Outputs in --out (default ./bench-out): results.csv (long format, every measurement), table.csv (one row
# per system x workload x threads), report.txt (what is printed), w2_threads.png, w4_latency.png;
# results-big.csv and report-big.txt for the second pass.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
bin=""
out=bench-out
quick=""
big=10000000
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=--quick; big=0 ;;
    --big) big=$2; shift ;;
    --bin-dir) bin=$2; shift ;;
    --out) out=$2; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$bin" ]; then
    for d in "$here/../build-rel/bench" "$here/../build/bench"; do
        if [ -x "$d/bm-bench" ]; then bin=$d; break; fi
    done
fi
if [ -z "$bin" ] || [ ! -x "$bin/bm-bench" ] || [ ! -x "$bin/bm-bench-rwlock" ]; then
    echo "run.sh: bm-bench and bm-bench-rwlock not found; build them or pass --bin-dir" >&2
    exit 2
fi

mkdir -p "$out"
csv=$out/results.csv
: > "$csv"
start=$(date +%s)
"$bin/bm-bench" $quick --csv "$csv" "$@"
"$bin/bm-bench-rwlock" $quick --csv "$csv" "$@"
"$bin/bm-bench" --report "$csv" --out-dir "$out" | tee "$out/report.txt"
echo "(all workloads on all systems: $(( $(date +%s) - start )) s)" | tee -a "$out/report.txt"
if [ "$big" -gt 0 ]; then
    # The second pass: where a map is larger than the caches (issue 9: bytes per entry and batched gets
    # at 10M). Its table has no rwlock, lfht or plain lmdb rows; their 1M rows are above.
    start=$(date +%s)
    : > "$out/results-big.csv"
    "$bin/bm-bench" --n "$big" --threads 1 --workloads 1,2,6,8 --systems bucketmap,bucketmap-tmp,lmdb-wmap \
        --csv "$out/results-big.csv" "$@"
    mkdir -p "$out/big"
    { echo "== second pass: N = $big"; "$bin/bm-bench" --report "$out/results-big.csv" --out-dir "$out/big"; } |
        tee "$out/report-big.txt"
    echo "(second pass: $(( $(date +%s) - start )) s)" | tee -a "$out/report-big.txt"
fi

if ! command -v gnuplot >/dev/null 2>&1; then
    echo "run.sh: gnuplot not found, no plots" >&2
    exit 0
fi
# One column per system in w2_threads.dat (the first is the thread count).
ncol=$(awk 'NR == 1 { print NF; exit }' "$out/w2_threads.dat")
gnuplot <<GP
set terminal pngcairo size 900,560 font "sans,11"
set output "$out/w2_threads.png"
set title "Workload 2: gets of present keys (uniform), throughput vs threads"
set xlabel "reader threads"
set ylabel "M gets/s (all threads)"
set key outside right top
set grid
set xtics 1
set xrange [0.8:*]
set yrange [0:*]
set datafile missing "NaN"
plot for [c=2:$ncol] "$out/w2_threads.dat" using 1:c with linespoints lw 2 pt 7 ps 1.3 title columnhead(c)
GP
gnuplot <<GP
set terminal pngcairo size 1000,560 font "sans,11"
set output "$out/w4_latency.png"
set title "Workload 4: reader latency while one writer inserts and deletes (grows all the time)"
set ylabel "microseconds (log scale)"
set logscale y
set grid ytics
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics rotate by -20
set key top left
plot "$out/w4_latency.dat" using 2:xtic(1) title "p50", "" using 3 title "p99", "" using 4 title "p99.9", \
     "" using 5 title "max", "" using 6 title "longest 64-read stall"
GP
echo "plots: $out/w2_threads.png $out/w4_latency.png"
