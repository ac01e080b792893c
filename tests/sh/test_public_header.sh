#!/usr/bin/env bash
# The public header is a boundary: tests/test_public_api.c is compiled with -Iinclude and no -Isrc (so only
# <aerollm.h> is reachable), linked against libaero.a, and run; and no file of src/cli/ includes a module header.
set -u
LIB=${AERO_LIB:-build/libaero.a}
[ -f "$LIB" ] || { echo "skipped: $LIB not built"; exit 77; }
T=$(mktemp -d /tmp/aero_test_public_header.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }

CC=${CC:-cc}
# a library built with MPI (make MPI=1, the default where mpicc is found) links MPI's libraries too
MPI_LIBS=
if nm "$LIB" 2>/dev/null | grep -q ' U MPI_Init_thread'; then MPI_LIBS=$(mpicc --showme:link 2>/dev/null); fi
# shellcheck disable=SC2086
if ! $CC -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers \
        -pthread -Iinclude -o "$T/test_public_api" tests/test_public_api.c "$LIB" \
        -pthread -lm -ljansson -lmicrohttpd -lpcre2-8 $MPI_LIBS 2>"$T/cc.err"; then
    fail "tests/test_public_api.c does not build with -Iinclude only: $(head -20 "$T/cc.err")"
else
    "$T/test_public_api" >"$T/out" 2>&1
    rc=$?
    [ $rc -eq 0 ] || [ $rc -eq 77 ] || fail "test_public_api (rc=$rc): $(tail -20 "$T/out")"
fi

# The header compiles alone, in C and in C++ (an embedding application may be either).
printf '#include <aerollm.h>\nint main(void) { return aero_version()[0] == 0; }\n' >"$T/alone.c"
$CC -std=c11 -Wall -Wextra -Werror -Iinclude -c "$T/alone.c" -o "$T/alone.o" 2>"$T/cc.err" ||
    fail "<aerollm.h> alone does not compile as C11: $(head -5 "$T/cc.err")"
if command -v c++ >/dev/null; then
    cp "$T/alone.c" "$T/alone.cc"
    c++ -Wall -Wextra -Werror -Iinclude -c "$T/alone.cc" -o "$T/alone_cc.o" 2>"$T/cc.err" ||
        fail "<aerollm.h> alone does not compile as C++: $(head -5 "$T/cc.err")"
fi

# The CLI reaches the engine only through the public header.
if grep -n '#include "\.\./\|#include "[a-z]*/' src/cli/*.c src/cli/*.h >"$T/inc"; then
    fail "src/cli includes module headers: $(cat "$T/inc")"
fi
# The server does not reach into the kernels.
if grep -n '#include "\.\./kernels/' src/server/*.c src/server/*.h >"$T/inc"; then
    fail "src/server includes kernels/: $(cat "$T/inc")"
fi

[ $fails -eq 0 ] && echo "test_public_header: ok"
[ $fails -eq 0 ]
