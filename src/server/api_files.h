// The OpenAI Files and Batch endpoints (/v1/files, /v1/batches), routed here by api.c.
#ifndef AERO_SERVER_API_FILES_H
#define AERO_SERVER_API_FILES_H

#include "internal.h"

// Answers a request under /v1/files or /v1/batches (method already matched by the route table).
enum MHD_Result aero_api_files(aero_http_req *r, const char *url);

#endif
