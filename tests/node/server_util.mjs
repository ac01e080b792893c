// Shared helpers of the server tests: start `aerollm serve` on a free port, wait until it is ready, read its
// RSS and metrics, stop it. The binary comes from $AEROLLM (set by tests/run.sh).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';

export const MODEL = '../shared/data/models/stories260K.gguf';
export const BIN = process.env.AEROLLM || 'build/aerollm';
export const HAVE_MODEL = existsSync(MODEL);
export const SKIP = HAVE_MODEL ? false : 'skipped: ../shared/data not found';

// The bundled speculative pair (AeroLLM's own teacher and the drafter distilled from it).
export const TEACHER = 'models/aero-teacher-34M-Q8_0.gguf';
export const DRAFTER = 'models/aero-drafter-3M-F16.gguf';
export const HAVE_PAIR = existsSync(TEACHER) && existsSync(DRAFTER);

// Starts a server with extra flags (on `model`, default the test model); resolves once /health answers 200.
export async function startServer(extra = [], env = {}, { model = MODEL } = {}) {
  const args = ['serve', '-m', model, '--port', '0', ...extra];
  const proc = spawn(BIN, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let log = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log}`)), 20000);
    proc.stderr.on('data', (d) => {
      log += d.toString();
      if (log.length > 1 << 20) log = log.slice(-(1 << 19)); // keep draining, keep memory bounded
      const m = log.match(/listening on http:\/\/[^:\s]+:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.on('exit', (code) => reject(new Error(`server exited (${code}):\n${log}`)));
  });
  const base = `http://127.0.0.1:${port}`;
  let gone = false;
  proc.on('exit', () => { gone = true; });
  for (let i = 0; ; i++) {
    if (gone) throw new Error(`server exited while loading:\n${log}`);
    const r = await fetch(`${base}/health`).catch(() => null);
    if (r && r.status === 200) break;
    if (i > 400) throw new Error(`server never became healthy:\n${log}`);
    await new Promise((res) => setTimeout(res, 50));
  }
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return {
    proc, port, base, exited,
    log: () => log,
    // SIGTERM and wait; resolves to the exit code (0 = clean shutdown).
    async stop() {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10000);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
  };
}

// True when the process runs under AddressSanitizer (its allocator keeps freed memory; RSS is not comparable).
export function underASan(pid) {
  return /libasan|libclang_rt\.asan/.test(readFileSync(`/proc/${pid}/maps`, 'utf8'));
}

export function rssKiB(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) : 0;
}

// Parses Prometheus text into {name: value} (labels kept in the name).
export async function metrics(base) {
  const txt = await (await fetch(`${base}/metrics`)).text();
  const out = {};
  for (const line of txt.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}

// Waits for a state, never for a time: polls check() (async) until it returns a truthy value, which it returns;
// throws with `what` when the state has not come within timeoutMs (a limit for a broken server, not a wait).
export async function waitFor(check, what, timeoutMs = 20000) {
  const t0 = Date.now();
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10)); // between polls only: the condition is what ends the wait
  }
}

// Waits until the server has no request generating or queued; returns those metrics, with `polls`: how many
// /metrics requests it took (each counts as a 2xx request once answered).
export async function waitIdle(base) {
  let polls = 0;
  const m = await waitFor(async () => {
    polls++;
    const x = await metrics(base);
    return x.aerollm_requests_active === 0 && x.aerollm_requests_queued === 0 ? x : null;
  }, 'no active or queued request');
  return { ...m, polls };
}

// Raw HTTP/1.1 exchange over a socket: sends bytes, collects the reply until the server closes or timeout.
export function rawExchange(port, payload, { timeoutMs = 5000, keepOpen = false } = {}) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let data = '';
    let closed = false;
    const t = setTimeout(() => { sock.destroy(); resolve({ data, closed }); }, timeoutMs);
    sock.on('data', (d) => { data += d.toString('latin1'); });
    sock.on('error', () => {});
    sock.on('close', () => { closed = true; clearTimeout(t); resolve({ data, closed }); });
    sock.on('connect', () => {
      if (payload) sock.write(payload);
      if (!keepOpen) sock.end();
    });
  });
}

// POST with node:http (an agent lets a test control the number of connections).
export function post(base, path, body, { agent, headers = {} } = {}) {
  const u = new URL(path, base);
  const data = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: 'POST', agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), ...headers } },
    (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(data);
  });
}

// Strict SSE parse of an OpenAI stream body: every event is one `data:` line, all JSON except the final
// [DONE]; returns the parsed chunks (throws on anything malformed).
export function parseSSE(body) {
  if (!body.endsWith('data: [DONE]\n\n')) throw new Error(`stream does not end with [DONE]: ${JSON.stringify(body.slice(-80))}`);
  const events = body.split('\n\n');
  events.pop(); // after the last blank line
  const chunks = [];
  for (let i = 0; i < events.length - 1; i++) {
    const ev = events[i];
    if (!ev.startsWith('data: ') || ev.includes('\n')) throw new Error(`malformed event: ${JSON.stringify(ev)}`);
    chunks.push(JSON.parse(ev.slice(6)));
  }
  if (events[events.length - 1] !== 'data: [DONE]') throw new Error('missing [DONE]');
  return chunks;
}
