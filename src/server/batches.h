// The OpenAI Batch API's jobs (/v1/batches): a JSONL input file of requests, run in the background through the
// server's own endpoints (loopback.h) several at a time, so they share the scheduler's passes with live traffic;
// answers go to an output file and failures to an error file, both in the file store (files.h). Batches live
// in memory: a restart forgets them (their files stay with --files-dir).
#ifndef AERO_SERVER_BATCHES_H
#define AERO_SERVER_BATCHES_H

#include <jansson.h>

#include "../core/status.h"
#include "files.h"

typedef struct aero_batches aero_batches;

// Where and how the requests are sent: the server's own address, its API key, and how many at once.
typedef struct {
    const char *host;
    int port;
    const char *api_key;
    int parallel;    // requests in flight per batch
    size_t max_file; // the largest input file read
} aero_batches_target;

aero_status aero_batches_new(aero_batches **out, aero_files *files, const aero_batches_target *t, aero_error *err);
// Ends every batch: no request starts any more (running ones finish), then the runners are joined.
void aero_batches_free(aero_batches *b);
// Stops dispatching requests in every batch, at once (the server is stopping); aero_batches_free joins later.
void aero_batches_stop(aero_batches *b);
// Starts a batch over input_file_id for endpoint; *obj gets its batch object. Errors are the client's (4xx).
aero_status aero_batches_create(aero_batches *b, const char *input_file_id, const char *endpoint, const char *window,
                                json_t *metadata, json_t **obj, aero_error *err);
// The batch object of id (a new reference), or NULL.
json_t *aero_batches_get(aero_batches *b, const char *id);
// Batch objects, newest first, after the batch `after` (NULL: from the newest), at most limit.
json_t *aero_batches_list(aero_batches *b, const char *after, int limit);
// Asks batch id to stop starting requests; the output of those that ran is kept. NULL when there is no such batch.
json_t *aero_batches_cancel(aero_batches *b, const char *id);

#endif
