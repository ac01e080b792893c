// The upload parsers of /v1/files: multipart/form-data bodies (boundaries quoted or not, a preamble, parts
// without a filename, empty parts, bytes that look like a boundary) and the refusals of malformed ones; the
// chunked transfer decoding the batch runner reads answers with.
#include <string.h>

#include "check.h"
#include "server/loopback.h"
#include "server/multipart.h"

static int parse(const char *ct, const char *body, aero_multipart_part *p, aero_error *err) {
    int n = -1;
    aero_status st = aero_multipart_parse(ct, body, strlen(body), p, &n, err);
    return st ? -1 : n;
}

static void test_good(void) {
    aero_multipart_part p[AERO_MULTIPART_MAX_PARTS];
    aero_error err = {0};
    const char *body = "preamble to ignore\r\n--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch"
                       "\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in \\\"a\\\".jsonl\"\r\n"
                       "Content-Type: application/jsonl\r\n\r\n{\"a\":1}\r\n--XyZa not the end\r\n--XyZ--\r\n";
    CHECKF(parse("multipart/form-data; boundary=XyZ", body, p, &err) == 2, "%s", err.msg);
    const aero_multipart_part *f = aero_multipart_find(p, 2, "file");
    const aero_multipart_part *u = aero_multipart_find(p, 2, "purpose");
    CHECK(f && u && !aero_multipart_find(p, 2, "other"));
    if (f && u) {
        CHECK(!strcmp(f->filename, "in \"a\".jsonl"));
        CHECK(f->len == strlen("{\"a\":1}\r\n--XyZa not the end") && !memcmp(f->data, "{\"a\":1}", 7));
        CHECK(u->len == 5 && !memcmp(u->data, "batch", 5) && !u->filename[0]);
    }
    // quoted boundary, body opening on the delimiter, an empty part
    body = "--a b\r\nContent-Disposition: form-data; name=x\r\n\r\n\r\n--a b--";
    CHECKF(parse("Multipart/Form-Data; charset=utf-8; boundary=\"a b\"", body, p, &err) == 1, "%s", err.msg);
    CHECK(p[0].len == 0 && !strcmp(p[0].name, "x"));
}

static void test_bad(void) {
    aero_multipart_part p[AERO_MULTIPART_MAX_PARTS];
    aero_error err = {0};
    static const struct {
        const char *ct, *body, *says;
    } cases[] = {
        {"application/json", "{}", "multipart/form-data"},
        {NULL, "x", "missing"},
        {"multipart/form-data", "--x\r\n", "boundary"},
        {"multipart/form-data; boundary=x", "no delimiter here", "no boundary line"},
        {"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nabc", "closing"},
        {"multipart/form-data; boundary=x", "--x\r\nContent-Type: text/plain\r\n\r\nabc\r\n--x--", "Content-Disposition"},
        {"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data\r\n\r\nabc\r\n--x--", "name"},
        {"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"f", "never end"},
        {"multipart/form-data; boundary=x", "--x", "ends inside"},
        {"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"unterminated\r\n\r\na\r\n--x--",
         "name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err.msg[0] = 0;
        CHECKF(parse(cases[i].ct, cases[i].body, p, &err) < 0, "case %zu accepted", i);
        CHECKF(strstr(err.msg, cases[i].says), "case %zu: '%s' does not say '%s'", i, err.msg, cases[i].says);
    }
    char many[4096] = "";
    for (int i = 0; i <= AERO_MULTIPART_MAX_PARTS; i++)
        strcat(many, "--x\r\nContent-Disposition: form-data; name=\"p\"\r\n\r\nv\r\n");
    strcat(many, "--x--");
    CHECK(parse("multipart/form-data; boundary=x", many, p, &err) < 0 && strstr(err.msg, "more than"));
}

static void test_dechunk(void) {
    aero_error err = {0};
    char a[] = "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
    size_t n = strlen(a);
    CHECKF(!aero_http_dechunk(a, &n, &err), "%s", err.msg);
    CHECK(n == 12 && !memcmp(a, "hello, world", 12));
    const char *bad[] = {"zz\r\n", "5\r\nhel", "5\r\nhelloXX0\r\n\r\n", "ffffffffffffffffff\r\n", "3\r\nabc\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char b[64];
        strcpy(b, bad[i]);
        n = strlen(b);
        CHECKF(aero_http_dechunk(b, &n, &err), "bad chunked body %zu accepted", i);
    }
}

int main(void) {
    test_good();
    test_bad();
    test_dechunk();
    return check_done("test_multipart");
}
