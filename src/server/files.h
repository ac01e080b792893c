// The file store behind /v1/files (and the batches' input and output files): each file is DIR/ID (its bytes)
// and DIR/ID.json (its OpenAI file object), both written to a temporary name and renamed, so a file is either
// whole or absent. With --files-dir the files outlive the server; without it they live in a private temporary
// directory removed at stop.
#ifndef AERO_SERVER_FILES_H
#define AERO_SERVER_FILES_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "../core/status.h"

typedef struct aero_files aero_files;

// dir NULL: a private temporary directory, removed by aero_files_close.
aero_status aero_files_open(aero_files **out, const char *dir, aero_error *err);
void aero_files_close(aero_files *f);
// True for a well-formed file id ("file-" and 24 hex digits): ids from URLs never name another path.
bool aero_files_valid_id(const char *id);
// Stores bytes as a new file; *obj gets its file object (a new reference).
aero_status aero_files_add(aero_files *f, const char *filename, const char *purpose, const void *data, size_t len,
                           json_t **obj, aero_error *err);
// A file being written (a batch's output): aero_files_begin opens it, aero_files_commit makes it a file whose
// object *obj returns, aero_files_abort removes it.
typedef struct {
    char id[32];
    char tmp[4096];
    FILE *fp;
    size_t bytes;
} aero_files_writer;
aero_status aero_files_begin(aero_files *f, aero_files_writer *w, aero_error *err);
aero_status aero_files_commit(aero_files *f, aero_files_writer *w, const char *filename, const char *purpose,
                              json_t **obj, aero_error *err);
void aero_files_abort(aero_files_writer *w);
// The file object of id (a new reference), or NULL when there is none.
json_t *aero_files_get(aero_files *f, const char *id);
// Every file object, newest first, optionally of one purpose: {"object": "list", "data": [...]}.
json_t *aero_files_list(aero_files *f, const char *purpose);
// The path of id's bytes into path (false: no such file).
bool aero_files_path(aero_files *f, const char *id, char *path, size_t cap);
// Reads id's bytes into a malloc'ed buffer of at most max bytes.
aero_status aero_files_read(aero_files *f, const char *id, size_t max, char **data, size_t *len, aero_error *err);
// Removes id; false when there was none.
bool aero_files_delete(aero_files *f, const char *id);

#endif
