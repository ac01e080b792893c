// Adds to tests/fixtures/chat/jinja2_cases.json what @huggingface/jinja renders for each case ("hf_output"
// or "hf_error"), and prints the cases where it disagrees with Python's jinja2: the implementation-defined
// behaviours, where the C renderer follows jinja2 (or, for "strict" cases, raises a clear error).
// Run from the repo root after scripts/chat_jinja2_fixtures.py: node scripts/chat_divergences.mjs
import { readFileSync, writeFileSync } from 'node:fs';
import { Template } from '@huggingface/jinja';

const path = 'tests/fixtures/chat/jinja2_cases.json';
const doc = JSON.parse(readFileSync(path, 'utf8'));
let n = 0;
const groups = { 'both render, output differs': [], 'jinja2 fails, hf renders': [], 'hf fails (unsupported there), jinja2 renders': [], 'strict (C raises an error)': [] };
for (const cs of doc.cases) {
  const t = doc.templates[cs.template];
  delete cs.hf_output;
  delete cs.hf_error;
  try {
    cs.hf_output = new Template(t.source).render({ messages: cs.messages, add_generation_prompt: cs.add_generation_prompt,
      tools: cs.tools ?? null, documents: null, bos_token: t.bos, eos_token: t.eos, ...(cs.extra ?? {}) });
  } catch (e) {
    cs.hf_error = String(e.message ?? e);
  }
  const j2 = cs.jinja2_output !== undefined ? cs.jinja2_output : cs.expected;
  const same = j2 === null ? cs.hf_error !== undefined : cs.hf_output === j2;
  if (!same) {
    n++;
    const hfFail = cs.hf_error !== undefined;
    const key = cs.jinja2_output !== undefined ? 'strict (C raises an error)' : j2 === null ? 'jinja2 fails, hf renders' : hfFail ? 'hf fails (unsupported there), jinja2 renders' : 'both render, output differs';
    groups[key].push(cs.name);
    if (key === 'hf fails (unsupported there), jinja2 renders' && !process.argv.includes('-v')) continue;
    const show = (x) => (x === undefined || x === null ? 'ERROR' : JSON.stringify(x));
    console.log(`${cs.name}${cs.jinja2_output !== undefined ? ' [strict]' : ''}\n  jinja2: ${j2 === null ? 'ERROR ' + cs.error : show(j2)}\n  hf:     ${cs.hf_error !== undefined ? 'ERROR ' + cs.hf_error : show(cs.hf_output)}`);
  }
}
writeFileSync(path, JSON.stringify(doc, null, 1) + '\n');
for (const [k, v] of Object.entries(groups)) console.log(`${k}: ${v.length}: ${v.join(' ')}`);
console.log(`${n} of ${doc.cases.length} cases differ between jinja2 and @huggingface/jinja`);
