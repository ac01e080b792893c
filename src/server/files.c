// The /v1/files store (files.h): plain files in one directory, named by id, metadata beside them.
#include "files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/util.h"

struct aero_files {
    char dir[4000];
    bool owned; // a private temporary directory: removed at close
    pthread_mutex_t mu;
};

aero_status aero_files_open(aero_files **out, const char *dir, aero_error *err) {
    *out = NULL;
    aero_files *f = calloc(1, sizeof *f);
    if (!f) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    if (dir) {
        if (strlen(dir) >= sizeof f->dir - 64) {
            free(f);
            return aero_fail(err, AERO_ERR_INVALID, "--files-dir: path too long");
        }
        if (mkdir(dir, 0700) && errno != EEXIST) {
            free(f);
            return aero_fail(err, AERO_ERR_IO, "--files-dir %s: %s", dir, strerror(errno));
        }
        struct stat st;
        if (stat(dir, &st) || !S_ISDIR(st.st_mode) || access(dir, W_OK)) {
            free(f);
            return aero_fail(err, AERO_ERR_IO, "--files-dir %s is not a writable directory", dir);
        }
        snprintf(f->dir, sizeof f->dir, "%s", dir);
    } else {
        const char *t = getenv("TMPDIR");
        snprintf(f->dir, sizeof f->dir, "%s/aerollm-files-XXXXXX", t && *t && strlen(t) < 3000 ? t : "/tmp");
        if (!mkdtemp(f->dir)) {
            int e = errno;
            free(f);
            return aero_fail(err, AERO_ERR_IO, "cannot create a directory for /v1/files: %s", strerror(e));
        }
        f->owned = true;
    }
    pthread_mutex_init(&f->mu, NULL);
    *out = f;
    return AERO_OK;
}

void aero_files_close(aero_files *f) {
    if (!f) return;
    if (f->owned) {
        DIR *d = opendir(f->dir);
        struct dirent *e;
        char p[4096 + 256];
        while (d && (e = readdir(d)))
            if (e->d_name[0] != '.') {
                snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
                unlink(p);
            }
        if (d) closedir(d);
        rmdir(f->dir);
    }
    pthread_mutex_destroy(&f->mu);
    free(f);
}

bool aero_files_valid_id(const char *id) {
    if (!id || strncmp(id, "file-", 5) || strlen(id) != 29) return false;
    for (int i = 5; i < 29; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'))) return false;
    return true;
}

// A fresh random id: ids are not guessable from one another (other clients' files stay unnamed).
static void new_id(char *out) {
    unsigned char r[12];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        uint64_t x = aero_hash_u64((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)out);
        for (int i = 0; i < 12; i++) r[i] = (unsigned char)(aero_hash_u64(x + (uint64_t)i) >> 24);
    }
    strcpy(out, "file-");
    for (int i = 0; i < 12; i++) snprintf(out + 5 + 2 * i, 3, "%02x", r[i]);
}

// Writes bytes to path through a temporary name and a rename: the file is whole or absent.
static aero_status write_whole(const char *path, const void *data, size_t len, aero_error *err) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) return aero_fail(err, AERO_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    bool ok = (len == 0 || fwrite(data, 1, len, fp) == len) && fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    ok &= fclose(fp) == 0;
    if (!ok || rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return aero_fail(err, AERO_ERR_IO, "cannot write %s: %s", path, strerror(e));
    }
    return AERO_OK;
}

// The file object as OpenAI returns it.
static json_t *file_object(const char *id, size_t bytes, const char *filename, const char *purpose) {
    return json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:s}", "id", id, "object", "file", "bytes", (json_int_t)bytes,
                     "created_at", (json_int_t)time(NULL), "filename", filename, "purpose", purpose, "status",
                     "processed");
}

// Makes the bytes already at DIR/id a file: its object is written last, so a listed file is complete.
static aero_status publish(aero_files *f, const char *id, size_t bytes, const char *filename, const char *purpose,
                           json_t **obj, aero_error *err) {
    json_t *o = file_object(id, bytes, filename, purpose);
    char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
    char path[4100];
    snprintf(path, sizeof path, "%s/%s.json", f->dir, id);
    aero_status st = txt ? write_whole(path, txt, strlen(txt), err) : aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    free(txt);
    if (st) {
        json_decref(o);
        snprintf(path, sizeof path, "%s/%s", f->dir, id);
        unlink(path);
        return st;
    }
    *obj = o;
    return AERO_OK;
}

aero_status aero_files_add(aero_files *f, const char *filename, const char *purpose, const void *data, size_t len,
                           json_t **obj, aero_error *err) {
    char id[32], path[4100];
    new_id(id);
    snprintf(path, sizeof path, "%s/%s", f->dir, id);
    if (write_whole(path, data, len, err)) return err->code;
    return publish(f, id, len, filename, purpose, obj, err);
}

aero_status aero_files_begin(aero_files *f, aero_files_writer *w, aero_error *err) {
    memset(w, 0, sizeof *w);
    new_id(w->id);
    snprintf(w->tmp, sizeof w->tmp, "%s/%s.tmp", f->dir, w->id);
    w->fp = fopen(w->tmp, "wb");
    if (!w->fp) return aero_fail(err, AERO_ERR_IO, "cannot write %s: %s", w->tmp, strerror(errno));
    return AERO_OK;
}

aero_status aero_files_commit(aero_files *f, aero_files_writer *w, const char *filename, const char *purpose,
                              json_t **obj, aero_error *err) {
    char path[4100];
    snprintf(path, sizeof path, "%s/%s", f->dir, w->id);
    bool ok = fflush(w->fp) == 0 && fsync(fileno(w->fp)) == 0;
    ok &= fclose(w->fp) == 0;
    w->fp = NULL;
    if (!ok || rename(w->tmp, path)) {
        int e = errno;
        unlink(w->tmp);
        return aero_fail(err, AERO_ERR_IO, "cannot write %s: %s", path, strerror(e));
    }
    return publish(f, w->id, w->bytes, filename, purpose, obj, err);
}

void aero_files_abort(aero_files_writer *w) {
    if (w->fp) fclose(w->fp);
    w->fp = NULL;
    if (w->tmp[0]) unlink(w->tmp);
}

json_t *aero_files_get(aero_files *f, const char *id) {
    if (!aero_files_valid_id(id)) return NULL;
    char path[4100];
    snprintf(path, sizeof path, "%s/%s.json", f->dir, id);
    json_t *o = json_load_file(path, 0, NULL);
    if (o && !json_is_object(o)) {
        json_decref(o);
        o = NULL;
    }
    return o;
}

// Newest first, then by id, so a listing is stable.
static int by_created_desc(const void *a, const void *b) {
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    json_int_t cx = json_integer_value(json_object_get(x, "created_at"));
    json_int_t cy = json_integer_value(json_object_get(y, "created_at"));
    if (cx != cy) return cx < cy ? 1 : -1;
    return strcmp(json_string_value(json_object_get(x, "id")), json_string_value(json_object_get(y, "id")));
}

json_t *aero_files_list(aero_files *f, const char *purpose) {
    json_t *data = json_array();
    DIR *d = opendir(f->dir);
    struct dirent *e;
    while (d && data && (e = readdir(d))) {
        size_t nl = strlen(e->d_name);
        if (nl != 34 || strcmp(e->d_name + 29, ".json")) continue;
        char id[32];
        memcpy(id, e->d_name, 29);
        id[29] = 0;
        json_t *o = aero_files_get(f, id);
        if (!o) continue;
        const char *p = json_string_value(json_object_get(o, "purpose"));
        if (purpose && (!p || strcmp(p, purpose))) json_decref(o);
        else json_array_append_new(data, o);
    }
    if (d) closedir(d);
    if (!data) return NULL;
    size_t n = json_array_size(data);
    json_t **v = malloc(sizeof *v * (n ? n : 1));
    if (!v) return json_decref(data), NULL;
    for (size_t i = 0; i < n; i++) v[i] = json_incref(json_array_get(data, i));
    qsort(v, n, sizeof *v, by_created_desc);
    json_array_clear(data);
    for (size_t i = 0; i < n; i++) json_array_append_new(data, v[i]);
    free(v);
    return json_pack("{s:s, s:o, s:b}", "object", "list", "data", data, "has_more", 0);
}

bool aero_files_path(aero_files *f, const char *id, char *path, size_t cap) {
    if (!aero_files_valid_id(id)) return false;
    char meta[4100];
    snprintf(meta, sizeof meta, "%s/%s.json", f->dir, id);
    if (access(meta, F_OK)) return false;
    return snprintf(path, cap, "%s/%s", f->dir, id) < (int)cap;
}

aero_status aero_files_read(aero_files *f, const char *id, size_t max, char **data, size_t *len, aero_error *err) {
    char path[4100];
    if (!aero_files_path(f, id, path, sizeof path)) return aero_fail(err, AERO_ERR_INVALID, "no file %s", id);
    return aero_read_file(path, max, data, len, err);
}

bool aero_files_delete(aero_files *f, const char *id) {
    char path[4100];
    if (!aero_files_path(f, id, path, sizeof path)) return false;
    pthread_mutex_lock(&f->mu);
    char meta[4200];
    snprintf(meta, sizeof meta, "%s.json", path);
    bool ok = unlink(meta) == 0; // the object first: from now on the file is not listed
    unlink(path);
    pthread_mutex_unlock(&f->mu);
    return ok;
}
