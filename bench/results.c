#include "results.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void res_emit(FILE *f, const char *sys, const char *wl, unsigned threads, const char *metric, double v)
{
    fprintf(f, "%s,%s,%u,%s,%.9g\n", sys, wl, threads, metric, v);
    fflush(f);
}

void res_emit_text(FILE *f, const char *sys, const char *wl, unsigned threads, const char *metric,
                   const char *text)
{
    char clean[RES_TEXT];
    size_t i = 0;
    /* The text is the last field; only line breaks could break the format. Commas are kept. */
    for (; text[i] && i + 1 < sizeof clean; i++)
        clean[i] = (text[i] == '\n' || text[i] == '\r') ? ' ' : text[i];
    clean[i] = 0;
    fprintf(f, "%s,%s,%u,%s,%s\n", sys, wl, threads, metric, clean);
    fflush(f);
}

/* Copies src into dst[cap], cut short when too long (a field longer than its column is a foreign row). */
static void copy_field(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

static int add_row(res_set *s, const res_row *r)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        res_row *p = realloc(s->rows, cap * sizeof *p);
        if (!p)
            return -1;
        s->rows = p;
        s->cap = cap;
    }
    s->rows[s->n++] = *r;
    return 0;
}

int res_load(const char *path, res_set *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#')
            continue;
        res_row r;
        memset(&r, 0, sizeof r);
        char *field[5];
        char *p = line;
        int k = 0;
        for (; k < 4; k++) {
            field[k] = p;
            char *c = strchr(p, ',');
            if (!c)
                break;
            *c = 0;
            p = c + 1;
        }
        if (k < 4)
            continue;
        field[4] = p;
        copy_field(r.sys, sizeof r.sys, field[0]);
        copy_field(r.wl, sizeof r.wl, field[1]);
        r.threads = (unsigned)strtoul(field[2], NULL, 10);
        copy_field(r.metric, sizeof r.metric, field[3]);
        char *end;
        r.v = strtod(field[4], &end);
        if (end == field[4] || *end) {
            r.is_text = 1;
            r.v = NAN;
            copy_field(r.text, sizeof r.text, field[4]);
        }
        if (add_row(out, &r) != 0) {
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    return 0;
}

void res_free(res_set *s)
{
    free(s->rows);
    memset(s, 0, sizeof *s);
}

const res_row *res_find(const res_set *s, const char *sys, const char *wl, unsigned threads, const char *metric)
{
    /* Last match wins, so a re-run appended to the same file overrides older rows. */
    for (size_t i = s->n; i-- > 0;) {
        const res_row *r = &s->rows[i];
        if (r->threads == threads && !strcmp(r->sys, sys) && !strcmp(r->wl, wl) && !strcmp(r->metric, metric))
            return r;
    }
    return NULL;
}

double res_get(const res_set *s, const char *sys, const char *wl, unsigned threads, const char *metric)
{
    const res_row *r = res_find(s, sys, wl, threads, metric);
    return r && !r->is_text ? r->v : NAN;
}
