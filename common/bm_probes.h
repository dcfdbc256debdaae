/*
 * bm_probes.h — static tracepoints (USDT, provider "bucketmap") for profiling a host that embeds the map.
 *
 * Each probe is one nop in the code plus a note in the ELF file; a tracer (perf probe, bpftrace) replaces
 * the nop with a breakpoint only while it traces. Probes sit on slow paths only (grows, checkpoints, grace
 * periods, recovery, maintenance batches, and the reader's retry branch, which a lookup without retries
 * never enters), so bm_get runs the same instructions with or without them (README "Profiling").
 *
 * Without <sys/sdt.h> (Debian: systemtap-sdt-dev) the probes compile to nothing, and BM_PROBE_CLOCK() lets
 * a caller skip clock reads that only a probe would use.
 */
#ifndef BM_PROBES_H
#define BM_PROBES_H

#if defined(BM_HAVE_SDT)
#include <sys/sdt.h>
#define BM_PROBES_ON 1
#define BM_PROBE0(name) DTRACE_PROBE(bucketmap, name)
#define BM_PROBE1(name, a) DTRACE_PROBE1(bucketmap, name, a)
#define BM_PROBE2(name, a, b) DTRACE_PROBE2(bucketmap, name, a, b)
#define BM_PROBE3(name, a, b, c) DTRACE_PROBE3(bucketmap, name, a, b, c)
#define BM_PROBE4(name, a, b, c, d) DTRACE_PROBE4(bucketmap, name, a, b, c, d)
#define BM_PROBE5(name, a, b, c, d, e) DTRACE_PROBE5(bucketmap, name, a, b, c, d, e)
#else
#define BM_PROBES_ON 0
#define BM_PROBE0(name) ((void)0)
#define BM_PROBE1(name, a) ((void)0)
#define BM_PROBE2(name, a, b) ((void)0)
#define BM_PROBE3(name, a, b, c) ((void)0)
#define BM_PROBE4(name, a, b, c, d) ((void)0)
#define BM_PROBE5(name, a, b, c, d, e) ((void)0)
#endif

#endif
