// Constrained output through the official `openai` client: response_format json_object gives JSON (a whole
// object when the model stops, a valid prefix when max_tokens cuts it), and json_schema outputs of real tool
// definitions (nested objects, arrays, enums, required, anyOf/oneOf, $ref, string formats, number ranges)
// parse and validate against their schema, streamed or not, at any seed. Unsupported keywords are 400s that
// name the keyword; llama-server's GBNF `grammar` field works too. The validator below is written here (no npm
// validator is installed).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';

import { SKIP, startServer } from './server_util.mjs';

const M = 'stories260K.gguf';

// ---- a small JSON-schema validator for the keywords the tests use ----
const DAYS = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const FORMATS = {
  date: (s) => {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s);
    if (!m) return false;
    const y = +m[1], mo = +m[2], d = +m[3];
    const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
    return mo >= 1 && mo <= 12 && d >= 1 && d <= (mo === 2 && !leap ? 28 : DAYS[mo - 1]);
  },
  time: (s) => /^([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?([zZ]|[+-]([01]\d|2[0-3]):[0-5]\d)$/.test(s),
  'date-time': (s) => { const i = s.search(/[tT]/); return i > 0 && FORMATS.date(s.slice(0, i)) && FORMATS.time(s.slice(i + 1)); },
  uuid: (s) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s),
  // ajv-formats' email rule
  email: (s) => /^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/i.test(s),
};

function typeOf(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

// Returns a list of problems (empty: valid).
export function validate(schema, v, root = schema, path = '$') {
  const errs = [];
  const err = (m) => errs.push(`${path}: ${m}`);
  if (schema === true) return errs;
  if (schema.$ref) {
    const target = schema.$ref.slice(2).split('/').reduce((o, k) => o[k], root);
    return validate(target, v, root, path);
  }
  if ('const' in schema && JSON.stringify(schema.const) !== JSON.stringify(v)) err(`not the const ${JSON.stringify(schema.const)}`);
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(v))) err(`${JSON.stringify(v)} not in enum`);
  if (schema.anyOf && !schema.anyOf.some((s) => validate(s, v, root, path).length === 0)) err('matches no anyOf branch');
  if (schema.oneOf && schema.oneOf.filter((s) => validate(s, v, root, path).length === 0).length !== 1) err('does not match exactly one oneOf branch');
  if (schema.type) {
    const types = [].concat(schema.type);
    const t = typeOf(v);
    if (!types.includes(t) && !(t === 'integer' && types.includes('number'))) { err(`type ${t}, want ${types}`); return errs; }
  }
  const t = typeOf(v);
  if (t === 'string') {
    const n = [...v].length;
    if (schema.minLength !== undefined && n < schema.minLength) err(`shorter than ${schema.minLength}`);
    if (schema.maxLength !== undefined && n > schema.maxLength) err(`longer than ${schema.maxLength}`);
    if (schema.format && !FORMATS[schema.format](v)) err(`not a ${schema.format}: ${JSON.stringify(v)}`);
  }
  if (t === 'integer' || t === 'number') {
    if (schema.minimum !== undefined && v < schema.minimum) err(`below ${schema.minimum}`);
    if (schema.maximum !== undefined && v > schema.maximum) err(`above ${schema.maximum}`);
  }
  if (t === 'array') {
    if (schema.minItems !== undefined && v.length < schema.minItems) err(`fewer than ${schema.minItems} items`);
    if (schema.maxItems !== undefined && v.length > schema.maxItems) err(`more than ${schema.maxItems} items`);
    if (schema.items) v.forEach((x, i) => errs.push(...validate(schema.items, x, root, `${path}[${i}]`)));
  }
  if (t === 'object') {
    for (const k of schema.required || []) if (!(k in v)) err(`missing required '${k}'`);
    for (const [k, x] of Object.entries(v)) {
      if (schema.properties && k in schema.properties) errs.push(...validate(schema.properties[k], x, root, `${path}.${k}`));
      else if (schema.additionalProperties === false) err(`unexpected property '${k}'`);
    }
  }
  return errs;
}

// Throws 'EOF' when text is a valid prefix of some JSON value, 'ERR' when it cannot become one; returns
// the end index when a whole value was parsed.
function parsePrefix(s) {
  let i = 0;
  const eof = () => { throw new Error('EOF'); };
  const bad = () => { throw new Error('ERR'); };
  const peek = () => (i < s.length ? s[i] : eof());
  const ws = () => { while (i < s.length && ' \t\n\r'.includes(s[i])) i++; };
  const lit = (w) => { for (const ch of w) { if (peek() !== ch) bad(); i++; } };
  function str() {
    lit('"');
    for (;;) {
      const c = peek();
      i++;
      if (c === '"') return;
      if (c === '\\') { const e = peek(); i++; if (e === 'u') { for (let k = 0; k < 4; k++) { if (!/[0-9a-fA-F]/.test(peek())) bad(); i++; } } else if (!'"\\/bfnrt'.includes(e)) bad(); }
      else if (c < ' ') bad();
    }
  }
  function num() {
    const m = /^-?(0|[1-9]\d*)?(\.\d*)?([eE][+-]?\d*)?/.exec(s.slice(i));
    if (!m[0]) bad();
    i += m[0].length;
    if (i === s.length) eof();
  }
  function value() {
    ws();
    const c = peek();
    if (c === '{') {
      i++; ws();
      if (peek() === '}') { i++; return; }
      for (;;) { ws(); str(); ws(); lit(':'); value(); ws(); const d = peek(); i++; if (d === '}') return; if (d !== ',') bad(); }
    } else if (c === '[') {
      i++; ws();
      if (peek() === ']') { i++; return; }
      for (;;) { value(); ws(); const d = peek(); i++; if (d === ']') return; if (d !== ',') bad(); }
    } else if (c === '"') str();
    else if (c === 't') lit('true');
    else if (c === 'f') lit('false');
    else if (c === 'n') lit('null');
    else num();
  }
  value();
  return i;
}

// ---- schemas of real tool definitions ----
const WEATHER = {
  type: 'object',
  properties: {
    location: {
      type: 'object',
      properties: { city: { type: 'string', maxLength: 24 }, country: { enum: ['FR', 'US', 'JP'] } },
      required: ['city', 'country'], additionalProperties: false,
    },
    unit: { type: 'string', enum: ['celsius', 'fahrenheit'], description: 'temperature unit' },
    days: { type: 'integer', minimum: 1, maximum: 14 },
    include_hourly: { type: 'boolean' },
  },
  required: ['location', 'unit'], additionalProperties: false,
};
const SEARCH = {
  type: 'object',
  properties: {
    query: { type: 'string', minLength: 1, maxLength: 30 },
    filters: {
      anyOf: [
        { type: 'null' },
        { type: 'object', properties: { max_price: { type: 'number', minimum: 0, maximum: 1000 },
          categories: { type: 'array', items: { enum: ['books', 'toys', 'food'] }, minItems: 1, maxItems: 3 } }, required: ['categories'] },
      ],
    },
    limit: { type: 'integer', minimum: 1, maximum: 50 },
  },
  required: ['query', 'filters', 'limit'],
};
const EVENT = {
  type: 'object',
  properties: {
    title: { type: 'string', maxLength: 20 },
    date: { type: 'string', format: 'date' },
    start: { type: 'string', format: 'date-time' },
    attendees: { type: 'array', maxItems: 2, items: { type: 'object', properties: { email: { type: 'string', format: 'email' }, optional: { type: 'boolean' } }, required: ['email'] } },
    id: { type: 'string', format: 'uuid' },
    priority: { anyOf: [{ type: 'integer', minimum: 1, maximum: 3 }, { const: 'urgent' }] },
  },
  required: ['title', 'date', 'attendees', 'id', 'priority'],
};
const SHAPE = {
  $defs: { point: { type: 'object', properties: { x: { type: 'integer', minimum: -100, maximum: 100 }, y: { type: 'integer', minimum: -100, maximum: 100 } }, required: ['x', 'y'] } },
  type: 'object',
  properties: {
    shape: {
      oneOf: [
        { type: 'object', properties: { kind: { const: 'circle' }, center: { $ref: '#/$defs/point' }, r: { type: 'number', minimum: 0, maximum: 10 } }, required: ['kind', 'center', 'r'] },
        { type: 'object', properties: { kind: { const: 'polyline' }, points: { type: 'array', items: { $ref: '#/$defs/point' }, minItems: 2, maxItems: 4 } }, required: ['kind', 'points'] },
      ],
    },
  },
  required: ['shape'],
};
const SCHEMAS = { get_weather: WEATHER, search_products: SEARCH, create_event: EVENT, draw_shape: SHAPE };

describe('constrained output (response_format)', { skip: SKIP }, () => {
  let srv, client;
  before(async () => {
    srv = await startServer(['-np', '4']);
    client = new OpenAI({ baseURL: `${srv.base}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
  });
  after(async () => {
    if (srv) assert.equal((await srv.stop()).code, 0);
  });

  test('json_object: a JSON object, or a valid prefix of one when max_tokens cuts it', async () => {
    for (let seed = 1; seed <= 4; seed++) {
      const r = await client.chat.completions.create({ model: M, messages: [{ role: 'user', content: 'Answer in JSON.' }],
        response_format: { type: 'json_object' }, max_tokens: 120, temperature: 1, seed });
      const { content } = r.choices[0].message;
      if (r.choices[0].finish_reason === 'stop') {
        const v = JSON.parse(content);
        assert.equal(typeOf(v), 'object');
      } else {
        assert.equal(r.choices[0].finish_reason, 'length');
        assert.throws(() => parsePrefix(content), /EOF/, `not a JSON prefix: ${content}`);
        assert.match(content.trimStart(), /^\{/);
      }
    }
  });

  for (const [name, schema] of Object.entries(SCHEMAS)) {
    test(`json_schema ${name}: outputs parse and validate (4 seeds, greedy too)`, async () => {
      for (const seed of [1, 2, 3, 4, 0]) {
        const r = await client.chat.completions.create({ model: M, messages: [{ role: 'user', content: `Call ${name}.` }],
          response_format: { type: 'json_schema', json_schema: { name, schema, strict: true } },
          max_tokens: 600, temperature: seed ? 1 : 0, seed });
        const { content } = r.choices[0].message;
        assert.equal(r.choices[0].finish_reason, 'stop', content);
        const v = JSON.parse(content);
        assert.deepEqual(validate(schema, v), [], content);
      }
    });
  }

  test('json_schema streamed: the deltas join into the same valid JSON as the whole response', async () => {
    const req = { model: M, messages: [{ role: 'user', content: 'Plan an event.' }],
      response_format: { type: 'json_schema', json_schema: { name: 'create_event', schema: EVENT } }, max_tokens: 600, temperature: 0.9, seed: 11 };
    const whole = await client.chat.completions.create(req);
    const stream = await client.chat.completions.create({ ...req, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    assert.equal(text, whole.choices[0].message.content);
    assert.deepEqual(validate(EVENT, JSON.parse(text)), []);
  });

  test('completions take response_format too', async () => {
    const r = await fetch(`${srv.base}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'Once upon a time',
      max_tokens: 300, temperature: 0, response_format: { type: 'json_schema', json_schema: { name: 'w', schema: WEATHER } } }) });
    const j = await r.json();
    assert.deepEqual(validate(WEATHER, JSON.parse(j.choices[0].text)), []);
  });

  test('unsupported schema keywords are 400s naming the keyword', async () => {
    const cases = [
      [{ type: 'string', pattern: '^a+$' }, 'pattern'],
      [{ type: 'array', items: { type: 'string' }, uniqueItems: true }, 'uniqueItems'],
      [{ type: 'object', properties: { a: { not: { type: 'null' } } } }, 'not'],
      [{ type: 'string', format: 'ipv4' }, 'format'],
      [{ allOf: [{ type: 'object' }, { required: ['a'] }] }, 'allOf'],
    ];
    for (const [schema, kw] of cases) {
      await assert.rejects(client.chat.completions.create({ model: M, messages: [{ role: 'user', content: 'x' }],
        response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } }),
      (e) => e instanceof OpenAI.BadRequestError && e.param === 'response_format' && e.message.includes(`'${kw}'`), kw);
    }
    await assert.rejects(client.chat.completions.create({ model: M, messages: [{ role: 'user', content: 'x' }],
      response_format: { type: 'json_schema' } }), (e) => e instanceof OpenAI.BadRequestError && e.param === 'response_format');
  });

  test("llama-server's grammar field (GBNF)", async () => {
    const grammar = 'root ::= verdict " " [1-9] [0-9]\nverdict ::= "yes" | "no" # either\n';
    for (const seed of [1, 2, 3]) {
      const r = await (await fetch(`${srv.base}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'Once upon a time',
        max_tokens: 50, temperature: 1, seed, grammar }) })).json();
      assert.equal(r.choices[0].finish_reason, 'stop');
      assert.match(r.choices[0].text, /^(yes|no) [1-9][0-9]$/);
    }
    const bad = await fetch(`${srv.base}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'x', grammar: 'root ::= undefined-rule' }) });
    assert.equal(bad.status, 400);
    const e = await bad.json();
    assert.equal(e.error.param, 'grammar');
    assert.match(e.error.message, /undefined-rule/);
    const both = await fetch(`${srv.base}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'x', grammar,
      response_format: { type: 'json_object' } }) });
    assert.equal(both.status, 400);
  });

  test('the server keeps serving plain requests alongside', async () => {
    const r = await client.completions.create({ model: M, prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.match(srv.log(), /mask=\d+\.\d+ms\/token/);
  });
});
