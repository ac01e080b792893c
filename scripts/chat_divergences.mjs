// Renders every case of tests/fixtures/chat/jinja2_cases.json with @huggingface/jinja and writes
// tests/fixtures/chat/jinja2_vs_hf.json: the cases where it disagrees with Python's jinja2, grouped. These are
// the implementation-defined behaviours; the C renderer follows jinja2 (or, for "strict" cases, raises a
// clear error). The fixture itself is only read: JSON.parse would turn 2.0 into 2, round integers past 2^53
// and move integer-like keys first, which is one of the very differences listed.
// Run from the repo root after scripts/chat_jinja2_fixtures.py: node scripts/chat_divergences.mjs [-v]
import { readFileSync, writeFileSync } from 'node:fs';
import { Template } from '@huggingface/jinja';

const doc = JSON.parse(readFileSync('tests/fixtures/chat/jinja2_cases.json', 'utf8'));
const groups = {
  'both render, output differs': [],
  'jinja2 fails, hf renders': [],
  'hf fails (unsupported there), jinja2 renders': [],
  'strict (the C renderer raises an error, jinja2 renders)': [],
};
const out = [];
for (const cs of doc.cases) {
  const t = doc.templates[cs.template];
  let hf, hfErr;
  try {
    hf = new Template(t.source).render({ messages: cs.messages, add_generation_prompt: cs.add_generation_prompt,
      tools: cs.tools ?? null, documents: null, bos_token: t.bos, eos_token: t.eos, ...(cs.extra ?? {}) });
    if (!hf.isWellFormed()) hf = hf.toWellFormed(); // lone surrogates from UTF-16 indexing cannot go to JSON
  } catch (e) {
    hfErr = String(e.message ?? e);
  }
  const strict = cs.jinja2_output !== undefined;
  const j2 = strict ? cs.jinja2_output : cs.expected;
  const same = j2 === null ? hfErr !== undefined : hf === j2;
  if (same && !strict) continue;
  const key = strict ? 'strict (the C renderer raises an error, jinja2 renders)' : j2 === null ? 'jinja2 fails, hf renders'
    : hfErr !== undefined ? 'hf fails (unsupported there), jinja2 renders' : 'both render, output differs';
  groups[key].push(cs.name);
  out.push({ name: cs.name, category: key, template: t.source, jinja2: j2 === null ? { error: cs.error } : j2,
    hf: hfErr !== undefined ? { error: hfErr } : hf });
  if (key === 'hf fails (unsupported there), jinja2 renders' && !process.argv.includes('-v')) continue;
  const show = (x) => (typeof x === 'string' ? JSON.stringify(x) : `ERROR ${x.error}`);
  console.log(`${cs.name}\n  jinja2: ${show(out.at(-1).jinja2)}\n  hf:     ${show(out.at(-1).hf)}`);
}
writeFileSync('tests/fixtures/chat/jinja2_vs_hf.json', JSON.stringify({ generator: 'scripts/chat_divergences.mjs', groups, cases: out }, null, 1) + '\n');
for (const [k, v] of Object.entries(groups)) console.log(`${k}: ${v.length}: ${v.join(' ')}`);
console.log(`wrote tests/fixtures/chat/jinja2_vs_hf.json: ${out.length} of ${doc.cases.length} cases differ`);
