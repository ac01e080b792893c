#!/usr/bin/env bash
# `make install PREFIX=tmp` installs the binary and the bundled models; the installed binary, run from elsewhere
# with no -m, finds its default model under PREFIX/share/aerollm; `make uninstall` leaves nothing behind.
set -u
ls models/*teacher*.gguf >/dev/null 2>&1 || { echo "skipped: no bundled model in models/"; exit 77; }
prefix=$(mktemp -d /tmp/aero_install.XXXXXX)
elsewhere=$(mktemp -d /tmp/aero_install_cwd.XXXXXX)
trap 'rm -rf "$prefix" "$elsewhere"' EXIT
fail=0
# The caller's make (its jobserver and variables) is not ours: a clean sub-make of the same build flavour.
mk() { env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s SAN="${SAN:-0}" "$@"; }
mk install PREFIX="$prefix" >"$elsewhere/install.log" 2>&1 || { echo "make install failed:"; cat "$elsewhere/install.log"; exit 1; }
bin=$prefix/bin/aerollm
[ -x "$bin" ] || { echo "no $bin"; exit 1; }
for m in models/*.gguf; do
  cmp -s "$m" "$prefix/share/aerollm/models/$(basename "$m")" || { echo "$m not installed"; fail=1; }
done
ver=$("$bin" --version) || fail=1
echo "$ver" | grep -qE '^aerollm [0-9]+\.[0-9]+\.[0-9]+ \(commit [0-9a-f]+(-dirty)?\)$|\(commit unknown\)$' ||
  { echo "unexpected --version: $ver"; fail=1; }
# No -m, run from a folder without models/: only the installed data folder can provide the model.
out=$(cd "$elsewhere" && "$bin" run -p "Once upon a time" -n 8 --temp 0 2>&1) || { echo "installed binary failed:"; echo "$out"; fail=1; }
[ -n "$out" ] || { echo "no output from the installed binary"; fail=1; }
mk uninstall PREFIX="$prefix" >"$elsewhere/uninstall.log" 2>&1 || { echo "make uninstall failed:"; cat "$elsewhere/uninstall.log"; fail=1; }
left=$(find "$prefix" -mindepth 1 ! -path "$prefix/bin" ! -path "$prefix/share")
[ -z "$left" ] || { echo "left after uninstall:"; echo "$left"; fail=1; }
[ $fail -eq 0 ] && echo "install/uninstall ok"
exit $fail
