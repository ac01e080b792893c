// `aerollm chat` on stories260K (greedy): each answer must be exactly what `aerollm run` generates for the
// rendered conversation so far, so reusing the KV cache across turns (only the new suffix is decoded) changes
// nothing; /reset forgets; a model without a template, an over-long turn and a bad template fail clearly.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

const BIN = process.env.AEROLLM ?? 'build/aerollm';
const MODEL = '../shared/data/models/stories260K.gguf';
const SKIP = !existsSync(BIN) ? `${BIN} not built` : !existsSync(MODEL) ? `${MODEL} absent` : false;

function run(args, input = '') {
  const r = spawnSync(BIN, args, { input, encoding: 'utf8', timeout: 60000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

// What `aerollm run` continues a prompt with (greedy, n tokens).
function continuation(prompt, n) {
  const r = run(['run', '-m', MODEL, '-p', prompt, '--temp', '0', '-n', String(n), '-t', '1']);
  assert.equal(r.code, 0, r.err);
  assert.ok(r.out.startsWith(prompt), 'run echoes the prompt');
  assert.ok(r.out.endsWith('\n'));
  return r.out.slice(prompt.length, -1);
}

describe('aerollm chat', { skip: SKIP }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'aero-chat-repl-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const plain = join(dir, 'plain.jinja');
  // a template without markup, so that `run -p` can be given the very same text
  writeFileSync(plain, '{% for m in messages %}{{ m.content }}{% endfor %}');

  test('answers equal run on the rendered conversation; the cache is reused across turns', () => {
    const u1 = 'Once upon a time', u2 = ' The little dog', u3 = ' Then';
    const r = run(['chat', '-m', MODEL, '--chat-template-file', plain, '--temp', '0', '-n', '24', '-t', '1', '--verbose'], `${u1}\n${u2}\n${u3}\n`);
    assert.equal(r.code, 0, r.err);
    const a1 = continuation(u1, 24);
    const a2 = continuation(u1 + a1 + u2, 24);
    const a3 = continuation(u1 + a1 + u2 + a2 + u3, 24);
    assert.equal(r.out, `${a1}\n${a2}\n${a3}\n`);
    const turns = [...r.err.matchAll(/prompt (\d+) tokens: (\d+) reused from the cache, (\d+) decoded/g)].map((m) => m.slice(1).map(Number));
    assert.equal(turns.length, 3);
    assert.equal(turns[0][1], 0, 'first turn starts from an empty cache');
    for (const [n, reused, decoded] of turns.slice(1)) {
      assert.ok(reused >= 20, `later turns reuse the cache (${reused} of ${n})`);
      assert.equal(reused + decoded, n);
    }
  });

  test('--system, -p and /reset', () => {
    const sys = join(dir, 'sys.jinja');
    writeFileSync(sys, "{% for m in messages %}{{ m.content }}{{ ' ' if m.role == 'system' }}{% endfor %}");
    const r = run(['chat', '-m', MODEL, '--chat-template-file', sys, '--system', 'Lily', '-p', 'was happy', '--temp', '0', '-n', '12', '--verbose'],
      '/reset\nwas happy\n/exit\nnever read\n');
    assert.equal(r.code, 0, r.err);
    const a = continuation('Lily was happy', 12);
    assert.equal(r.out, `${a}\n${a}\n`, 'after /reset the same question gets the same answer');
    const reused = [...r.err.matchAll(/(\d+) reused/g)].map((m) => Number(m[1]));
    assert.deepEqual(reused, [0, 0]);
  });

  test('no template in the model: ChatML, said on stderr; clear errors: a bad template file, a turn longer than the context', () => {
    let r = run(['chat', '-m', MODEL, '-n', '4', '--temp', '0'], 'hi\n');
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /the model has no chat template; chats use the ChatML fallback/);
    const bad = join(dir, 'bad.jinja');
    writeFileSync(bad, '{% for m in messages %}{{ m.content }}');
    r = run(['chat', '-m', MODEL, '--chat-template-file', bad], 'hi\n');
    assert.equal(r.code, 1);
    assert.match(r.err, /unclosed 'for' block/);
    r = run(['chat', '-m', MODEL, '--chat-template-file', plain, '-c', '32', '--temp', '0', '-n', '4'],
      `${'Once upon a time there was a girl. '.repeat(6)}\nOnce\n`);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /the conversation is \d+ tokens, the context holds 32/);
    assert.equal(r.out, `${continuation('Once', 4)}\n`, 'the refused turn is forgotten and the chat goes on');
  });
});
