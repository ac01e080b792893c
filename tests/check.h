// Minimal test harness: CHECK records a failure and continues; tests exit 0 (pass), 1 (fail) or 77 (skipped).
#ifndef AERO_TESTS_CHECK_H
#define AERO_TESTS_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int check_failures = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            check_failures++;                                                        \
        }                                                                            \
    } while (0)

#define CHECKF(cond, ...)                                                            \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fputc('\n', stderr);                                                     \
            check_failures++;                                                        \
        }                                                                            \
    } while (0)

#define SHARED_DATA "../shared/data"

// Exits with "skipped" when the shared data folder is absent (a user's fresh clone).
static inline void require_shared_data(void) {
    if (access(SHARED_DATA "/models", R_OK) != 0) {
        printf("skipped: ../shared/data not found\n");
        exit(77);
    }
}

static inline int check_done(const char *name) {
    if (check_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, check_failures);
        return 1;
    }
    printf("%s: ok\n", name);
    return 0;
}

#endif
