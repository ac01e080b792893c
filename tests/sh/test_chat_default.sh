#!/usr/bin/env bash
# aerollm chat on the bundled model, which has no chat template: it falls back to ChatML (saying so on stderr)
# and answers messages piped on stdin; `aerollm template` on the same model renders ChatML the same way.
set -u
A=${AEROLLM:-build/aerollm}
[ -x "$A" ] || { echo "skipped: $A not built"; exit 77; }
ls models/*teacher*.gguf >/dev/null 2>&1 || { echo "skipped: no bundled model under models/"; exit 77; }
T=$(mktemp -d /tmp/aero_test_chat.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }

printf 'Tell me a story.\nAnd another one.\n' | "$A" chat -n 24 --temp 0 >"$T/out" 2>"$T/err" ||
  fail "chat on the default model: $(tail -3 "$T/err")"
grep -q "ChatML" "$T/err" || fail "chat does not say it uses the ChatML fallback: $(cat "$T/err")"
[ "$(wc -l <"$T/out")" -ge 2 ] || fail "chat did not answer both messages: $(cat "$T/out")"

M=$(ls models/*teacher*.gguf | head -1)
echo '[{"role":"user","content":"hi"}]' >"$T/msgs.json"
"$A" template -m "$M" --messages "$T/msgs.json" --add-generation-prompt >"$T/tmpl" 2>"$T/terr" ||
  fail "template on the default model: $(cat "$T/terr")"
printf '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n' | cmp -s - "$T/tmpl" ||
  fail "template did not render ChatML: $(cat "$T/tmpl")"

[ $fails -eq 0 ] && echo "test_chat_default: ok"
exit $((fails > 0))
