/*
 * bmctl — inspect and edit a persistent bucketmap on disk, through the public header only.
 *
 *   bmctl info   --restart PATH [-v] [--json] DRIVE...
 *   bmctl verify --restart PATH [--json] DRIVE...
 *   bmctl dump   --restart PATH [--limit N] [--json] DRIVE...
 *   bmctl get    --restart PATH [--json] KEYHEX DRIVE...
 *   bmctl put    --restart PATH [--elem-size N] [--refcount N] [--elem HEX]... KEYHEX DRIVE...
 *
 * The map's shape (elem_size, buckets, max_search) comes from the restart file, so a person only names
 * the files. Opening takes the drive lock: a map in use by a process is refused (BM_ELOCKED), never
 * read behind its owner's back. Exit status: 0 success (verify: clean), 1 verify found problems or get
 * found no key, 2 usage or library error.
 */
#include <bucketmap.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct opts {
    const char *restart;
    const char *const *drives;
    uint32_t n_drives;
    int json, verbose;
    uint64_t limit;
    uint32_t elem_size;
    uint64_t refcount;
    const char *elems[256];
    uint32_t n_elems;
    const char *key;
};

static const char *usage_text =
    "usage: bmctl COMMAND --restart PATH [options] [KEYHEX] DRIVE...\n"
    "\n"
    "commands:\n"
    "  info     buckets, files per drive, capacities, load factors, entries, bytes (-v: per bucket)\n"
    "  verify   check every entry, cell and count; exit 0 only when clean\n"
    "  dump     every key (hex) with its refcount and elements (hex); --limit N\n"
    "  get      one key: KEYHEX is 64 hex digits\n"
    "  put      write one key: --refcount N, --elem HEX (repeat for each element); creates the map\n"
    "           when the restart file does not exist yet (then --elem-size N is required)\n"
    "\n"
    "options:\n"
    "  --restart PATH   the map's restart file (required)\n"
    "  --json           one JSON document on stdout instead of text\n"
    "  -v, --verbose    info: a line per allocated bucket\n"
    "  --limit N        dump: at most N keys\n"
    "  --elem-size N    put on a new map: bytes per element\n"
    "  --refcount N     put: the refcount (default 1)\n"
    "  --elem HEX       put: one element, exactly elem_size bytes in hex\n"
    "  -h, --help       this text\n";

static int usage(int code)
{
    fputs(usage_text, code ? stderr : stdout);
    return code;
}

static int fail(const char *what, int err)
{
    fprintf(stderr, "bmctl: %s: %s\n", what, bm_strerror(err));
    return 2;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Parses exactly n bytes of hex. 0 or -1. */
static int parse_hex(const char *s, uint8_t *out, size_t n)
{
    if (strlen(s) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static void print_hex(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        printf("%02x", b[i]);
}

static int open_map(const struct opts *o, uint32_t elem_size_if_new, bm_map **m, bm_restart_info *ri)
{
    int err = bm_read_restart_info(o->restart, ri);
    bm_config cfg = {0};
    if (err == 0) {
        cfg.elem_size = ri->elem_size;
        cfg.max_buckets = ri->max_buckets;
        cfg.max_search = ri->max_search;
    } else if (err == -2 /* -ENOENT */ && elem_size_if_new) {
        cfg.elem_size = elem_size_if_new;
        memset(ri, 0, sizeof(*ri));
        ri->elem_size = elem_size_if_new;
    } else {
        return fail(o->restart, err);
    }
    cfg.drives = o->drives;
    cfg.n_drives = o->n_drives;
    cfg.restart_path = o->restart;
    if ((err = bm_open(&cfg, m)))
        return fail("open", err);
    return 0;
}

static void print_value_json(const bm_value *v, uint32_t es)
{
    printf("\"refcount\":%" PRIu64 ",\"n\":%u,\"elems\":[", v->refcount, v->n);
    for (uint32_t i = 0; i < v->n; i++) {
        printf(i ? ",\"" : "\"");
        print_hex((const uint8_t *)v->elems + (size_t)i * es, es);
        printf("\"");
    }
    printf("]");
}

static void print_value_text(const bm_value *v, uint32_t es)
{
    printf("refcount %" PRIu64 "  n %u", v->refcount, v->n);
    for (uint32_t i = 0; i < v->n; i++) {
        printf(i ? " " : "  ");
        print_hex((const uint8_t *)v->elems + (size_t)i * es, es);
    }
    printf("\n");
}

/* ---- info ---- */

static int cmd_info(const struct opts *o)
{
    bm_map *m;
    bm_restart_info ri;
    int rc = open_map(o, 0, &m, &ri);
    if (rc)
        return rc;
    uint32_t nb = bm_bucket_count(m);
    uint64_t files_per_drive[64] = {0}, bytes_per_drive[64] = {0};
    uint64_t alloc = 0, entries = 0, cap = 0, ibytes = 0, dbytes = 0, nfiles = 0;
    bm_bucket_info bi;
    if (o->verbose && !o->json)
        printf("%-8s %10s %10s %6s %8s %10s %5s\n", "bucket", "entries", "capacity", "load", "maxdisp", "bytes",
               "files");
    for (uint32_t b = 0; b < nb; b++) {
        if (bm_bucket_info_get(m, b, &bi) || !bi.allocated)
            continue;
        alloc++;
        entries += bi.index.used;
        cap += bi.index.cells;
        ibytes += bi.index.bytes;
        uint64_t bb = bi.index.bytes;
        files_per_drive[bi.index.drive % 64]++;
        bytes_per_drive[bi.index.drive % 64] += bi.index.bytes;
        for (uint32_t i = 0; i < bi.n_data; i++) {
            dbytes += bi.data[i].bytes;
            bb += bi.data[i].bytes;
            files_per_drive[bi.data[i].drive % 64]++;
            bytes_per_drive[bi.data[i].drive % 64] += bi.data[i].bytes;
        }
        nfiles += 1 + bi.n_data;
        if (o->verbose && !o->json)
            printf("%-8u %10" PRIu64 " %10" PRIu64 " %5.1f%% %8" PRIu64 " %10" PRIu64 " %5u\n", b, bi.index.used,
                   bi.index.cells, 100.0 * bi.index.used / bi.index.cells, bi.max_disp, bb, 1 + bi.n_data);
    }
    double per = entries ? (double)(ibytes + dbytes) / entries : 0;
    if (o->json) {
        printf("{\"elem_size\":%u,\"buckets\":%u,\"max_search\":%u,\"buckets_allocated\":%" PRIu64
               ",\"entries\":%" PRIu64 ",\"index_capacity\":%" PRIu64 ",\"load_factor\":%.4f,\"files\":%" PRIu64
               ",\"index_bytes\":%" PRIu64 ",\"data_bytes\":%" PRIu64 ",\"bytes_per_entry\":%.2f,\"drives\":[",
               ri.elem_size, nb, ri.max_search, alloc, entries, cap, cap ? (double)entries / cap : 0, nfiles, ibytes,
               dbytes, per);
        for (uint32_t d = 0; d < o->n_drives; d++)
            printf("%s{\"path\":\"%s\",\"files\":%" PRIu64 ",\"bytes\":%" PRIu64 "}", d ? "," : "", o->drives[d],
                   files_per_drive[d % 64], bytes_per_drive[d % 64]);
        printf("]}\n");
    } else {
        printf("map          elem_size %u, %u buckets (%" PRIu64 " allocated), max_search %u\n", ri.elem_size, nb,
               alloc, ri.max_search);
        printf("entries      %" PRIu64 "\n", entries);
        printf("index        %" PRIu64 " slots, load %.1f%%, %" PRIu64 " bytes\n", cap,
               cap ? 100.0 * entries / cap : 0, ibytes);
        printf("data         %" PRIu64 " bytes\n", dbytes);
        printf("files        %" PRIu64 ", %.1f bytes per entry\n", nfiles, per);
        for (uint32_t d = 0; d < o->n_drives; d++)
            printf("drive %-6u %s: %" PRIu64 " files, %" PRIu64 " bytes\n", d, o->drives[d], files_per_drive[d % 64],
                   bytes_per_drive[d % 64]);
    }
    bm_close(m);
    return 0;
}

/* ---- verify ---- */

static int cmd_verify(const struct opts *o)
{
    bm_map *m;
    bm_restart_info ri;
    int rc = open_map(o, 0, &m, &ri);
    if (rc)
        return rc;
    bm_verify_report r;
    int err = bm_verify(m, &r);
    bm_close(m);
    if (err && err != BM_ECORRUPT)
        return fail("verify", err);
    static const char *names[] = {"entries", "bad_entry_sums", "bad_cells", "bad_refs", "misplaced",
                                  "orphan_cells", "count_mismatches", "zero_refcounts", "orphan_files_removed",
                                  "undo_replayed"};
    const uint64_t vals[] = {r.entries, r.bad_entry_sums, r.bad_cells, r.bad_refs, r.misplaced, r.orphan_cells,
                             r.count_mismatches, r.zero_refcounts, r.orphan_files_removed, r.undo_replayed};
    if (o->json) {
        printf("{\"clean\":%s", err ? "false" : "true");
        for (unsigned i = 0; i < 10; i++)
            printf(",\"%s\":%" PRIu64, names[i], vals[i]);
        printf("}\n");
    } else {
        for (unsigned i = 0; i < 10; i++)
            printf("%-22s %" PRIu64 "\n", names[i], vals[i]);
        printf("%s\n", err ? "PROBLEMS FOUND" : "clean");
    }
    return err ? 1 : 0;
}

/* ---- dump ---- */

struct dump_ctx {
    const struct opts *o;
    uint32_t es;
    uint64_t seen;
};

static int dump_one(const bm_key *k, const bm_value *v, void *arg)
{
    struct dump_ctx *c = arg;
    if (c->o->limit && c->seen >= c->o->limit)
        return 1;
    if (c->o->json) {
        printf("%s{\"key\":\"", c->seen ? "," : "");
        print_hex(k->bytes, BM_KEY_LEN);
        printf("\",");
        print_value_json(v, c->es);
        printf("}");
    } else {
        print_hex(k->bytes, BM_KEY_LEN);
        printf("  ");
        print_value_text(v, c->es);
    }
    c->seen++;
    return 0;
}

static int cmd_dump(const struct opts *o)
{
    bm_map *m;
    bm_restart_info ri;
    int rc = open_map(o, 0, &m, &ri);
    if (rc)
        return rc;
    struct dump_ctx c = {o, ri.elem_size, 0};
    if (o->json)
        printf("[");
    int err = bm_foreach(m, dump_one, &c);
    if (o->json)
        printf("]\n");
    bm_close(m);
    return err < 0 ? fail("dump", err) : 0;
}

/* ---- get / put ---- */

struct get_ctx {
    const struct opts *o;
    uint32_t es;
};

static void get_one(const bm_value *v, void *arg)
{
    struct get_ctx *c = arg;
    if (c->o->json) {
        printf("{\"key\":\"%s\",", c->o->key);
        print_value_json(v, c->es);
        printf("}\n");
    } else {
        print_value_text(v, c->es);
    }
}

static int cmd_get(const struct opts *o)
{
    bm_key k;
    if (!o->key || parse_hex(o->key, k.bytes, BM_KEY_LEN))
        return fprintf(stderr, "bmctl get: KEYHEX must be 64 hex digits\n"), 2;
    bm_map *m;
    bm_restart_info ri;
    int rc = open_map(o, 0, &m, &ri);
    if (rc)
        return rc;
    struct get_ctx c = {o, ri.elem_size};
    int err = bm_read(m, &k, get_one, &c);
    bm_close(m);
    if (err == BM_ENOTFOUND) {
        if (o->json)
            printf("{\"key\":\"%s\",\"found\":false}\n", o->key);
        else
            fprintf(stderr, "bmctl get: key not found\n");
        return 1;
    }
    return err ? fail("get", err) : 0;
}

static int cmd_put(const struct opts *o)
{
    bm_key k;
    if (!o->key || parse_hex(o->key, k.bytes, BM_KEY_LEN))
        return fprintf(stderr, "bmctl put: KEYHEX must be 64 hex digits\n"), 2;
    bm_map *m;
    bm_restart_info ri;
    int rc = open_map(o, o->elem_size, &m, &ri);
    if (rc)
        return rc;
    uint8_t *elems = calloc(o->n_elems ? o->n_elems : 1, ri.elem_size);
    for (uint32_t i = 0; elems && i < o->n_elems; i++) {
        if (parse_hex(o->elems[i], elems + (size_t)i * ri.elem_size, ri.elem_size)) {
            fprintf(stderr, "bmctl put: --elem must be exactly %u bytes of hex\n", ri.elem_size);
            free(elems);
            bm_close(m);
            return 2;
        }
    }
    int err = elems ? bm_insert(m, &k, elems, o->n_elems, o->refcount) : -12;
    if (!err)
        err = bm_flush(m);
    free(elems);
    bm_close(m);
    return err ? fail("put", err) : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage(2);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help"))
        return usage(0);
    struct opts o = {.refcount = 1};
    static const struct option lo[] = {
        {"restart", required_argument, 0, 'r'}, {"json", no_argument, 0, 'j'},
        {"verbose", no_argument, 0, 'v'},       {"limit", required_argument, 0, 'l'},
        {"elem-size", required_argument, 0, 's'}, {"refcount", required_argument, 0, 'c'},
        {"elem", required_argument, 0, 'e'},    {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "vh", lo, NULL)) != -1) {
        switch (c) {
        case 'r': o.restart = optarg; break;
        case 'j': o.json = 1; break;
        case 'v': o.verbose = 1; break;
        case 'l': o.limit = strtoull(optarg, NULL, 10); break;
        case 's': o.elem_size = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'c': o.refcount = strtoull(optarg, NULL, 0); break;
        case 'e':
            if (o.n_elems == 256)
                return fprintf(stderr, "bmctl: at most 256 --elem\n"), 2;
            o.elems[o.n_elems++] = optarg;
            break;
        case 'h': return usage(0);
        default: return usage(2);
        }
    }
    int keyed = !strcmp(cmd, "get") || !strcmp(cmd, "put");
    if (keyed && optind < argc)
        o.key = argv[optind++];
    o.drives = (const char *const *)&argv[optind];
    o.n_drives = (uint32_t)(argc - optind);
    if (!o.restart || o.n_drives == 0) {
        fprintf(stderr, "bmctl %s: --restart PATH and at least one DRIVE are required\n", cmd);
        return usage(2);
    }
    if (!strcmp(cmd, "info"))
        return cmd_info(&o);
    if (!strcmp(cmd, "verify"))
        return cmd_verify(&o);
    if (!strcmp(cmd, "dump"))
        return cmd_dump(&o);
    if (!strcmp(cmd, "get"))
        return cmd_get(&o);
    if (!strcmp(cmd, "put"))
        return cmd_put(&o);
    fprintf(stderr, "bmctl: unknown command '%s'\n", cmd);
    return usage(2);
}
