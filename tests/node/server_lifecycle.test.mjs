// The server's life cycle seen from outside: a second server on a used port exits 1 with a clear message, a
// client that trickles its request is cut off after --timeout (whole request, not per byte), and SIGTERM lets
// streams in flight finish (or, past --shutdown-timeout, ends them with an error event and [DONE]) and exits 0.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { describe, test } from 'node:test';

import { BIN, MODEL, SKIP, parseSSE, startServer } from './server_util.mjs';

// Starts a stream with node:http and resolves once its first bytes arrive; `done` resolves to the whole body
// and whether the chunked body ended properly (res 'end' rather than 'aborted'/'error').
function openStream(base, body) {
  return new Promise((resolveFirst, reject) => {
    const u = new URL('/v1/completions', base);
    const data = JSON.stringify({ ...body, stream: true });
    let text = '';
    let resolveDone;
    const done = new Promise((r) => { resolveDone = r; });
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
      let first = true;
      res.on('data', (c) => {
        text += c.toString('utf8');
        if (first) { first = false; resolveFirst({ status: res.statusCode, done }); }
      });
      res.on('end', () => resolveDone({ body: text, complete: true }));
      res.on('aborted', () => resolveDone({ body: text, complete: false }));
      res.on('error', () => resolveDone({ body: text, complete: false }));
    });
    req.on('error', reject);
    req.end(data);
  });
}

describe('server life cycle', { skip: SKIP }, () => {
  test('a second server on a port in use exits 1 and says so', async () => {
    const a = await startServer([]);
    try {
      const b = spawn(BIN, ['serve', '-m', MODEL, '--port', String(a.port)], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      b.stderr.on('data', (d) => { err += d; });
      const code = await new Promise((r) => b.on('exit', (c) => r(c)));
      assert.equal(code, 1, err);
      assert.match(err, /already in use/);
      assert.equal((await fetch(`${a.base}/health`)).status, 200, 'the first server is untouched');
    } finally {
      assert.equal((await a.stop()).code, 0);
    }
  });

  test('two -m flags are refused', async () => {
    const b = spawn(BIN, ['serve', '-m', MODEL, '-m', MODEL, '--port', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    b.stderr.on('data', (d) => { err += d; });
    const code = await new Promise((r) => b.on('exit', (c) => r(c)));
    assert.equal(code, 1);
    assert.match(err, /-m given twice/);
  });

  test('a client sending one byte per 250 ms is disconnected after --timeout', async () => {
    const srv = await startServer(['--timeout', '2']);
    try {
      const req = 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n';
      const t0 = Date.now();
      const closedAt = await new Promise((resolve) => {
        const sock = net.connect(srv.port, '127.0.0.1');
        let i = 0;
        const tick = setInterval(() => {
          if (i < req.length) sock.write(req[i++]);
          else sock.write('x'); // the body trickles too
        }, 250);
        sock.on('error', () => {});
        sock.on('close', () => { clearInterval(tick); resolve(Date.now()); });
      });
      const dt = (closedAt - t0) / 1000;
      assert.ok(dt >= 1.8 && dt < 5, `closed after ${dt}s with --timeout 2 (each byte came within 250 ms)`);
      assert.equal((await fetch(`${srv.base}/health`)).status, 200);
    } finally {
      assert.equal((await srv.stop()).code, 0);
    }
  });

  test('SIGTERM lets a stream in flight finish, then exits 0', async () => {
    const srv = await startServer(['-np', '2']);
    const s = await openStream(srv.base, { prompt: 'Once', max_tokens: 300, ignore_eos: true, temperature: 0 });
    assert.equal(s.status, 200);
    srv.proc.kill('SIGTERM');
    const { body, complete } = await s.done;
    assert.ok(complete, 'the chunked body ends properly');
    const chunks = parseSSE(body);
    assert.equal(chunks.at(-1).choices[0].finish_reason, 'length');
    assert.equal((await srv.exited).code, 0);
    assert.match(srv.log(), /waiting up to 30s for 1 request/);
  });

  test('past --shutdown-timeout a stream ends with an error event and [DONE]', async () => {
    const srv = await startServer(['--shutdown-timeout', '0']);
    const s = await openStream(srv.base, { prompt: 'Once', max_tokens: 2000, ignore_eos: true });
    srv.proc.kill('SIGTERM');
    const { body, complete } = await s.done;
    assert.ok(complete, 'the chunked body ends properly');
    const chunks = parseSSE(body);
    assert.ok(chunks.at(-1).error, `the last event is an error: ${JSON.stringify(chunks.at(-1))}`);
    assert.equal((await srv.exited).code, 0);
  });

  test('503 carries Retry-After', async () => {
    const srv = await startServer(['-np', '1', '--queue', '0']);
    try {
      const s = await openStream(srv.base, { prompt: 'Once', max_tokens: 600, ignore_eos: true });
      const r = await fetch(`${srv.base}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'Once', max_tokens: 2 }) });
      assert.equal(r.status, 503);
      assert.equal(r.headers.get('retry-after'), '1');
      await s.done;
    } finally {
      assert.equal((await srv.stop()).code, 0);
    }
  });
});
