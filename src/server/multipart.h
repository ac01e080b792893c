// multipart/form-data bodies (RFC 7578), as clients upload files to /v1/files: the boundary from the
// Content-Type header, then each part's name, filename and bytes. The parts point into the body; nothing is
// copied. Every bound is checked, and a malformed body gets a message that says what is wrong.
#ifndef AERO_SERVER_MULTIPART_H
#define AERO_SERVER_MULTIPART_H

#include <stddef.h>

#include "../core/status.h"

#define AERO_MULTIPART_MAX_PARTS 16

typedef struct {
    char name[64];      // the form field's name (Content-Disposition name=)
    char filename[256]; // the uploaded file's name, "" for a plain field
    const char *data;   // the part's bytes, inside the body
    size_t len;
} aero_multipart_part;

// Splits body into at most AERO_MULTIPART_MAX_PARTS parts; *n gets their count.
aero_status aero_multipart_parse(const char *content_type, const char *body, size_t len, aero_multipart_part *parts,
                                 int *n, aero_error *err);
// The part named name, or NULL.
const aero_multipart_part *aero_multipart_find(const aero_multipart_part *parts, int n, const char *name);

#endif
