/*
 * bmctl — inspect and edit a persistent bucketmap on disk, through the public header only.
 *
 *   bmctl info   --restart PATH [-v] [--json] DRIVE...
 *   bmctl verify --restart PATH [--json] DRIVE...
 *   bmctl dump   --restart PATH [--limit N] [--json] DRIVE...
 *   bmctl get    --restart PATH [--json] KEYHEX DRIVE...
 *   bmctl put    --restart PATH --refcount N [--elem HEX]... [--elem-size N] KEYHEX DRIVE...
 *   bmctl salvage --restart PATH [--json] DRIVE...
 *
 * The map's shape (elem_size, buckets, max_search) comes from the restart file (bm_read_restart_info), so
 * a person only names the files. Opening takes the drive lock: a map in use by a process is refused
 * (BM_ELOCKED), never read behind its owner's back. When bm_open fails, its one-line reason (bm_config.errbuf,
 * naming the file) is printed too. Exit status: 0 success (verify: clean), 1 verify found problems or get
 * found no key, 2 usage, open or library error.
 */
#include <bucketmap.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EXIT_PROBLEM = 1, EXIT_ERROR = 2 };

struct opts {
    const char *cmd;
    const char *restart;
    const char *const *drives;
    uint32_t n_drives;
    int json, verbose;
    uint64_t limit;
    uint32_t elem_size;
    int have_refcount;
    uint64_t refcount;
    const char **elems;
    uint32_t n_elems;
    const char *key;
};

struct command {
    const char *name;
    const char *synopsis;
    const char *text;
    int (*run)(const struct opts *o);
};

static const struct command *find_command(const char *name);

static const char *general_usage =
    "usage: bmctl COMMAND --restart PATH [options] [KEYHEX] DRIVE...\n"
    "\n"
    "Inspect and edit a persistent bucketmap. PATH is the map's restart file; the DRIVE directories are\n"
    "given in the order the map was opened with. The map's drive lock is taken, so a map that a process\n"
    "has open is refused.\n"
    "\n"
    "commands:\n"
    "  info     buckets, files per drive, capacities, load factors, entries, bytes (-v: per bucket)\n"
    "  verify   check every entry, cell and count; exit 0 only when clean\n"
    "  dump     every key (hex) with its refcount and elements (hex)\n"
    "  get      one key's refcount and elements\n"
    "  put      write one key (creates the map when the restart file does not exist)\n"
    "  salvage  open a damaged map anyway (BM_F_SALVAGE): keep what is intact, drop the rest, verify\n"
    "\n"
    "common options:\n"
    "  --restart PATH   the map's restart file (required)\n"
    "  --json           one JSON document on stdout instead of text\n"
    "  -h, --help       help (bmctl COMMAND --help for one command)\n"
    "\n"
    "exit status: 0 success, 1 verify found problems / get found no key, 2 usage, open or library error\n";

static int usage_general(int code)
{
    fputs(general_usage, code ? stderr : stdout);
    return code;
}

static int usage_command(const struct command *c, int code)
{
    FILE *f = code ? stderr : stdout;
    fprintf(f, "usage: bmctl %s %s\n\n%s", c->name, c->synopsis, c->text);
    return code;
}

static int fail(const char *what, int err)
{
    fprintf(stderr, "bmctl: %s: %s\n", what, bm_strerror(err));
    return EXIT_ERROR;
}

static int bad_usage(const struct opts *o, const char *msg, const char *arg)
{
    fprintf(stderr, "bmctl %s: %s%s%s%s\n", o->cmd, msg, arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
    fprintf(stderr, "try 'bmctl %s --help'\n", o->cmd);
    return EXIT_ERROR;
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
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

/* Parses exactly n bytes of hex (an optional 0x prefix is allowed). 0 or -1. */
static int parse_hex(const char *s, uint8_t *out, size_t n)
{
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        s += 2;
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

static void print_json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

/* bm_open failed: its code, and the reason it wrote to errbuf (which file, what is wrong with it). */
static int open_failed(int err, const char *why)
{
    fprintf(stderr, "bmctl: open: %s\n", bm_strerror(err));
    if (why[0])
        fprintf(stderr, "bmctl: %s\n", why);
    if (err == BM_ECORRUPT || err == BM_EMISSING)
        fprintf(stderr, "bmctl: if a drive is not mounted, mount it and retry; otherwise 'bmctl salvage' opens "
                        "the map keeping what is intact (copy the files first)\n");
    return EXIT_ERROR;
}

static int open_map_flags(const struct opts *o, uint32_t elem_size_if_new, uint32_t flags, bm_map **m,
                          bm_restart_info *ri, char *why, uint32_t why_len)
{
    int err = bm_read_restart_info(o->restart, ri);
    bm_config cfg = {0};
    if (err == 0 && ri->n_drives != o->n_drives) {
        /* bm_open would refuse this too (BM_EMISMATCH), but its message names only the other fields. */
        fprintf(stderr, "bmctl: open: %s records a map on %u drive director%s, %u given\n", o->restart,
                ri->n_drives, ri->n_drives == 1 ? "y" : "ies", o->n_drives);
        return EXIT_ERROR;
    }
    if (err == 0) {
        /* An --elem-size that differs is refused by bm_open (BM_EMISMATCH). */
        cfg.elem_size = elem_size_if_new ? elem_size_if_new : ri->elem_size;
        cfg.max_buckets = ri->max_buckets;
        cfg.max_search = ri->max_search;
    } else if (err == -ENOENT && elem_size_if_new) {
        cfg.elem_size = elem_size_if_new;
    } else if (err == -ENOENT && !strcmp(o->cmd, "put")) {
        fprintf(stderr, "bmctl put: %s does not exist: creating a map needs --elem-size N\n", o->restart);
        return EXIT_ERROR;
    } else {
        return fail(o->restart, err);
    }
    cfg.drives = o->drives;
    cfg.n_drives = o->n_drives;
    cfg.restart_path = o->restart;
    cfg.flags = flags;
    cfg.errbuf = why;
    cfg.errbuf_len = why_len;
    if ((err = bm_open(&cfg, m)))
        return open_failed(err, why);
    if (!ri->elem_size) { /* a new map: report its actual identity */
        int e2 = bm_read_restart_info(o->restart, ri);
        if (e2) {
            bm_close(*m);
            return fail(o->restart, e2);
        }
    }
    return 0;
}

static int open_map(const struct opts *o, uint32_t elem_size_if_new, bm_map **m, bm_restart_info *ri)
{
    char why[512] = "";
    return open_map_flags(o, elem_size_if_new, 0, m, ri, why, sizeof(why));
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

struct tally {
    uint64_t files, bytes, index_slots, index_used, data_cells, data_used;
};

static void tally_file(struct tally *t, const bm_file_info *f, int is_index)
{
    t->files++;
    t->bytes += f->bytes;
    if (is_index) {
        t->index_slots += f->cells;
        t->index_used += f->used;
    } else {
        t->data_cells += f->cells;
        t->data_used += f->used;
    }
}

static double pct(uint64_t a, uint64_t b) { return b ? 100.0 * (double)a / (double)b : 0.0; }

static int cmd_info(const struct opts *o)
{
    bm_map *m;
    bm_restart_info ri = {0};
    int rc = open_map(o, 0, &m, &ri);
    if (rc)
        return rc;
    uint32_t nb = bm_bucket_count(m);
    struct tally total = {0}, *drive = calloc(o->n_drives, sizeof(*drive));
    bm_bucket_info *bi = calloc(nb, sizeof(*bi));
    if (!drive || !bi) {
        free(drive);
        free(bi);
        bm_close(m);
        return fail("info", -ENOMEM);
    }
    uint64_t alloc = 0;
    for (uint32_t b = 0; b < nb; b++) {
        int err = bm_bucket_info_get(m, b, &bi[b]);
        if (err) {
            free(drive);
            free(bi);
            bm_close(m);
            return fail("bucket info", err);
        }
        if (!bi[b].allocated)
            continue;
        alloc++;
        tally_file(&total, &bi[b].index, 1);
        if (bi[b].index.drive < o->n_drives)
            tally_file(&drive[bi[b].index.drive], &bi[b].index, 1);
        for (uint32_t i = 0; i < bi[b].n_data; i++) {
            tally_file(&total, &bi[b].data[i], 0);
            if (bi[b].data[i].drive < o->n_drives)
                tally_file(&drive[bi[b].data[i].drive], &bi[b].data[i], 0);
        }
    }
    uint64_t entries = bm_count(m);
    double per = entries ? (double)total.bytes / (double)entries : 0;
    if (o->json) {
        printf("{\"restart\":");
        print_json_string(o->restart);
        printf(",\"format\":%u,\"elem_size\":%u,\"max_buckets\":%u,\"max_search\":%u,\"buckets_allocated\":%" PRIu64
               ",\"entries\":%" PRIu64 ",\"index_slots\":%" PRIu64 ",\"index_used\":%" PRIu64
               ",\"index_load\":%.4f,\"data_cells\":%" PRIu64 ",\"data_cells_used\":%" PRIu64
               ",\"data_load\":%.4f,\"files\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"bytes_per_entry\":%.2f,\"drives\":[",
               ri.format, ri.elem_size, nb, ri.max_search, alloc, entries, total.index_slots, total.index_used,
               pct(total.index_used, total.index_slots) / 100, total.data_cells, total.data_used,
               pct(total.data_used, total.data_cells) / 100, total.files, total.bytes, per);
        for (uint32_t d = 0; d < o->n_drives; d++) {
            printf("%s{\"drive\":%u,\"path\":", d ? "," : "", d);
            print_json_string(o->drives[d]);
            printf(",\"files\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"index_slots\":%" PRIu64 ",\"data_cells\":%" PRIu64
                   "}",
                   drive[d].files, drive[d].bytes, drive[d].index_slots, drive[d].data_cells);
        }
        printf("]");
        if (o->verbose) {
            printf(",\"buckets\":[");
            int first = 1;
            for (uint32_t b = 0; b < nb; b++) {
                if (!bi[b].allocated)
                    continue;
                printf("%s{\"bucket\":%u,\"entries\":%" PRIu64 ",\"index_slots\":%" PRIu64 ",\"max_disp\":%" PRIu64
                       ",\"seed\":%" PRIu64 ",\"files\":[",
                       first ? "" : ",", b, bi[b].index.used, bi[b].index.cells, bi[b].max_disp, bi[b].seed);
                first = 0;
                for (uint32_t i = 0; i <= bi[b].n_data; i++) {
                    const bm_file_info *f = i ? &bi[b].data[i - 1] : &bi[b].index;
                    printf("%s{\"name\":", i ? "," : "");
                    print_json_string(f->name);
                    printf(",\"kind\":\"%s\",\"drive\":%u,\"class\":%u,\"cells\":%" PRIu64 ",\"used\":%" PRIu64
                           ",\"bytes\":%" PRIu64 "}",
                           i ? "data" : "index", f->drive, f->cls, f->cells, f->used, f->bytes);
                }
                printf("]}");
            }
            printf("]");
        }
        printf("}\n");
    } else {
        printf("%-18s %s (format %u)\n", "restart", o->restart, ri.format);
        printf("%-18s %u\n", "elem_size", ri.elem_size);
        printf("%-18s %u (%" PRIu64 " allocated)\n", "buckets", nb, alloc);
        printf("%-18s %u\n", "max_search", ri.max_search);
        printf("%-18s %" PRIu64 "\n", "entries", entries);
        printf("%-18s %" PRIu64 " slots, %" PRIu64 " used, load %.1f%%\n", "index", total.index_slots,
               total.index_used, pct(total.index_used, total.index_slots));
        printf("%-18s %" PRIu64 " cells, %" PRIu64 " used, load %.1f%%\n", "data", total.data_cells, total.data_used,
               pct(total.data_used, total.data_cells));
        printf("%-18s %" PRIu64 "\n", "files", total.files);
        printf("%-18s %" PRIu64 "\n", "bytes", total.bytes);
        printf("%-18s %.1f\n", "bytes/entry", per);
        printf("\n%-5s %7s %14s %14s %14s  %s\n", "drive", "files", "bytes", "index slots", "data cells", "path");
        for (uint32_t d = 0; d < o->n_drives; d++)
            printf("%-5u %7" PRIu64 " %14" PRIu64 " %14" PRIu64 " %14" PRIu64 "  %s\n", d, drive[d].files,
                   drive[d].bytes, drive[d].index_slots, drive[d].data_cells, o->drives[d]);
        if (o->verbose) {
            printf("\n%-6s %10s %10s %6s %7s %10s %10s %6s %12s  %s\n", "bucket", "entries", "slots", "load",
                   "maxdisp", "cells", "cells_used", "files", "bytes", "data classes");
            for (uint32_t b = 0; b < nb; b++) {
                if (!bi[b].allocated)
                    continue;
                struct tally t = {0};
                tally_file(&t, &bi[b].index, 1);
                for (uint32_t i = 0; i < bi[b].n_data; i++)
                    tally_file(&t, &bi[b].data[i], 0);
                printf("%-6u %10" PRIu64 " %10" PRIu64 " %5.1f%% %7" PRIu64 " %10" PRIu64 " %10" PRIu64 " %6" PRIu64
                       " %12" PRIu64 " ",
                       b, t.index_used, t.index_slots, pct(t.index_used, t.index_slots), bi[b].max_disp,
                       t.data_cells, t.data_used, t.files, t.bytes);
                for (uint32_t i = 0; i < bi[b].n_data; i++)
                    printf(" %u@d%u", bi[b].data[i].cls, bi[b].data[i].drive);
                printf("%s\n", bi[b].n_data ? "" : " -");
            }
        }
    }
    free(drive);
    free(bi);
    bm_close(m);
    return 0;
}

/* ---- verify ---- */

static const char *verify_names[] = {"entries", "bad_entry_sums", "bad_cells", "bad_refs", "misplaced",
                                     "orphan_cells", "count_mismatches", "zero_refcounts", "orphan_files_removed",
                                     "undo_replayed"};
#define N_VERIFY (sizeof(verify_names) / sizeof(verify_names[0]))

static void verify_values(const bm_verify_report *r, uint64_t v[N_VERIFY])
{
    const uint64_t vals[N_VERIFY] = {r->entries, r->bad_entry_sums, r->bad_cells, r->bad_refs, r->misplaced,
                                     r->orphan_cells, r->count_mismatches, r->zero_refcounts,
                                     r->orphan_files_removed, r->undo_replayed};
    memcpy(v, vals, sizeof(vals));
}

/* {"clean":..,"entries":..,...} without a newline. */
static void print_verify_json(const bm_verify_report *r, int err)
{
    uint64_t v[N_VERIFY];
    verify_values(r, v);
    printf("{\"clean\":%s", err ? "false" : "true");
    for (unsigned i = 0; i < N_VERIFY; i++)
        printf(",\"%s\":%" PRIu64, verify_names[i], v[i]);
    printf("}");
}

static void print_verify_text(const bm_verify_report *r, int err)
{
    uint64_t v[N_VERIFY];
    verify_values(r, v);
    for (unsigned i = 0; i < N_VERIFY; i++)
        printf("%-22s %" PRIu64 "\n", verify_names[i], v[i]);
    printf("%-22s %s\n", "result", err ? "PROBLEMS FOUND" : "clean");
}

static int cmd_verify(const struct opts *o)
{
    bm_map *m;
    bm_restart_info ri = {0};
    int rc = open_map(o, 0, &m, &ri);
    if (rc)
        return rc;
    bm_verify_report r = {0};
    int err = bm_verify(m, &r);
    bm_close(m);
    if (r.error[0]) /* a bucket whose files could not be loaded (lazy open: found at first touch) */
        fprintf(stderr, "bmctl verify: %" PRIu64 " bucket(s) could not be loaded: %s\n", r.unloadable_buckets,
                r.error);
    if (err && err != BM_ECORRUPT && !r.unloadable_buckets)
        return fail("verify", err);
    if (o->json) {
        print_verify_json(&r, err);
        printf("\n");
    } else {
        print_verify_text(&r, err);
    }
    return err ? EXIT_PROBLEM : 0;
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
    bm_restart_info ri = {0};
    int rc = open_map(o, 0, &m, &ri);
    if (rc)
        return rc;
    struct dump_ctx c = {o, ri.elem_size, 0};
    if (o->json)
        printf("{\"elem_size\":%u,\"entries\":[", ri.elem_size);
    int err = bm_foreach(m, dump_one, &c);
    uint64_t total = bm_count(m);
    if (o->json)
        printf("],\"shown\":%" PRIu64 ",\"total\":%" PRIu64 "}\n", c.seen, total);
    bm_close(m);
    return err < 0 ? fail("dump", err) : 0;
}

/* ---- get / put ---- */

struct get_ctx {
    const struct opts *o;
    const bm_key *k;
    uint32_t es;
};

/* The key as parsed, not as typed: JSON consumers match keys exactly, and KEYHEX may carry 0x or capitals. */
static void print_key_json(const bm_key *k)
{
    printf("{\"key\":\"");
    print_hex(k->bytes, BM_KEY_LEN);
    printf("\",");
}

static void get_one(const bm_value *v, void *arg)
{
    struct get_ctx *c = arg;
    if (c->o->json) {
        print_key_json(c->k);
        printf("\"found\":true,");
        print_value_json(v, c->es);
        printf("}\n");
    } else {
        print_value_text(v, c->es);
    }
}

static int parse_key(const struct opts *o, bm_key *k)
{
    if (!o->key)
        return bad_usage(o, "KEYHEX is required", NULL);
    if (parse_hex(o->key, k->bytes, BM_KEY_LEN))
        return bad_usage(o, "KEYHEX must be 64 hex digits (32 bytes), not", o->key);
    return 0;
}

static int cmd_get(const struct opts *o)
{
    bm_key k;
    int rc = parse_key(o, &k);
    if (rc)
        return rc;
    bm_map *m;
    bm_restart_info ri = {0};
    if ((rc = open_map(o, 0, &m, &ri)))
        return rc;
    struct get_ctx c = {o, &k, ri.elem_size};
    int err = bm_read(m, &k, get_one, &c);
    bm_close(m);
    if (err == BM_ENOTFOUND) {
        if (o->json) {
            print_key_json(&k);
            printf("\"found\":false}\n");
        } else {
            fprintf(stderr, "bmctl get: %s\n", bm_strerror(err));
        }
        return EXIT_PROBLEM;
    }
    return err ? fail("get", err) : 0;
}

static int cmd_put(const struct opts *o)
{
    bm_key k;
    int rc = parse_key(o, &k);
    if (rc)
        return rc;
    if (!o->have_refcount)
        return bad_usage(o, "--refcount N is required", NULL);
    if (o->elem_size > BM_MAX_ELEM_SIZE)
        return bad_usage(o, "--elem-size is out of range (1..4096)", NULL);
    bm_map *m;
    bm_restart_info ri = {0};
    if ((rc = open_map(o, o->elem_size, &m, &ri)))
        return rc;
    uint8_t *elems = calloc(o->n_elems ? o->n_elems : 1, ri.elem_size);
    if (!elems) {
        bm_close(m);
        return fail("put", -ENOMEM);
    }
    for (uint32_t i = 0; i < o->n_elems; i++) {
        if (parse_hex(o->elems[i], elems + (size_t)i * ri.elem_size, ri.elem_size)) {
            fprintf(stderr, "bmctl put: --elem '%s' is not exactly %u bytes of hex\n", o->elems[i], ri.elem_size);
            free(elems);
            bm_close(m);
            return EXIT_ERROR;
        }
    }
    int err = bm_insert(m, &k, elems, o->n_elems, o->refcount);
    free(elems);
    if (!err)
        err = bm_flush(m);
    bm_close(m);
    if (err)
        return fail("put", err);
    if (o->json) {
        print_key_json(&k);
        printf("\"written\":true,\"refcount\":%" PRIu64 ",\"n\":%u}\n", o->refcount, o->n_elems);
    }
    return 0;
}

/* ---- salvage ---- */

static int cmd_salvage(const struct opts *o)
{
    bm_map *m;
    bm_restart_info ri = {0};
    char note[512] = "";
    int rc = open_map_flags(o, 0, BM_F_SALVAGE, &m, &ri, note, sizeof(note));
    if (rc)
        return rc;
    bm_stats st;
    bm_get_stats(m, &st);
    bm_verify_report r = {0};
    int err = bm_verify(m, &r);
    uint64_t entries = bm_count(m);
    bm_close(m);
    if (err && err != BM_ECORRUPT)
        return fail("verify", err);
    if (o->json) {
        printf("{\"entries\":%" PRIu64 ",\"recovered_entries_dropped\":%" PRIu64 ",\"recovered_cells_freed\":%" PRIu64
               ",\"buckets_scrubbed\":%" PRIu64 ",\"orphan_files_removed\":%" PRIu64 ",\"note\":",
               entries, st.recovered_entries_dropped, st.recovered_cells_freed, st.buckets_scrubbed,
               st.orphan_files_removed);
        print_json_string(note);
        printf(",\"verify\":");
        print_verify_json(&r, err);
        printf("}\n");
    } else {
        if (note[0])
            printf("%-26s %s\n", "note", note);
        printf("%-26s %" PRIu64 "\n", "entries kept", entries);
        printf("%-26s %" PRIu64 "\n", "recovered_entries_dropped", st.recovered_entries_dropped);
        printf("%-26s %" PRIu64 "\n", "recovered_cells_freed", st.recovered_cells_freed);
        printf("%-26s %" PRIu64 "\n", "buckets_scrubbed", st.buckets_scrubbed);
        printf("%-26s %" PRIu64 "\n", "orphan_files_removed", st.orphan_files_removed);
        printf("\nverify after salvage:\n");
        print_verify_text(&r, err);
    }
    return err ? EXIT_PROBLEM : 0;
}

static const struct command commands[] = {
    {"info", "--restart PATH [-v] [--json] DRIVE...",
     "Opens the map with the shape recorded in its restart file and reports buckets (allocated of max),\n"
     "entries, index slots and data cells with their load factors, files, bytes and bytes per entry, then\n"
     "one line per drive.\n\n"
     "  -v, --verbose   also one line per allocated bucket (entries, slots, load, longest probe\n"
     "                  displacement, data cells, files, bytes, data classes as CLASS@dDRIVE)\n"
     "  --json          one JSON object (with -v: a \"buckets\" array listing every file)\n",
     cmd_info},
    {"verify", "--restart PATH [--json] DRIVE...",
     "Opens the map (which replays an interrupted mutation and removes files of interrupted grows) and\n"
     "checks every entry checksum, data cell checksum, cell reference, probe placement and bucket count.\n"
     "Prints every counter of bm_verify. Exit 0 when clean, 1 when problems were found, 2 on errors.\n\n"
     "  --json          one JSON object with \"clean\" and every counter\n",
     cmd_verify},
    {"dump", "--restart PATH [--limit N] [--json] DRIVE...",
     "Prints every key in hex with its refcount, element count and elements in hex, bucket by bucket.\n\n"
     "  --limit N       at most N keys (0 = all)\n"
     "  --json          {\"elem_size\":..,\"entries\":[{\"key\":..,\"refcount\":..,\"n\":..,\"elems\":[..]}],..}\n",
     cmd_dump},
    {"get", "--restart PATH [--json] KEYHEX DRIVE...",
     "Prints one key's refcount and elements. KEYHEX is 64 hex digits. Exit 1 when the key is absent.\n\n"
     "  --json          {\"key\":..,\"found\":true|false,...}\n",
     cmd_get},
    {"put", "--restart PATH --refcount N [--elem HEX]... [--elem-size N] [--json] KEYHEX DRIVE...",
     "Writes one key (replacing its value) and flushes. When the restart file does not exist a new map\n"
     "is created on the drives (default buckets and max_search); --elem-size is then required.\n\n"
     "  --refcount N    the key's refcount (required; decimal or 0x hex)\n"
     "  --elem HEX      one element, exactly elem_size bytes in hex; repeat for each element (none: n = 0)\n"
     "  --elem-size N   bytes per element, for a new map (must match an existing one)\n",
     cmd_put},
    {"salvage", "--restart PATH [--json] DRIVE...",
     "Opens a map that a plain open refuses because files its last checkpoint names are missing or damaged\n"
     "(bm_open with BM_F_SALVAGE): every bucket is scrubbed, entries whose files are gone or fail their\n"
     "checks are dropped, cells no entry names are freed, and the result is committed. Files the salvaged\n"
     "map does not use (the damaged ones included) are removed. Prints how many entries are kept, what\n"
     "the scrub dropped (bm_stats recovered_entries_dropped, recovered_cells_freed, buckets_scrubbed,\n"
     "orphan_files_removed), the last file open could not use (note), then bm_verify of the result.\n"
     "Copy the drives and the restart file first if you may want the dropped entries back.\n"
     "Exit 0 when the salvaged map verifies clean, 1 when it does not, 2 when it cannot be opened at all.\n\n"
     "  --json          {\"entries\":..,\"recovered_entries_dropped\":..,...,\"note\":..,\"verify\":{...}}\n",
     cmd_salvage},
};

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(commands[i].name, name))
            return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage_general(EXIT_ERROR);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help"))
        return usage_general(0);
    if (!strcmp(cmd, "help")) {
        if (argc < 3)
            return usage_general(0);
        const struct command *c = find_command(argv[2]);
        if (!c) {
            fprintf(stderr, "bmctl: unknown command '%s'\n", argv[2]);
            return usage_general(EXIT_ERROR);
        }
        return usage_command(c, 0);
    }
    const struct command *c = find_command(cmd);
    if (!c) {
        fprintf(stderr, "bmctl: unknown command '%s'\n", cmd);
        return usage_general(EXIT_ERROR);
    }
    struct opts o = {.cmd = cmd};
    const char **elems = calloc((size_t)argc, sizeof(*elems));
    if (!elems)
        return fail("main", -ENOMEM);
    o.elems = elems;
    static const struct option lo[] = {
        {"restart", required_argument, 0, 'r'},   {"json", no_argument, 0, 'j'},
        {"verbose", no_argument, 0, 'v'},         {"limit", required_argument, 0, 'l'},
        {"elem-size", required_argument, 0, 's'}, {"refcount", required_argument, 0, 'c'},
        {"elem", required_argument, 0, 'e'},      {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int ch, rc = 0;
    uint64_t v;
    optind = 2;
    opterr = 0;
    while (!rc && (ch = getopt_long(argc, argv, "vh", lo, NULL)) != -1) {
        switch (ch) {
        case 'r': o.restart = optarg; break;
        case 'j': o.json = 1; break;
        case 'v':
            if (strcmp(cmd, "info"))
                rc = bad_usage(&o, "-v applies to info only", NULL);
            o.verbose = 1;
            break;
        case 'l':
            if (strcmp(cmd, "dump"))
                rc = bad_usage(&o, "--limit applies to dump only", NULL);
            else if (parse_u64(optarg, &o.limit))
                rc = bad_usage(&o, "--limit needs a number, not", optarg);
            break;
        case 's':
            if (strcmp(cmd, "put"))
                rc = bad_usage(&o, "--elem-size applies to put only", NULL);
            else if (parse_u64(optarg, &v) || v == 0 || v > BM_MAX_ELEM_SIZE)
                rc = bad_usage(&o, "--elem-size needs a number in 1..4096, not", optarg);
            else
                o.elem_size = (uint32_t)v;
            break;
        case 'c':
            if (strcmp(cmd, "put"))
                rc = bad_usage(&o, "--refcount applies to put only", NULL);
            else if (parse_u64(optarg, &o.refcount))
                rc = bad_usage(&o, "--refcount needs a number in 0..2^64-1, not", optarg);
            o.have_refcount = 1;
            break;
        case 'e':
            if (strcmp(cmd, "put"))
                rc = bad_usage(&o, "--elem applies to put only", NULL);
            o.elems[o.n_elems++] = optarg;
            break;
        case 'h': free(elems); return usage_command(c, 0);
        default:
            rc = bad_usage(&o, "unknown option or missing argument:", argv[optind - 1]);
            break;
        }
    }
    if (!rc) {
        /* getopt_long permuted argv: options may appear anywhere, the operands are now at the end. */
        int keyed = c->run == cmd_get || c->run == cmd_put;
        if (keyed && optind < argc)
            o.key = argv[optind++];
        o.drives = (const char *const *)&argv[optind];
        o.n_drives = (uint32_t)(argc - optind);
        if (!rc && !o.restart)
            rc = bad_usage(&o, "--restart PATH is required", NULL);
        if (!rc && o.n_drives == 0)
            rc = bad_usage(&o, "at least one DRIVE directory is required", NULL);
        if (!rc)
            rc = c->run(&o);
    }
    free(elems);
    return rc;
}
