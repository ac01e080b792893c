// Writes tests/fixtures/chat/hf_cases.json: every conformance case of scripts/chat_cases.mjs rendered by
// @huggingface/jinja (the renderer transformers.js uses), so the C test can check the renderer byte for byte
// without node. Run from the repo root: node scripts/chat_gen_fixtures.mjs
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { buildCases, loadTemplates, renderHF } from './chat_cases.mjs';

const require = createRequire(new URL('../package.json', import.meta.url));
const version = JSON.parse(readFileSync(require.resolve('@huggingface/jinja').replace(/dist\/.*$/, 'package.json'), 'utf8')).version;
const templates = loadTemplates();
const cases = [];
for (const cs of buildCases(templates)) {
  let expected = null, error = null;
  try {
    expected = await renderHF(templates, cs);
  } catch (e) {
    error = String(e.message ?? e);
  }
  if (cs.expect_error && error === null) throw new Error(`${cs.template}/${cs.name}: expected an error from @huggingface/jinja`);
  if (!cs.expect_error && error !== null) throw new Error(`${cs.template}/${cs.name}: @huggingface/jinja failed: ${error}`);
  cases.push({ ...cs, expected, error });
}
const out = { generator: 'scripts/chat_gen_fixtures.mjs', hf_jinja_version: version, templates, cases };
mkdirSync('tests/fixtures/chat', { recursive: true });
writeFileSync('tests/fixtures/chat/hf_cases.json', JSON.stringify(out, null, 1) + '\n');
const per = {};
for (const c of cases) per[c.template] = (per[c.template] ?? 0) + 1;
console.log(`wrote tests/fixtures/chat/hf_cases.json: ${cases.length} cases`, per);
