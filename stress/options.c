/*
 * options.c — getopt_long parsing with every option's default documented in one place (the usage text),
 * and validation that turns any inconsistent combination into a usage error (exit status 2) before a map
 * is opened.
 */
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bucketmap.h"

const char *const op_name[OP_N] = {"get", "read", "getbatch", "insert", "update", "delete", "addref", "unref"};
const char *const sweep_name[] = {"none", "threads", "readers", "writers"};
const char *const fault_name[] = {"none", "lost-write", "torn-read"};

static const uint32_t default_mix[OP_N] = {45, 10, 5, 15, 10, 5, 5, 5};

void options_usage(FILE *f, const char *prog)
{
    fprintf(f,
        "Usage: %s [options]\n"
        "Multi-threaded stress test and benchmark for bucketmap: runs a mixed workload, checks every value\n"
        "it reads, and prints throughput and latency percentiles per operation.\n"
        "With no options: a 10-second mixed workload on a temporary drive, one thread per CPU.\n"
        "\n"
        "Threads (pick one form):\n"
        "  -t, --threads N        N mixed workers, each doing reads and writes per --mix (default: CPUs)\n"
        "  -r, --readers R        R threads doing only get/read/getbatch  \\  split roles; the --mix weights\n"
        "  -w, --writers W        W threads doing only writes             /  apply within each role (default 0 each)\n"
        "How long:\n"
        "  -d, --duration SEC     run for SEC seconds, fractions allowed (default 10)\n"
        "  -n, --ops N            instead, run N operations in total, split evenly over the threads\n"
        "Workload:\n"
        "  -k, --keys N           key space: keys 0..N-1 (default 100k)\n"
        "      --dist D           uniform | zipf: how keys are drawn (default uniform)\n"
        "      --theta X          Zipf skew, 0 <= X < 1 (default 0.99)\n"
        "  -l, --value-len A[-B]  elements per value, fixed or a range drawn per write (default 0-20)\n"
        "  -e, --elem-size BYTES  bytes per element, 1..%u (default 16)\n"
        "  -m, --mix LIST         op weights, any subset of get,read,getbatch,insert,update,delete,addref,\n"
        "                         unref, e.g. get=90,insert=10 (default get=45,read=10,getbatch=5,insert=15,\n"
        "                         update=10,delete=5,addref=5,unref=5); weights are relative, they need not\n"
        "                         sum to 100; a getbatch op is one bm_get_batch of 1..32 keys, each drawn\n"
        "                         and verified as a get's\n"
        "  -p, --prefill PCT      insert PCT%% of the key space before timing starts (default 50)\n"
        "Map:\n"
        "  -b, --buckets N        max_buckets, a power of two (default: the library's, 256)\n"
        "      --max-search N     linear-probe window (default: the library's, 32)\n"
        "  -D, --drive DIR        a drive directory; repeat for several (default: a fresh temporary\n"
        "                         directory under $TMPDIR or /tmp, removed at the end)\n"
        "  -R, --restart PATH     make the map persistent with this restart file; at the end it is\n"
        "                         closed, reopened and verified again (PATH must not exist yet)\n"
        "      --crash-after SEC  instead of --duration: run the workers in a child process, SIGKILL it\n"
        "                         SEC seconds into the timed phase, reopen the map and check that every\n"
        "                         acknowledged write survived and no in-flight one is torn (persistent;\n"
        "                         with the default drive the restart file goes next to it; default off)\n"
        "      --crash-cycles N   with --crash-after: crash N times; each new workers' process first\n"
        "                         recovers and checks the map the previous one left (default 1)\n"
        "      --flush-ms MS      run the library's background flusher every MS ms (default off)\n"
        "      --no-prealloc      pass BM_F_NO_PREALLOC (sparse files; for tmpfs and throwaway runs)\n"
        "Run control and output:\n"
        "  -s, --seed N           seed for keys, values and op choices (default: random, printed)\n"
        "      --sweep P=LIST     run once per value, fresh map each time, and print a scalability table;\n"
        "                         P is threads, readers or writers, e.g. --sweep threads=1,2,4,8\n"
        "      --no-verify        do not check values (pure benchmark; the checks are cheap but not free)\n"
        "  -j, --json             print the results as one JSON document on stdout instead of tables\n"
        "  -q, --quiet            no live progress line on stderr\n"
        "  -h, --help             this text\n"
        "Testing the checker:\n"
        "      --inject-fault F   make one worker fake a library bug in 1 of %u operations, to show that\n"
        "                         verification catches it (the run must exit 1): lost-write (an insert is\n"
        "                         acknowledged but never reaches the map) or torn-read (one bit of a\n"
        "                         bm_get result is flipped); default none\n"
        "\n"
        "Counts accept k, M, G suffixes (powers of 1000): --keys 1M, --ops 50M.\n"
        "Exit status: 0 success, 1 verification failure (a value was wrong: the key and the expected and\n"
        "found values are printed), 2 usage or library error.\n",
        prog, BM_MAX_ELEM_SIZE, FAULT_PERIOD);
}

static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bm-stress: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\nTry 'bm-stress --help'.\n", stderr);
    va_end(ap);
}

/* Decimal count with an optional k/M/G suffix (powers of 1000). */
static int parse_count(const char *s, const char *what, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-' || *s == '\0') {
        usage_error("%s: '%s' is not a non-negative number", what, s);
        return -1;
    }
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1000, end++;
    else if (*end == 'm' || *end == 'M')
        mul = 1000000, end++;
    else if (*end == 'g' || *end == 'G')
        mul = 1000000000, end++;
    if (errno || end == s || *end != '\0' || (v && mul > UINT64_MAX / v) || v * mul > max) {
        usage_error("%s: '%s' is not a number in 0..%" PRIu64, what, s, max);
        return -1;
    }
    *out = v * mul;
    return 0;
}

static int parse_u32(const char *s, const char *what, uint32_t min, uint32_t max, uint32_t *out)
{
    uint64_t v;
    if (parse_count(s, what, max, &v) < 0)
        return -1;
    if (v < min) {
        usage_error("%s: %s is below the minimum %u", what, s, min);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int parse_mix(const char *spec, struct options *o)
{
    uint32_t mix[OP_N] = {0};
    char *copy = strdup(spec), *save = NULL;
    if (!copy)
        return -1;
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            usage_error("--mix: '%s' should be name=weight", tok);
            rc = -1;
            break;
        }
        *eq = '\0';
        int k = -1;
        for (int i = 0; i < OP_N; i++)
            if (strcmp(tok, op_name[i]) == 0)
                k = i;
        if (k < 0) {
            usage_error("--mix: unknown operation '%s' (get, read, getbatch, insert, update, delete, addref, unref)",
                        tok);
            rc = -1;
            break;
        }
        if (parse_u32(eq + 1, "--mix weight", 0, 1000000, &mix[k]) < 0) {
            rc = -1;
            break;
        }
    }
    free(copy);
    if (rc < 0)
        return -1;
    uint64_t total = 0;
    for (int i = 0; i < OP_N; i++)
        total += mix[i];
    if (total == 0) {
        usage_error("--mix: every weight is zero");
        return -1;
    }
    memcpy(o->mix, mix, sizeof mix);
    return 0;
}

static int parse_sweep(const char *spec, struct options *o)
{
    const char *eq = strchr(spec, '=');
    if (!eq) {
        usage_error("--sweep: expected threads=1,2,4,... (or readers= / writers=)");
        return -1;
    }
    size_t plen = (size_t)(eq - spec);
    o->sweep = SWEEP_NONE;
    for (int p = SWEEP_THREADS; p <= SWEEP_WRITERS; p++)
        if (strlen(sweep_name[p]) == plen && strncmp(spec, sweep_name[p], plen) == 0)
            o->sweep = p;
    if (o->sweep == SWEEP_NONE) {
        usage_error("--sweep: unknown parameter '%.*s' (threads, readers or writers)", (int)plen, spec);
        return -1;
    }
    char *copy = strdup(eq + 1), *save = NULL;
    if (!copy)
        return -1;
    o->n_sweep = 0;
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (o->n_sweep == MAX_SWEEP) {
            usage_error("--sweep: at most %d values", MAX_SWEEP);
            rc = -1;
            break;
        }
        uint32_t min = o->sweep == SWEEP_THREADS ? 1 : 0;
        if (parse_u32(tok, "--sweep value", min, MAX_THREADS, &o->sweep_vals[o->n_sweep]) < 0) {
            rc = -1;
            break;
        }
        o->n_sweep++;
    }
    free(copy);
    if (rc == 0 && o->n_sweep == 0) {
        usage_error("--sweep: no values");
        rc = -1;
    }
    return rc;
}

static int parse_len(const char *s, struct options *o)
{
    char buf[64];
    if (strlen(s) >= sizeof buf) {
        usage_error("--value-len: '%s' is too long", s);
        return -1;
    }
    strcpy(buf, s);
    char *dash = strchr(buf, '-');
    if (dash)
        *dash = '\0';
    if (parse_u32(buf, "--value-len", 0, BM_MAX_VALUE_BYTES, &o->len_min) < 0)
        return -1;
    o->len_max = o->len_min;
    if (dash && parse_u32(dash + 1, "--value-len", 0, BM_MAX_VALUE_BYTES, &o->len_max) < 0)
        return -1;
    if (o->len_max < o->len_min) {
        usage_error("--value-len: %u-%u is an empty range", o->len_min, o->len_max);
        return -1;
    }
    return 0;
}

static uint64_t random_seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t s = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    /* Keep printed seeds short enough to retype. */
    return s % 1000000000u + 1;
}

void options_mix_string(const struct options *o, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < OP_N; i++) {
        if (!o->mix[i])
            continue;
        int n = snprintf(buf + used, len - used, "%s%s=%u", used ? "," : "", op_name[i], o->mix[i]);
        if (n < 0 || (size_t)n >= len - used)
            break;
        used += (size_t)n;
    }
}

enum {
    OPT_DIST = 1000,
    OPT_THETA,
    OPT_MAX_SEARCH,
    OPT_FLUSH,
    OPT_NO_PREALLOC,
    OPT_SWEEP,
    OPT_NO_VERIFY,
    OPT_FAULT,
    OPT_CRASH,
    OPT_CRASH_CYCLES,
};

int options_parse(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"threads", required_argument, NULL, 't'},
        {"readers", required_argument, NULL, 'r'},
        {"writers", required_argument, NULL, 'w'},
        {"duration", required_argument, NULL, 'd'},
        {"ops", required_argument, NULL, 'n'},
        {"keys", required_argument, NULL, 'k'},
        {"dist", required_argument, NULL, OPT_DIST},
        {"theta", required_argument, NULL, OPT_THETA},
        {"value-len", required_argument, NULL, 'l'},
        {"elem-size", required_argument, NULL, 'e'},
        {"mix", required_argument, NULL, 'm'},
        {"prefill", required_argument, NULL, 'p'},
        {"buckets", required_argument, NULL, 'b'},
        {"max-search", required_argument, NULL, OPT_MAX_SEARCH},
        {"drive", required_argument, NULL, 'D'},
        {"restart", required_argument, NULL, 'R'},
        {"flush-ms", required_argument, NULL, OPT_FLUSH},
        {"no-prealloc", no_argument, NULL, OPT_NO_PREALLOC},
        {"seed", required_argument, NULL, 's'},
        {"sweep", required_argument, NULL, OPT_SWEEP},
        {"no-verify", no_argument, NULL, OPT_NO_VERIFY},
        {"inject-fault", required_argument, NULL, OPT_FAULT},
        {"crash-after", required_argument, NULL, OPT_CRASH},
        {"crash-cycles", required_argument, NULL, OPT_CRASH_CYCLES},
        {"json", no_argument, NULL, 'j'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };

    memset(o, 0, sizeof *o);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    uint32_t default_threads = ncpu > 0 ? (uint32_t)(ncpu < MAX_THREADS ? ncpu : MAX_THREADS) : 1;
    o->keys = 100000;
    o->dist = DIST_UNIFORM;
    o->theta = 0.99;
    o->len_min = 0;
    o->len_max = 20;
    o->elem_size = 16;
    memcpy(o->mix, default_mix, sizeof default_mix);
    o->prefill_pct = 50;
    o->verify = true;
    o->duration_s = 0;
    bool seed_given = false, threads_given = false, duration_given = false, ops_given = false;
    bool readers_given = false, writers_given = false;

    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":t:r:w:d:n:k:l:e:m:p:b:D:R:s:jqh", longopts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (parse_u32(optarg, "--threads", 1, MAX_THREADS, &o->threads) < 0)
                return -1;
            threads_given = true;
            break;
        case 'r':
            if (parse_u32(optarg, "--readers", 0, MAX_THREADS, &o->readers) < 0)
                return -1;
            readers_given = true;
            break;
        case 'w':
            if (parse_u32(optarg, "--writers", 0, MAX_THREADS, &o->writers) < 0)
                return -1;
            writers_given = true;
            break;
        case 'd': {
            char *end;
            errno = 0;
            o->duration_s = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(o->duration_s > 0) || o->duration_s > 1e7) {
                usage_error("--duration: '%s' is not a positive number of seconds", optarg);
                return -1;
            }
            duration_given = true;
            break;
        }
        case OPT_CRASH: {
            char *end;
            errno = 0;
            o->crash_after = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(o->crash_after > 0) || o->crash_after > 1e6) {
                usage_error("--crash-after: '%s' is not a positive number of seconds", optarg);
                return -1;
            }
            break;
        }
        case OPT_CRASH_CYCLES:
            if (parse_u32(optarg, "--crash-cycles", 1, 100000, &o->crash_cycles) < 0)
                return -1;
            break;
        case 'n':
            if (parse_count(optarg, "--ops", UINT64_MAX, &o->ops) < 0)
                return -1;
            if (o->ops == 0) {
                usage_error("--ops: must be at least 1");
                return -1;
            }
            ops_given = true;
            break;
        case 'k':
            if (parse_count(optarg, "--keys", UINT64_C(1) << 40, &o->keys) < 0)
                return -1;
            if (o->keys == 0) {
                usage_error("--keys: must be at least 1");
                return -1;
            }
            break;
        case OPT_DIST:
            if (strcmp(optarg, "uniform") == 0)
                o->dist = DIST_UNIFORM;
            else if (strcmp(optarg, "zipf") == 0)
                o->dist = DIST_ZIPF;
            else {
                usage_error("--dist: '%s' is not uniform or zipf", optarg);
                return -1;
            }
            break;
        case OPT_THETA: {
            char *end;
            errno = 0;
            o->theta = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(o->theta >= 0 && o->theta < 1)) {
                usage_error("--theta: '%s' is not in [0, 1) (Gray's generator needs theta < 1; try 0.999)",
                            optarg);
                return -1;
            }
            break;
        }
        case 'l':
            if (parse_len(optarg, o) < 0)
                return -1;
            break;
        case 'e':
            if (parse_u32(optarg, "--elem-size", 1, BM_MAX_ELEM_SIZE, &o->elem_size) < 0)
                return -1;
            break;
        case 'm':
            if (parse_mix(optarg, o) < 0)
                return -1;
            break;
        case 'p':
            if (parse_u32(optarg, "--prefill", 0, 100, &o->prefill_pct) < 0)
                return -1;
            break;
        case 'b':
            if (parse_u32(optarg, "--buckets", 1, BM_MAX_BUCKETS, &o->buckets) < 0)
                return -1;
            if (o->buckets & (o->buckets - 1)) {
                usage_error("--buckets: %u is not a power of two", o->buckets);
                return -1;
            }
            break;
        case OPT_MAX_SEARCH:
            if (parse_u32(optarg, "--max-search", 1, BM_MAX_SEARCH_LIMIT, &o->max_search) < 0)
                return -1;
            break;
        case 'D':
            if (o->n_drives == MAX_DRIVES) {
                usage_error("--drive: at most %d drives", MAX_DRIVES);
                return -1;
            }
            o->drives[o->n_drives++] = optarg;
            break;
        case 'R':
            o->restart = optarg;
            break;
        case OPT_FLUSH:
            if (parse_u32(optarg, "--flush-ms", 0, 3600000, &o->flush_ms) < 0)
                return -1;
            break;
        case OPT_NO_PREALLOC:
            o->no_prealloc = true;
            break;
        case 's':
            if (parse_count(optarg, "--seed", UINT64_MAX, &o->seed) < 0)
                return -1;
            seed_given = true;
            break;
        case OPT_SWEEP:
            if (parse_sweep(optarg, o) < 0)
                return -1;
            break;
        case OPT_FAULT:
            o->fault = FAULT_NONE;
            for (int f = FAULT_LOST_WRITE; f <= FAULT_TORN_READ; f++)
                if (strcmp(optarg, fault_name[f]) == 0)
                    o->fault = f;
            if (o->fault == FAULT_NONE && strcmp(optarg, "none") != 0) {
                usage_error("--inject-fault: '%s' is not lost-write, torn-read or none", optarg);
                return -1;
            }
            break;
        case OPT_NO_VERIFY:
            o->verify = false;
            break;
        case 'j':
            o->json = true;
            break;
        case 'q':
            o->quiet = true;
            break;
        case 'h':
            options_usage(stdout, argv[0]);
            return 1;
        case ':':
            usage_error("option '%s' needs a value", argv[optind - 1]);
            return -1;
        default:
            usage_error("unknown option '%s'", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        usage_error("unexpected argument '%s'", argv[optind]);
        return -1;
    }

    if (threads_given && (readers_given || writers_given)) {
        usage_error("--threads (mixed workers) and --readers/--writers (split roles) exclude each other");
        return -1;
    }
    if (duration_given && ops_given) {
        usage_error("--duration and --ops exclude each other");
        return -1;
    }
    if (o->crash_cycles && !(o->crash_after > 0)) {
        usage_error("--crash-cycles needs --crash-after");
        return -1;
    }
    if (!o->crash_cycles)
        o->crash_cycles = 1;
    if (o->crash_after > 0) {
        if (duration_given || ops_given || o->sweep != SWEEP_NONE) {
            usage_error("--crash-after ends the run itself: no --duration, --ops or --sweep with it");
            return -1;
        }
        if (!o->verify) {
            usage_error("--crash-after needs verification on: checking what survived is its purpose");
            return -1;
        }
        if (o->n_drives && !o->restart) {
            usage_error("--crash-after with --drive needs --restart PATH (the map there must be persistent)");
            return -1;
        }
    } else if (!ops_given && !duration_given) {
        o->duration_s = 10;
    }
    o->split_roles = readers_given || writers_given;
    if (!o->split_roles && !threads_given)
        o->threads = default_threads;
    if (o->sweep == SWEEP_THREADS && o->split_roles) {
        usage_error("--sweep threads= varies mixed workers; with --readers/--writers sweep readers= or writers=");
        return -1;
    }
    if ((o->sweep == SWEEP_READERS || o->sweep == SWEEP_WRITERS) && !o->split_roles)
        o->split_roles = true; /* sweeping one role implies split roles; the other keeps its (default 0) count */
    if (o->sweep == SWEEP_NONE && o->split_roles && o->readers + o->writers == 0) {
        usage_error("--readers 0 --writers 0: no threads to run");
        return -1;
    }
    if (o->sweep != SWEEP_NONE)
        for (uint32_t i = 0; i < o->n_sweep; i++) {
            uint32_t r = o->sweep == SWEEP_READERS ? o->sweep_vals[i] : o->readers;
            uint32_t w = o->sweep == SWEEP_WRITERS ? o->sweep_vals[i] : o->writers;
            if (o->sweep != SWEEP_THREADS && r + w == 0) {
                usage_error("--sweep: a point with 0 readers and 0 writers has no threads");
                return -1;
            }
        }
    if (o->fault != FAULT_NONE && !o->verify) {
        usage_error("--inject-fault needs verification on: it exists to show that the checks catch the fault");
        return -1;
    }
    if (o->sweep != SWEEP_NONE && o->restart) {
        usage_error("--restart cannot be combined with --sweep (each point needs a fresh map)");
        return -1;
    }
    if (o->restart && access(o->restart, F_OK) == 0) {
        usage_error("--restart: '%s' already exists; bm-stress builds a fresh map and must know its whole "
                    "history, so remove it (and the drive's files) first", o->restart);
        return -1;
    }
    if ((uint64_t)o->len_max * o->elem_size > BM_MAX_VALUE_BYTES) {
        usage_error("--value-len %u x --elem-size %u exceeds BM_MAX_VALUE_BYTES (%u bytes)", o->len_max,
                    o->elem_size, BM_MAX_VALUE_BYTES);
        return -1;
    }

    uint32_t reads = o->mix[OP_GET] + o->mix[OP_READ] + o->mix[OP_GETBATCH];
    uint32_t writes = 0;
    for (int i = OP_INSERT; i < OP_N; i++)
        writes += o->mix[i];
    uint32_t max_readers = o->readers, max_writers = o->writers;
    for (uint32_t i = 0; i < o->n_sweep; i++) {
        if (o->sweep == SWEEP_READERS && o->sweep_vals[i] > max_readers)
            max_readers = o->sweep_vals[i];
        if (o->sweep == SWEEP_WRITERS && o->sweep_vals[i] > max_writers)
            max_writers = o->sweep_vals[i];
    }
    if (o->split_roles && max_readers && !reads) {
        usage_error("readers need get, read or getbatch in --mix");
        return -1;
    }
    if (o->split_roles && max_writers && !writes) {
        usage_error("writers need insert, update, delete, addref or unref in --mix");
        return -1;
    }
    /* Every writer owns a disjoint slice of the key space (see verify.h); an empty slice has nothing to do. */
    uint64_t owners = o->split_roles ? max_writers : o->threads;
    for (uint32_t i = 0; i < o->n_sweep; i++)
        if (o->sweep == SWEEP_THREADS && o->sweep_vals[i] > owners)
            owners = o->sweep_vals[i];
    if (owners > o->keys) {
        usage_error("--keys %" PRIu64 " is fewer than the %" PRIu64 " writing threads (each owns a slice of the keys)",
                    o->keys, owners);
        return -1;
    }
    /* The shadow model is 24 bytes per key (verify.h); past RAM it would only thrash, then fail. */
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0 && o->keys > (uint64_t)pages * (uint64_t)page / 24) {
        usage_error("--keys %" PRIu64 ": the shadow model (24 bytes per key) would not fit in this machine's %"
                    PRIu64 " MiB of RAM", o->keys, (uint64_t)pages * (uint64_t)page >> 20);
        return -1;
    }
    if (!seed_given)
        o->seed = random_seed();
    return 0;
}
