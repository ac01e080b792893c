// Status codes and error messages shared by every module: library code never exits, it returns a status
// and fills an aero_error whose message names the problem (file, field, offset).
#ifndef AERO_CORE_STATUS_H
#define AERO_CORE_STATUS_H

#include <stdarg.h>

#include "../../include/aerollm.h" // the public types (aero_status, ...) have their one definition there

// Records an error (printf-style) and returns its code, so callers can write `return aero_fail(err, ...)`.
aero_status aero_fail(aero_error *err, aero_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// Prefixes an existing error message with context ("model.gguf: ...") and keeps its code.
aero_status aero_error_prefix(aero_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// A short name for a status code, for logs.
const char *aero_status_name(aero_status s);

#endif
