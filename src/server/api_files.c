// The OpenAI Files and Batch endpoints: POST/GET /v1/files, GET/DELETE /v1/files/ID, GET /v1/files/ID/content,
// POST/GET /v1/batches, GET /v1/batches/ID, POST /v1/batches/ID/cancel. The store is files.c, the jobs
// batches.c; this file turns HTTP requests into their calls and their results into answers.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api_files.h"
#include "batches.h"
#include "files.h"
#include "multipart.h"

// The purposes OpenAI's files API accepts.
static bool purpose_known(const char *p) {
    static const char *const known[] = {"batch", "batch_output", "user_data", "assistants", "fine-tune", "vision",
                                        "evals"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(p, known[i])) return true;
    return false;
}

// POST /v1/files: a multipart/form-data upload with the fields "file" and "purpose".
static enum MHD_Result upload(aero_http_req *r) {
    const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    aero_multipart_part parts[AERO_MULTIPART_MAX_PARTS];
    int n = 0;
    aero_error err = {0};
    if (aero_multipart_parse(ct, r->body.p ? r->body.p : "", r->body.len, parts, &n, &err))
        return aero_http_error(r, 400, err.msg, "file", NULL);
    const aero_multipart_part *file = aero_multipart_find(parts, n, "file");
    const aero_multipart_part *purpose = aero_multipart_find(parts, n, "purpose");
    if (!file) return aero_http_error(r, 400, "the upload has no \"file\" field", "file", NULL);
    char pv[32];
    if (!purpose || purpose->len == 0 || purpose->len >= sizeof pv)
        return aero_http_error(r, 400, "the upload needs a \"purpose\" field (e.g. batch)", "purpose", NULL);
    memcpy(pv, purpose->data, purpose->len);
    pv[purpose->len] = 0;
    if (!purpose_known(pv)) return aero_http_error(r, 400, "unknown purpose", "purpose", NULL);
    json_t *obj = NULL;
    if (aero_files_add(r->srv->files, file->filename[0] ? file->filename : "upload", pv, file->data, file->len, &obj,
                       &err))
        return aero_http_error(r, 500, err.msg, NULL, NULL);
    return aero_http_json(r, 200, obj);
}

// GET /v1/files/ID/content: the bytes, straight from the file.
static enum MHD_Result content(aero_http_req *r, const char *id) {
    char path[4200];
    if (!aero_files_path(r->srv->files, id, path, sizeof path))
        return aero_http_error(r, 404, "No such file", "file_id", "file_not_found");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        if (fd >= 0) close(fd);
        return aero_http_error(r, 404, "No such file", "file_id", "file_not_found");
    }
    struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t)st.st_size, fd); // owns fd
    if (!resp) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
    return aero_http_answer_200(r, resp);
}

// Splits "ID[/rest]" of a URL: the id into id (cut to cap - 1 bytes: no such id exists then), the rest returned.
static const char *split_id(const char *url, char *id, size_t cap) {
    const char *slash = strchr(url, '/');
    size_t il = slash ? (size_t)(slash - url) : strlen(url);
    if (il >= cap) il = cap - 1;
    memcpy(id, url, il);
    id[il] = 0;
    return slash;
}

// /v1/files/ID[/content] with GET or DELETE.
static enum MHD_Result file_item(aero_http_req *r, const char *rest) {
    char id[64];
    const char *slash = split_id(rest, id, sizeof id);
    if (slash) {
        if (strcmp(slash, "/content") || strcmp(r->method, "GET"))
            return aero_http_error(r, 404, "Unknown endpoint", NULL, "unknown_url");
        return content(r, id);
    }
    if (!strcmp(r->method, "DELETE")) {
        if (!aero_files_delete(r->srv->files, id))
            return aero_http_error(r, 404, "No such file", "file_id", "file_not_found");
        return aero_http_json(r, 200, json_pack("{s:s, s:s, s:b}", "id", id, "object", "file", "deleted", 1));
    }
    json_t *o = aero_files_get(r->srv->files, id);
    if (!o) return aero_http_error(r, 404, "No such file", "file_id", "file_not_found");
    return aero_http_json(r, 200, o);
}

// POST /v1/batches: {input_file_id, endpoint, completion_window, metadata}.
static enum MHD_Result batch_create(aero_http_req *r) {
    json_error_t je;
    json_t *body = r->body.len ? json_loadb(r->body.p, r->body.len, 0, &je) : NULL;
    if (!json_is_object(body)) {
        json_decref(body);
        return aero_http_error(r, 400, "the body must be a JSON object", NULL, NULL);
    }
    const char *in = json_string_value(json_object_get(body, "input_file_id"));
    const char *ep = json_string_value(json_object_get(body, "endpoint"));
    const char *win = json_string_value(json_object_get(body, "completion_window"));
    json_t *obj = NULL;
    aero_error err = {0};
    aero_status st = in ? aero_batches_create(r->srv->batches, in, ep, win, json_object_get(body, "metadata"), &obj,
                                              &err)
                        : aero_fail(&err, AERO_ERR_INVALID, "input_file_id must be a string");
    json_decref(body);
    if (st) return aero_http_error(r, st == AERO_ERR_NOMEM ? 500 : 400, err.msg, NULL, NULL);
    return aero_http_json(r, 200, obj);
}

// /v1/batches/ID (GET) and /v1/batches/ID/cancel (POST).
static enum MHD_Result batch_item(aero_http_req *r, const char *rest) {
    char id[64];
    const char *slash = split_id(rest, id, sizeof id);
    bool cancel = slash && !strcmp(slash, "/cancel");
    if ((slash && !cancel) || cancel != !strcmp(r->method, "POST"))
        return aero_http_error(r, 404, "Unknown endpoint", NULL, "unknown_url");
    json_t *o = cancel ? aero_batches_cancel(r->srv->batches, id) : aero_batches_get(r->srv->batches, id);
    if (!o) return aero_http_error(r, 404, "No such batch", "batch_id", "not_found");
    return aero_http_json(r, 200, o);
}

enum MHD_Result aero_api_files(aero_http_req *r, const char *url) {
    static const char fp[] = "/v1/files", bp[] = "/v1/batches";
    if (!strcmp(url, fp)) {
        if (!strcmp(r->method, "POST")) return upload(r);
        const char *purpose = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "purpose");
        json_t *l = aero_files_list(r->srv->files, purpose);
        return l ? aero_http_json(r, 200, l) : aero_http_error(r, 500, "cannot list the files", NULL, NULL);
    }
    if (!strncmp(url, fp, sizeof fp - 1) && url[sizeof fp - 1] == '/') return file_item(r, url + sizeof fp);
    if (!strcmp(url, bp)) {
        if (!strcmp(r->method, "POST")) return batch_create(r);
        const char *after = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "after");
        const char *limit = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "limit");
        return aero_http_json(r, 200, aero_batches_list(r->srv->batches, after, limit ? atoi(limit) : 20));
    }
    return batch_item(r, url + sizeof bp);
}
