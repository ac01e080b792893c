#!/bin/sh
# Writes (to stdout) a C fragment embedding the page's files into the binary: one byte array per file, then a
# table of URL path, content type, bytes and length that src/server/web.c includes. POSIX sh, od and sed only,
# so that the build needs no network and no tool beyond the base system.
set -e
i=0
for f in "$@"; do
    echo "static const unsigned char web_f$i[] = {"
    od -An -v -tx1 "$f" | sed 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'
    echo "0};" # a terminating zero so that no array is empty; the length leaves it out
    i=$((i + 1))
done
echo "static const web_file web_files[] = {"
i=0
for f in "$@"; do
    name=$(basename "$f")
    case "$name" in
    *.html) type="text/html; charset=utf-8" ;;
    *.js | *.mjs) type="text/javascript; charset=utf-8" ;;
    *.css) type="text/css; charset=utf-8" ;;
    *.svg) type="image/svg+xml" ;;
    *.png) type="image/png" ;;
    *) type="application/octet-stream" ;;
    esac
    echo "    {\"/web/$name\", \"$type\", web_f$i, sizeof web_f$i - 1},"
    i=$((i + 1))
done
echo "};"
