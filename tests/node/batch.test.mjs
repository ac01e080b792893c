// `aerollm batch`: a 200-request OpenAI Batch input (chat and completions, greedy, some with logprobs up to
// top_logprobs 20, some malformed) against the bundled teacher. Every custom_id is answered exactly once; each
// body equals what `aerollm serve` answers for the same request (ids, timestamps and the cache-dependent
// cached_tokens aside); bad lines get error lines. A job killed with SIGKILL halfway and resumed (twice) ends
// with the same answers as an uninterrupted run, a half-written last line included. Teacher forcing (completions
// with echo + logprobs, which the server refuses): a scored prompt's per-token logprobs and alternatives equal
// those of the same tokens generated.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { BIN, post } from './server_util.mjs';

const TEACHER = 'models/aero-teacher-34M-Q8_0.gguf';
const SKIP = existsSync(TEACHER) ? false : 'skipped: the bundled teacher is missing';
const dir = mkdtempSync(join(tmpdir(), 'aero_batch_test.'));

const words = ['Once upon a time', 'The little dog', 'Lily and Tom went to the park', 'A big red ball',
  'The sun was shining and', 'Mom said', 'In the forest there was', 'The cat jumped'];

// The input: 200 lines, deterministic. Returns the lines and, per custom_id, the request.
function makeInput() {
  const lines = [];
  const reqs = new Map();
  for (let i = 0; i < 185; i++) {
    const id = `req-${i}`;
    const chat = i % 3 === 0;
    const body = chat
      ? { model: 'aero-teacher-34M-Q8_0', messages: [{ role: 'user', content: `${words[i % 8]} ${i}` }], max_tokens: 4 + (i % 9), temperature: 0 }
      : { prompt: `${words[i % 8]}${i % 5 === 0 ? ' and then' : ''}`, max_tokens: 3 + (i % 11), temperature: 0 };
    if (i % 7 === 0) {
      body.logprobs = chat ? true : 5; // completions: at most 5 (OpenAI's limit)
      if (chat) body.top_logprobs = i % 2 ? 20 : 3;
    }
    if (i % 11 === 0) body.stop = ['.'];
    if (!chat && i % 13 === 0 && i % 7 !== 0) body.echo = true; // echo + logprobs is teacher forcing: below
    if (i === 40) body.max_tokens = 100000; // the context cannot hold it: 400 context_length_exceeded
    if (i === 41) body.temperature = 9; // 400 on temperature
    if (i === 42) body.model = 'no-such-model'; // 404
    if (i === 43) body.top_logprobs = 21; // 400 (chat) / ignored when not chat: make it chat-shaped below
    const url = chat || i === 43 ? '/v1/chat/completions' : '/v1/completions';
    if (i === 43) { delete body.prompt; body.messages = [{ role: 'user', content: 'x' }]; body.logprobs = true; }
    const line = { custom_id: id, method: 'POST', url, body };
    reqs.set(id, line);
    lines.push(JSON.stringify(line));
  }
  // malformed lines (each answered by an error line)
  lines.push('this is not json');
  lines.push('{"custom_id": "broken", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x"');
  lines.push(JSON.stringify({ method: 'POST', url: '/v1/completions', body: { prompt: 'no id' } }));
  lines.push(JSON.stringify({ custom_id: 'get', method: 'GET', url: '/v1/completions', body: { prompt: 'x' } }));
  lines.push(JSON.stringify({ custom_id: 'url', method: 'POST', url: '/v1/embeddings', body: { input: 'x' } }));
  lines.push(JSON.stringify({ custom_id: 'nobody', method: 'POST', url: '/v1/completions' }));
  lines.push(JSON.stringify({ custom_id: 'req-5', method: 'POST', url: '/v1/completions', body: { prompt: 'dup' } }));
  lines.push('[1, 2, 3]');
  lines.push(JSON.stringify({ custom_id: 17, method: 'POST', url: '/v1/completions', body: { prompt: 'x' } }));
  lines.push(JSON.stringify({ custom_id: 'badmsg', method: 'POST', url: '/v1/chat/completions', body: { messages: 'hi' } }));
  lines.push(JSON.stringify({ custom_id: 'emptymsgs', method: 'POST', url: '/v1/chat/completions', body: { messages: [] } }));
  lines.push(JSON.stringify({ custom_id: 'badtok', method: 'POST', url: '/v1/completions', body: { prompt: [1, 2, 999999] } }));
  lines.push(JSON.stringify({ custom_id: 'neg', method: 'POST', url: '/v1/completions', body: { prompt: 'x', max_tokens: -3 } }));
  lines.push(JSON.stringify({ custom_id: 'badstop', method: 'POST', url: '/v1/completions', body: { prompt: 'x', stop: 5 } }));
  lines.push('{"custom_id": "trunc"');
  for (const l of lines.slice(185)) {
    try {
      const o = JSON.parse(l);
      if (typeof o.custom_id === 'string' && !reqs.has(o.custom_id)) reqs.set(o.custom_id, o);
    } catch { /* malformed JSON: answered under line-N */ }
  }
  assert.equal(lines.length, 200);
  return { lines, reqs };
}

function runBatch(input, output, extra = []) {
  const r = spawnSync(BIN, ['batch', '-m', TEACHER, input, '-o', output, '-c', '256', ...extra], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stderr;
}

function readOut(path) {
  return readFileSync(path, 'utf8').split('\n').filter((l) => l).map((l) => JSON.parse(l));
}

// A body without what differs between two answers of the same request.
function norm(body) {
  const b = structuredClone(body);
  delete b.id;
  delete b.created;
  if (b.usage) delete b.usage.prompt_tokens_details;
  return b;
}

// custom_id -> normalized answer
function answers(lines) {
  const m = new Map();
  for (const l of lines) {
    assert.ok(!m.has(l.custom_id), `custom_id ${l.custom_id} answered twice`);
    m.set(l.custom_id, l.response ? { status: l.response.status_code, body: norm(l.response.body) } : { error: l.error.code });
  }
  return m;
}

describe('aerollm batch', { skip: SKIP }, () => {
  const { lines, reqs } = makeInput();
  const input = join(dir, 'in.jsonl');
  const out = join(dir, 'out.jsonl');
  let full;
  before(() => {
    writeFileSync(input, lines.join('\n') + '\n');
    runBatch(input, out, ['-np', '16', '--quiet']);
    full = answers(readOut(out));
  });
  after(() => { if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true }); });

  test('every custom_id is answered exactly once; bad lines get error lines', () => {
    for (const id of reqs.keys()) assert.ok(full.has(id), `no answer for ${id}`);
    // 200 lines: 185 requests, 15 malformed of which 7 have no usable or a repeated custom_id (line-N)
    const lineKeys = [...full.keys()].filter((k) => k.startsWith('line-'));
    assert.deepEqual(lineKeys.sort(), ['line-186', 'line-187', 'line-188', 'line-192', 'line-193', 'line-194', 'line-200'].sort());
    assert.equal(full.size, 200);
    assert.equal(full.get('line-186').error, 'invalid_json');
    assert.equal(full.get('line-188').error, 'missing_custom_id');
    assert.equal(full.get('line-192').error, 'duplicate_custom_id');
    assert.equal(full.get('get').error, 'invalid_method');
    assert.equal(full.get('url').error, 'invalid_url');
    assert.equal(full.get('nobody').error, 'invalid_body');
    for (const id of ['badmsg', 'emptymsgs', 'badtok', 'neg', 'badstop', 'req-40', 'req-41', 'req-43'])
      assert.equal(full.get(id).status, 400, `${id}: ${JSON.stringify(full.get(id))}`);
    assert.equal(full.get('req-42').status, 404);
    assert.equal(full.get('req-40').body.error.code, 'context_length_exceeded');
    const ok = [...full.values()].filter((a) => a.status === 200);
    assert.equal(ok.length, 185 - 4);
    const lp = full.get('req-7').body.choices[0].logprobs; // completions, logprobs 5
    assert.equal(Object.keys(lp.top_logprobs[0]).length, 5);
    const clp = full.get('req-21').body.choices[0].logprobs.content; // chat, top_logprobs 20
    assert.ok(clp.length > 0);
    for (const t of clp) assert.equal(t.top_logprobs.length, 20);
  });

  test('bodies equal the server\'s answers to the same requests (greedy, logprobs included)', async () => {
    const proc = spawn(BIN, ['serve', '-m', TEACHER, '--port', '0', '-np', '4', '-c', '256', '--quiet'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    const port = await new Promise((resolve, reject) => {
      proc.stderr.on('data', (d) => {
        log += d;
        const m = log.match(/listening on http:\/\/[^:\s]+:(\d+)/);
        if (m) resolve(Number(m[1]));
      });
      proc.on('exit', (c) => reject(new Error(`server exited ${c}: ${log}`)));
    });
    const base = `http://127.0.0.1:${port}`;
    try {
      for (let i = 0; i < 400; i++) {
        const r = await fetch(`${base}/health`).catch(() => null);
        if (r && r.status === 200) break;
        await new Promise((res) => setTimeout(res, 50));
      }
      let compared = 0;
      for (const [id, line] of reqs) {
        if (line.method !== 'POST' || typeof line.body !== 'object' || !line.url.match(/^\/v1\/(chat\/)?completions$/)) continue;
        const res = await post(base, line.url, line.body);
        const mine = full.get(id);
        assert.equal(mine.status, res.status, `${id}: batch ${mine.status}, server ${res.status} ${res.body}`);
        assert.deepEqual(mine.body, norm(JSON.parse(res.body)), `${id} differs`);
        compared++;
      }
      assert.ok(compared >= 190, `compared ${compared}`);
    } finally {
      proc.kill('SIGTERM');
    }
  });

  test('SIGKILL halfway, then --resume (twice): the same answers as an uninterrupted run', async () => {
    const out2 = join(dir, 'out2.jsonl');
    const proc = spawn(BIN, ['batch', '-m', TEACHER, input, '-o', out2, '-c', '256', '-np', '4', '--quiet'], { stdio: 'ignore' });
    const exited = new Promise((resolve) => proc.on('exit', resolve));
    for (let i = 0; i < 2000; i++) {
      const n = existsSync(out2) ? readFileSync(out2, 'utf8').split('\n').length - 1 : 0;
      if (n >= 100) break;
      await new Promise((res) => setTimeout(res, 20));
    }
    proc.kill('SIGKILL');
    await exited;
    const partial = readOut(out2.replace(/$/, '')).length; // (a half line, if any, would throw: see below)
    assert.ok(partial > 0 && partial < 200, `killed after ${partial} lines`);
    // as if the kill had come in the middle of a write
    appendFileSync(out2, '{"id":"batch_req-x","custom_id":"req-1","respo');
    assert.ok(statSync(out2).size > 0);
    const without = spawnSync(BIN, ['batch', '-m', TEACHER, input, '-o', out2, '-c', '256'], { encoding: 'utf8' });
    assert.notEqual(without.status, 0, 'an existing output without --resume must be refused');
    assert.match(without.stderr, /--resume/);
    const log = runBatch(input, out2, ['-np', '8', '--resume']);
    assert.match(log, /incomplete last line/);
    assert.match(log, new RegExp(`${partial} skipped as already answered|skipped as done`));
    const after1 = answers(readOut(out2));
    assert.deepEqual(after1, full);
    runBatch(input, out2, ['--resume', '--quiet']);
    assert.deepEqual(answers(readOut(out2)), full);
    assert.equal(readOut(out2).length, 200);
  });

  test('teacher forcing: echo + logprobs scores the prompt, equal to the logprobs of the same tokens generated', () => {
    const P = 'Once upon a time';
    const gin = join(dir, 'gen.jsonl'), gout = join(dir, 'gen.out.jsonl');
    const prompts = ['Once upon a time', 'The little dog', 'Lily and Tom went to the park'];
    writeFileSync(gin, prompts.map((p, i) => JSON.stringify({ custom_id: `g${i}`, method: 'POST', url: '/v1/completions',
      body: { prompt: p, max_tokens: 8, temperature: 0, logprobs: 5 } })).join('\n') + '\n');
    runBatch(gin, gout, ['--quiet']);
    const gen = new Map(readOut(gout).map((l) => [l.custom_id, l.response.body.choices[0]]));
    const sin = join(dir, 'score.jsonl'), sout = join(dir, 'score.out.jsonl');
    const lines = prompts.map((p, i) => JSON.stringify({ custom_id: `s${i}`, method: 'POST', url: '/v1/completions',
      body: { prompt: p + gen.get(`g${i}`).text, echo: true, logprobs: 5 } }));
    lines.push(JSON.stringify({ custom_id: 'wide', method: 'POST', url: '/v1/completions', body: { prompt: P, echo: true, logprobs: 20, max_tokens: 0 } }));
    lines.push(JSON.stringify({ custom_id: 'too-wide', method: 'POST', url: '/v1/completions', body: { prompt: P, echo: true, logprobs: 21 } }));
    lines.push(JSON.stringify({ custom_id: 'gen-too', method: 'POST', url: '/v1/completions', body: { prompt: P, echo: true, logprobs: 2, max_tokens: 4 } }));
    lines.push(JSON.stringify({ custom_id: 'plain', method: 'POST', url: '/v1/completions', body: { prompt: P, max_tokens: 3, temperature: 0 } }));
    writeFileSync(sin, lines.join('\n') + '\n');
    runBatch(sin, sout, ['--quiet', '-np', '4']);
    const got = new Map(readOut(sout).map((l) => [l.custom_id, l.response]));
    assert.equal(got.size, 7);
    for (let i = 0; i < prompts.length; i++) {
      const g = gen.get(`g${i}`), s = got.get(`s${i}`);
      assert.equal(s.status_code, 200, JSON.stringify(s.body));
      const c = s.body.choices[0];
      assert.equal(c.text, prompts[i] + g.text);
      assert.equal(s.body.usage.completion_tokens, 0);
      assert.equal(c.logprobs.token_logprobs[0], null);
      const n = g.logprobs.tokens.length, m = c.logprobs.tokens.length;
      assert.deepEqual(c.logprobs.tokens.slice(m - n), g.logprobs.tokens);
      assert.deepEqual(c.logprobs.token_logprobs.slice(m - n), g.logprobs.token_logprobs);
      assert.deepEqual(c.logprobs.top_logprobs.slice(m - n), g.logprobs.top_logprobs);
      assert.equal(c.logprobs.text_offset.at(-n), prompts[i].length);
    }
    const w = got.get('wide').body.choices[0].logprobs.top_logprobs;
    for (const t of w.slice(1)) assert.equal(Object.keys(t).length, 20);
    assert.equal(got.get('too-wide').status_code, 400);
    assert.equal(got.get('gen-too').body.error.param, 'max_tokens');
    assert.equal(got.get('plain').status_code, 200);
  });
});
