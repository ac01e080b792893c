// multipart/form-data (RFC 7578, RFC 2046 section 5.1): the boundary parameter, delimiter lines, part headers.
#include "multipart.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

// Copies the value of parameter key (quoted or a token) from a header's parameter list into out.
static bool header_param(const char *h, size_t hlen, const char *key, char *out, size_t cap) {
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl < hlen; i++) {
        if ((i > 0 && h[i - 1] != ';' && h[i - 1] != ' ' && h[i - 1] != '\t') || strncasecmp(h + i, key, kl) ||
            h[i + kl] != '=')
            continue;
        const char *v = h + i + kl + 1, *end = h + hlen;
        size_t o = 0;
        if (v < end && *v == '"') {
            for (v++; v < end && *v != '"'; v++) {
                if (*v == '\\' && v + 1 < end) v++;
                if (o + 1 >= cap) return false;
                out[o++] = *v;
            }
            if (v >= end) return false; // unterminated quote
        } else {
            for (; v < end && *v != ';' && *v != ' ' && *v != '\t' && *v != '\r'; v++) {
                if (o + 1 >= cap) return false;
                out[o++] = *v;
            }
        }
        out[o] = 0;
        return true;
    }
    return false;
}

// The header block of one part (up to the blank line): its Content-Disposition name and filename.
static aero_status part_headers(const char *h, size_t len, aero_multipart_part *p, int index, aero_error *err) {
    const char *end = h + len;
    bool disposition = false;
    while (h < end) {
        const char *eol = memmem(h, (size_t)(end - h), "\r\n", 2);
        size_t ll = eol ? (size_t)(eol - h) : (size_t)(end - h);
        static const char cd[] = "content-disposition:";
        if (ll >= sizeof cd - 1 && !strncasecmp(h, cd, sizeof cd - 1)) {
            disposition = true;
            const char *v = h + sizeof cd - 1;
            size_t vl = ll - (sizeof cd - 1);
            if (!header_param(v, vl, "name", p->name, sizeof p->name) || !p->name[0])
                return aero_fail(err, AERO_ERR_FORMAT, "multipart part %d: Content-Disposition without a name "
                                                       "(or one longer than %zu bytes)", index, sizeof p->name - 1);
            if (!header_param(v, vl, "filename", p->filename, sizeof p->filename)) p->filename[0] = 0;
        }
        h += ll + (eol ? 2 : 0);
    }
    if (!disposition)
        return aero_fail(err, AERO_ERR_FORMAT, "multipart part %d has no Content-Disposition header", index);
    return AERO_OK;
}

// The next delimiter line at or after p: the delimiter followed by "--" (the last) or by optional whitespace
// and CRLF. Bytes that merely start like one ("--XyZa") are data.
static const char *next_delim(const char *p, const char *end, const char *delim, size_t dl) {
    while (p < end) {
        const char *f = memmem(p, (size_t)(end - p), delim, dl);
        if (!f) return NULL;
        const char *q = f + dl;
        if (end - q >= 2 && q[0] == '-' && q[1] == '-') return f;
        while (q < end && (*q == ' ' || *q == '\t')) q++;
        if (end - q >= 2 && q[0] == '\r' && q[1] == '\n') return f;
        p = f + 1;
    }
    return NULL;
}

aero_status aero_multipart_parse(const char *content_type, const char *body, size_t len, aero_multipart_part *parts,
                                 int *n, aero_error *err) {
    *n = 0;
    static const char mf[] = "multipart/form-data";
    if (!content_type || strncasecmp(content_type, mf, sizeof mf - 1))
        return aero_fail(err, AERO_ERR_INVALID, "expected a multipart/form-data body (Content-Type is %s)",
                         content_type ? content_type : "missing");
    char boundary[80], delim[84];
    if (!header_param(content_type, strlen(content_type), "boundary", boundary, sizeof boundary) || !boundary[0])
        return aero_fail(err, AERO_ERR_INVALID, "multipart/form-data without a boundary (of 1 to 70 characters)");
    int dl = snprintf(delim, sizeof delim, "\r\n--%s", boundary);
    // the first delimiter may open the body without the CRLF before it
    const char *p = body, *end = body + len;
    if (len >= (size_t)dl - 2 && !memcmp(body, delim + 2, (size_t)dl - 2)) p = body + dl - 2;
    else {
        const char *f = next_delim(body, end, delim, (size_t)dl);
        if (!f) return aero_fail(err, AERO_ERR_FORMAT, "multipart body has no boundary line");
        p = f + dl;
    }
    for (;;) {
        // after a delimiter: "--" ends the body, else optional whitespace and CRLF start a part
        if (end - p >= 2 && p[0] == '-' && p[1] == '-') return AERO_OK;
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
            return aero_fail(err, AERO_ERR_FORMAT, "multipart body ends inside part %d", *n + 1);
        p += 2;
        if (*n >= AERO_MULTIPART_MAX_PARTS)
            return aero_fail(err, AERO_ERR_FORMAT, "multipart body has more than %d parts", AERO_MULTIPART_MAX_PARTS);
        aero_multipart_part *part = &parts[*n];
        memset(part, 0, sizeof *part);
        const char *hend;
        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') hend = p; // no headers at all
        else {
            hend = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
            if (!hend) return aero_fail(err, AERO_ERR_FORMAT, "multipart part %d: headers never end", *n + 1);
        }
        if (part_headers(p, (size_t)(hend - p), part, *n + 1, err)) return err->code;
        const char *data = hend + (hend == p ? 2 : 4);
        const char *next = next_delim(data, end, delim, (size_t)dl);
        if (!next) return aero_fail(err, AERO_ERR_FORMAT, "multipart part %d ('%s') has no closing boundary", *n + 1,
                                    part->name);
        part->data = data;
        part->len = (size_t)(next - data);
        (*n)++;
        p = next + dl;
    }
}

const aero_multipart_part *aero_multipart_find(const aero_multipart_part *parts, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(parts[i].name, name)) return &parts[i];
    return NULL;
}
