#include "status.h"

#include <stdio.h>
#include <string.h>

aero_status aero_fail(aero_error *err, aero_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

aero_status aero_error_prefix(aero_error *err, const char *fmt, ...) {
    if (!err) return AERO_ERR_INVALID;
    char prefix[256], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s%s", prefix, old);
    return err->code;
}

const char *aero_status_name(aero_status s) {
    switch (s) {
    case AERO_OK: return "ok";
    case AERO_ERR_IO: return "io error";
    case AERO_ERR_FORMAT: return "format error";
    case AERO_ERR_NOMEM: return "out of memory";
    case AERO_ERR_INVALID: return "invalid argument";
    case AERO_ERR_UNSUPPORTED: return "unsupported";
    case AERO_ERR_RANGE: return "out of range";
    }
    return "unknown";
}
