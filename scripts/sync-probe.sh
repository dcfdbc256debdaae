#!/bin/sh
# Issue 7's check "no fsync, fdatasync, msync or sync_file_range on any writer's path": builds
# bm-sync-probe (Release), which opens a persistent map in a scratch directory (no background flusher),
# inserts N new keys with bm_insert and never calls bm_flush, then closes. Two tracers count the sync
# events of each phase (open / writers / close), split at marker lines the probe prints between phases:
#   1. perf record (needs perf and tracepoints: root or perf_event_paranoid -1, tracefs):
#      ext4:ext4_sync_file_enter  every fsync/fdatasync of an ext4 file, whoever issues it: the syscalls,
#                                 msync(MS_SYNC), O_SYNC/O_DSYNC/RWF_DSYNC writes, and fsyncs submitted
#                                 through io_uring (run by the process's iou-wrk threads, which perf
#                                 follows). ext4 only: on another filesystem it counts nothing.
#      ext4:ext4_sync_fs          syncfs(2)/sync(2) reaching this ext4 filesystem (not per process:
#                                 only events in the probe's own threads are counted)
#      io_uring:io_uring_submit_req with opcode FSYNC or SYNC_FILE_RANGE: syncs submitted through
#                                 io_uring, on any filesystem
#      syscalls:sys_enter_sync_file_range (if the kernel has syscall tracepoints): sync_file_range(2),
#                                 which does not go through ext4_sync_file
#   2. strace -f: the fsync, fdatasync, msync, sync_file_range system calls (and io_uring_enter, which
#      may carry syncs strace cannot see inside). strace cannot see a sync submitted through io_uring.
# Neither sees writeback the kernel starts by itself (dirty_expire, memory pressure): that is not a sync
# on the writer's path. The close phase is a positive control: close flushes, so it must show syncs.
# Exit status: 0 when the writer phase had no sync event in any tracer, 1 when it had some, 2 on error,
# 3 when perf is missing and strace saw io_uring_enter calls on the writer path (inconclusive).
#   scripts/sync-probe.sh [--n N] [--dir SCRATCH] [--buckets B] [--build-dir DIR] [--no-build] [--keep]
#     --n N          keys to insert (default 1000000)
#     --dir SCRATCH  where the map lives (a new directory is made inside; default /tmp); use ext4
#     --buckets B    max_buckets of the map (default: the library's)
#     --build-dir    CMake build directory (default build-rel); --no-build uses what is there
#     --keep         keep the map directories and the raw traces (printed at the end)
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
n=1000000
parent=/tmp
build=$root/build-rel
do_build=1
keep=0
buckets=""
while [ $# -gt 0 ]; do
    case "$1" in
    --n) n=$2; shift ;;
    --dir) parent=$2; shift ;;
    --buckets) buckets="--buckets $2"; shift ;;
    --build-dir) build=$2; shift ;;
    --no-build) do_build=0 ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "sync-probe: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "$do_build" = 1 ]; then
    echo "== build (Release) in $build"
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$build" -j2 --target bm-sync-probe >/dev/null
fi
probe=$build/bench/persist/bm-sync-probe
if [ ! -x "$probe" ]; then
    echo "sync-probe: $probe not found (build it, or drop --no-build)" >&2
    exit 2
fi

mkdir -p "$parent"
work=$(mktemp -d "$parent/bm-sync-probe.XXXXXX")
# shellcheck disable=SC2317 # called by the trap
cleanup() { [ "$keep" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT
fstype=$(df -T "$work" | awk 'NR == 2 { print $2 }')
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')
echo "== scratch $work: filesystem $fstype; N = $n; $(uname -sr); commit $commit"
if [ "$fstype" != ext4 ]; then
    echo "   WARNING: not ext4: ext4:ext4_sync_file_enter cannot see syncs here (the io_uring opcode count and"
    echo "   strace still work). Give --dir an ext4 path, e.g. a loop-mounted ext4 image."
fi

# Splits trace lines by phase: markers file (PROBE <phase> mono_ns=...) gives the bounds.
marker_s() { # phase -> seconds (CLOCK_MONOTONIC) as printed by perf --ns
    awk -v p="$2" '$1 == "PROBE" && $2 == p { sub("mono_ns=", "", $3); printf "%d.%09d\n", $3 / 1e9, $3 % 1e9 }' "$1"
}

writer_syncs=0
writer_uring=0
perf_state="not run"

# ---- 1. perf tracepoints
events=""
if ! command -v perf >/dev/null 2>&1; then
    perf_state="perf is not installed (Debian: apt-get install linux-perf)"
elif ! perf stat -e ext4:ext4_sync_file_enter -- true >/dev/null 2>&1; then
    perf_state="perf cannot open tracepoint ext4:ext4_sync_file_enter (needs root or"
    perf_state="$perf_state kernel.perf_event_paranoid = -1, and tracefs at /sys/kernel/tracing)"
else
    perf_state=ok
    for ev in ext4:ext4_sync_file_enter ext4:ext4_sync_fs io_uring:io_uring_submit_req \
              syscalls:sys_enter_sync_file_range; do
        if perf stat -e "$ev" -- true >/dev/null 2>&1; then
            events="$events -e $ev"
        else
            echo "   (tracepoint $ev not available: not counted)"
        fi
    done
fi
if [ "$perf_state" = ok ]; then
    mkdir "$work/map-perf"
    echo "== 1. perf record -k CLOCK_MONOTONIC$events -- bm-sync-probe --dir DIR --n $n $buckets"
    # shellcheck disable=SC2086
    perf record -q -k CLOCK_MONOTONIC $events -o "$work/perf.data" -- \
        "$probe" --dir "$work/map-perf" --n "$n" $buckets >"$work/perf.markers"
    perf script -i "$work/perf.data" -F comm,tid,time,event,trace --ns >"$work/perf.txt" 2>/dev/null
    t_open=$(marker_s "$work/perf.markers" open_done)
    t_close=$(marker_s "$work/perf.markers" close_begin)
    awk -v to="$t_open" -v tc="$t_close" '
        {
            # comm tid time: event: trace...   (comm may be "iou-wrk-123")
            for (i = 1; i <= NF; i++)
                if ($i ~ /^[0-9]+\.[0-9]+:$/) { t = substr($i, 1, length($i) - 1); e = $(i + 1); break }
            sub(":$", "", e)
            if (e == "io_uring:io_uring_submit_req") {
                if ($0 ~ /opcode FSYNC,/) e = "io_uring submit FSYNC"
                else if ($0 ~ /opcode SYNC_FILE_RANGE,/) e = "io_uring submit SYNC_FILE_RANGE"
                else next
            }
            ph = (t + 0 < to + 0) ? 1 : (t + 0 < tc + 0) ? 2 : 3
            c[e, ph]++; seen[e] = 1
            if ($1 ~ /^iou-wrk/) w[e, ph]++
        }
        END {
            printf "   %-34s %10s %10s %10s\n", "event", "open", "writers", "close"
            split("ext4:ext4_sync_file_enter ext4:ext4_sync_fs syscalls:sys_enter_sync_file_range", l, " ")
            l[4] = "io_uring submit FSYNC"; l[5] = "io_uring submit SYNC_FILE_RANGE"
            for (k = 1; k <= 5; k++) {
                printf "   %-34s %10d %10d %10d\n", l[k], c[l[k], 1], c[l[k], 2], c[l[k], 3]
                tot += c[l[k], 2]
            }
            printf "   (ext4_sync_file_enter run by io_uring workers: open %d, writers %d, close %d)\n",
                w["ext4:ext4_sync_file_enter", 1], w["ext4:ext4_sync_file_enter", 2], w["ext4:ext4_sync_file_enter", 3]
            print tot > "/dev/stderr"
        }' "$work/perf.txt" 2>"$work/perf.writer"
    pw=$(cat "$work/perf.writer")
    writer_syncs=$((writer_syncs + pw))
    echo "   perf: $pw sync event(s) between open_done and close_begin"
    ccount=$(awk -v tc="$t_close" '
        /ext4_sync_file_enter/ {
            for (i = 1; i <= NF; i++)
                if ($i ~ /^[0-9]+\.[0-9]+:$/) { t = substr($i, 1, length($i) - 1); break }
            if (t + 0 >= tc + 0) n++
        }
        END { print n + 0 }' "$work/perf.txt")
    if [ "$fstype" = ext4 ] && [ "$ccount" = 0 ]; then
        echo "   WARNING: no ext4_sync_file_enter during close either: the tracepoint is not seeing this map's syncs"
    fi
else
    echo "== 1. perf: NOT AVAILABLE: $perf_state"
    echo "   Only strace below: it sees the sync system calls, and io_uring_enter calls without their contents,"
    echo "   so a sync submitted through io_uring is NOT excluded by this run."
fi

# ---- 2. strace
if command -v strace >/dev/null 2>&1; then
    mkdir "$work/map-strace"
    sc=fsync,fdatasync,msync,sync_file_range,io_uring_enter,write
    bpf=""
    strace --seccomp-bpf -f -e trace=fsync -o /dev/null true 2>/dev/null && bpf=--seccomp-bpf
    echo "== 2. strace $bpf -f -e trace=$sc -- bm-sync-probe --dir DIR --n $n $buckets"
    # shellcheck disable=SC2086
    strace $bpf -f -qq -e trace=$sc -o "$work/strace.txt" -- "$probe" --dir "$work/map-strace" --n "$n" $buckets \
        >/dev/null
    awk '
        /write\(1, "PROBE open_done/ { ph = 2; next }
        /write\(1, "PROBE close_begin/ { ph = 3; next }
        {
            if (!ph) ph = 1
            if ($0 ~ /resumed>/) next
            if (match($0, /^[0-9]+ +[a-z_0-9]+\(/)) {
                s = substr($0, RSTART, RLENGTH - 1); sub(/^[0-9]+ +/, "", s)
                if (s != "write") c[s, ph]++
            }
        }
        END {
            printf "   %-34s %10s %10s %10s\n", "system call", "open", "writers", "close"
            split("fsync fdatasync msync sync_file_range io_uring_enter", l, " ")
            for (k = 1; k <= 5; k++) {
                printf "   %-34s %10d %10d %10d\n", l[k], c[l[k], 1], c[l[k], 2], c[l[k], 3]
                if (k <= 4) tot += c[l[k], 2]
            }
            print tot, c["io_uring_enter", 2] > "/dev/stderr"
        }' "$work/strace.txt" 2>"$work/strace.writer"
    read -r sw writer_uring <"$work/strace.writer"
    writer_syncs=$((writer_syncs + sw))
    echo "   strace: $sw sync system call(s) between open_done and close_begin"
else
    echo "== 2. strace: not installed, skipped"
fi

[ "$keep" = 1 ] && echo "(kept: $work)"
if [ "$writer_syncs" -eq 0 ] && [ "$perf_state" != ok ]; then
    if [ "$writer_uring" -gt 0 ]; then
        echo "RESULT: INCONCLUSIVE: no sync system call, but $writer_uring io_uring_enter call(s) on the writer path,"
        echo "        and without perf nothing shows whether they carried an fsync"
        exit 3
    fi
    echo "RESULT: PASS (strace only): no sync system call and no io_uring_enter on the writer path"
    exit 0
fi
if [ "$writer_syncs" -eq 0 ]; then
    echo "RESULT: PASS: no sync event on the writer path ($n inserts, no flusher, no bm_flush)"
    exit 0
fi
echo "RESULT: FAIL: sync events on the writer path ($n inserts, no flusher, no bm_flush); see the tables above"
exit 1
