// Tool calls through the official `openai` client: tools rendered by the model's own chat template (published
// templates of the Hermes/Qwen, Llama 3.1/3.2, Mistral and DeepSeek families, as --chat-template-file), the
// output parsed into tool_calls in each family's format, streamed as OpenAI streams them (id and name first,
// then argument deltas, finish_reason "tool_calls"), tool_choice required / named / none / auto,
// parallel_tool_calls, tool results and assistant tool_calls passed back through the template, and a clear 400
// when the template has no tool support.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';

import { SKIP, post, startServer } from './server_util.mjs';

const M = 'stories260K.gguf';
const FIX = 'tests/fixtures/chat/tools/';
const TOOLS = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Current weather in a city',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string', maxLength: 16 }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
        required: ['city', 'unit'],
      },
    },
  },
  {
    type: 'function',
    function: {
      name: 'get_time',
      description: 'Current time in a time zone',
      parameters: { type: 'object', properties: { zone: { type: 'string', maxLength: 8 } }, required: ['zone'] },
    },
  },
];
// A GBNF string literal of s (llama-server's 'grammar' field), to steer the test model into a given output.
const gbnf = (s) => `root ::= "${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
const ASK = [{ role: 'user', content: 'What is the weather in Paris, and the time there?' }];

// Checks a call against the tools: a known name, arguments a JSON object with the required keys, enums kept.
function validCall(c) {
  assert.equal(c.type, 'function');
  assert.match(c.id, /^(call_[A-Za-z0-9]{24}|[A-Za-z0-9]{9})$/);
  const tool = TOOLS.find((t) => t.function.name === c.function.name);
  assert.ok(tool, `unknown tool ${c.function.name}`);
  const args = JSON.parse(c.function.arguments);
  const p = tool.function.parameters;
  for (const k of p.required) assert.ok(k in args, `${c.function.name}: missing ${k} in ${c.function.arguments}`);
  for (const [k, v] of Object.entries(args)) {
    assert.ok(k in p.properties, `unexpected ${k}`);
    assert.equal(typeof v, 'string');
    if (p.properties[k].enum) assert.ok(p.properties[k].enum.includes(v));
  }
  return args;
}

// A streamed chat joined back: content, tool calls (from their deltas) and the finish reason.
async function streamed(client, body) {
  const s = await client.chat.completions.create({ ...body, stream: true });
  let content = '';
  let finish = null;
  const calls = [];
  for await (const ch of s) {
    const c = ch.choices[0];
    if (!c) continue;
    if (c.delta.content) content += c.delta.content;
    for (const d of c.delta.tool_calls ?? []) {
      if (d.id) {
        assert.equal(calls.length, d.index, 'a new call comes with the next index');
        assert.equal(d.type, 'function');
        assert.ok(d.function.name);
        calls.push({ id: d.id, type: 'function', function: { name: d.function.name, arguments: d.function.arguments ?? '' } });
      } else {
        assert.ok(calls[d.index], 'argument delta of a call announced before');
        assert.equal(d.function.name, undefined);
        calls[d.index].function.arguments += d.function.arguments;
      }
    }
    if (c.finish_reason) finish = c.finish_reason;
  }
  return { content, calls, finish };
}

const FAMILIES = [
  ['Qwen 2.5 (Hermes <tool_call>)', 'Qwen-Qwen2.5-7B-Instruct.jinja'],
  ['Hermes 3', 'NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja'],
  ['Llama 3.1 (JSON)', 'meta-llama-Llama-3.1-8B-Instruct.jinja'],
  ['Llama 3.2 (JSON)', 'meta-llama-Llama-3.2-3B-Instruct.jinja'],
  ['Mistral Nemo ([TOOL_CALLS])', 'mistralai-Mistral-Nemo-Instruct-2407.jinja'],
  ['DeepSeek R1/V3', 'deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja'],
  ['DeepSeek V3.1', 'deepseek-ai-DeepSeek-V3.1.jinja'],
];

for (const [family, file] of FAMILIES) {
  describe(`tool calls: ${family}`, { skip: SKIP }, () => {
    let srv;
    let client;
    before(async () => {
      srv = await startServer(['-np', '2', '--chat-template-file', FIX + file]);
      client = new OpenAI({ baseURL: `${srv.base}/v1`, apiKey: 'x' });
    });
    after(async () => {
      if (srv) assert.equal((await srv.stop()).code, 0);
    });

    test('tool_choice required: a valid call; the stream carries the same call as deltas', async () => {
      const body = { model: M, messages: ASK, tools: TOOLS, tool_choice: 'required', temperature: 0, max_tokens: 160, parallel_tool_calls: false };
      const r = await client.chat.completions.create(body);
      const ch = r.choices[0];
      assert.equal(ch.finish_reason, 'tool_calls', JSON.stringify(ch.message));
      assert.equal(ch.message.role, 'assistant');
      assert.equal(ch.message.tool_calls.length, 1);
      validCall(ch.message.tool_calls[0]);
      const s = await streamed(client, body);
      assert.equal(s.finish, 'tool_calls');
      assert.equal(s.calls.length, 1);
      assert.equal(s.content, ch.message.content ?? '');
      assert.equal(s.calls[0].function.name, ch.message.tool_calls[0].function.name);
      assert.equal(s.calls[0].function.arguments, ch.message.tool_calls[0].function.arguments);
    });

    test('a named function: that function is called', async () => {
      const r = await client.chat.completions.create({
        model: M, messages: ASK, tools: TOOLS, tool_choice: { type: 'function', function: { name: 'get_time' } },
        temperature: 0, max_tokens: 120, parallel_tool_calls: false,
      });
      const calls = r.choices[0].message.tool_calls;
      assert.equal(r.choices[0].finish_reason, 'tool_calls');
      assert.ok(calls.length >= 1);
      for (const c of calls) assert.equal(c.function.name, 'get_time');
      validCall(calls[0]);
    });

    test('tool results and assistant tool calls pass back through the template', async () => {
      const first = await client.chat.completions.create({
        model: M, messages: ASK, tools: TOOLS, tool_choice: 'required', temperature: 0, max_tokens: 160, parallel_tool_calls: false,
      });
      const call = first.choices[0].message.tool_calls[0];
      const history = [
        ...ASK,
        { role: 'assistant', content: null, tool_calls: [call] },
        { role: 'tool', tool_call_id: call.id, content: 'Sunny, 22 degrees' },
      ];
      const res = await post(srv.base, '/apply-template', { messages: history, tools: TOOLS });
      assert.equal(res.status, 200, res.body);
      const prompt = JSON.parse(res.body).prompt;
      assert.ok(prompt.includes('Sunny, 22 degrees'), prompt);
      assert.ok(prompt.includes(call.function.name));
      // the arguments are rendered as an object, never as a JSON string quoted again
      const args = JSON.parse(call.function.arguments);
      const firstKey = Object.keys(args)[0];
      assert.ok(prompt.includes(`"${firstKey}"`), prompt);
      assert.ok(!prompt.includes(`\\"${firstKey}\\"`), prompt);
      const next = await client.chat.completions.create({ model: M, messages: history, tools: TOOLS, temperature: 0, max_tokens: 16 });
      assert.equal(next.choices[0].message.role, 'assistant');
      assert.ok(['stop', 'length', 'tool_calls'].includes(next.choices[0].finish_reason));
    });
  });
}

describe('tool calls: choices, parallel calls, errors', { skip: SKIP }, () => {
  let srv;
  let client;
  before(async () => {
    srv = await startServer(['-np', '2', '--chat-template-file', `${FIX}Qwen-Qwen2.5-7B-Instruct.jinja`]);
    client = new OpenAI({ baseURL: `${srv.base}/v1`, apiKey: 'x' });
  });
  after(async () => {
    if (srv) assert.equal((await srv.stop()).code, 0);
  });

  test('parallel calls: two calls in one output become two tool_calls, streamed with indexes 0 and 1', async () => {
    // the model is steered into two calls by a grammar (tool_choice auto): what a capable model writes itself
    const two = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>\n'
      + '<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>';
    const body = { model: M, messages: ASK, tools: TOOLS, temperature: 0, max_tokens: 200, grammar: gbnf(two) };
    const r = await client.chat.completions.create(body);
    const calls = r.choices[0].message.tool_calls;
    assert.equal(r.choices[0].finish_reason, 'tool_calls');
    assert.deepEqual(calls.map((c) => c.function.name), ['get_weather', 'get_time']);
    assert.deepEqual(validCall(calls[0]), { city: 'Paris', unit: 'celsius' });
    assert.deepEqual(validCall(calls[1]), { zone: 'CET' });
    assert.notEqual(calls[0].id, calls[1].id);
    assert.equal(r.choices[0].message.content, null);
    const s = await streamed(client, body);
    assert.deepEqual(s.calls.map((c) => [c.function.name, c.function.arguments]), calls.map((c) => [c.function.name, c.function.arguments]));
    // parallel_tool_calls false: only the first call
    const one = await client.chat.completions.create({ ...body, parallel_tool_calls: false });
    assert.equal(one.choices[0].message.tool_calls.length, 1);
    assert.equal(one.choices[0].message.tool_calls[0].function.name, 'get_weather');
  });

  test('content before a call is kept as content', async () => {
    const out = 'I will look.\n<tool_call>\n{"name": "get_time", "arguments": {"zone": "UTC"}}\n</tool_call>';
    const r = await client.chat.completions.create({ model: M, messages: ASK, tools: TOOLS, max_tokens: 100, grammar: gbnf(out) });
    assert.equal(r.choices[0].message.content, 'I will look.');
    assert.equal(r.choices[0].message.tool_calls[0].function.arguments, '{"zone": "UTC"}');
  });

  test('tool_choice auto with a plain answer, and none: text, no tool_calls', async () => {
    for (const tool_choice of ['auto', 'none']) {
      const r = await client.chat.completions.create({ model: M, messages: ASK, tools: TOOLS, tool_choice, temperature: 0, max_tokens: 12, grammar: 'root ::= "It is sunny."' });
      assert.equal(r.choices[0].message.content, 'It is sunny.');
      assert.equal(r.choices[0].message.tool_calls, undefined);
      assert.equal(r.choices[0].finish_reason, 'stop');
    }
    const none = await post(srv.base, '/apply-template', { messages: ASK, tools: TOOLS, tool_choice: 'none' });
    assert.ok(!JSON.parse(none.body).prompt.includes('get_weather'), 'tool_choice none renders no tools');
    const auto = await post(srv.base, '/apply-template', { messages: ASK, tools: TOOLS });
    assert.ok(JSON.parse(auto.body).prompt.includes('get_weather'));
  });

  test('bad tool fields are 400 naming the field', async () => {
    for (const [extra, param] of [
      [{ tools: {} }, 'tools'],
      [{ tools: [{ type: 'code', function: { name: 'x' } }] }, 'tools'],
      [{ tools: [{ type: 'function', function: {} }] }, 'tools'],
      [{ tools: [{ type: 'function', function: { name: 'x', parameters: 'no' } }] }, 'tools'],
      [{ tools: TOOLS, tool_choice: 'always' }, 'tool_choice'],
      [{ tools: TOOLS, tool_choice: { type: 'function', function: { name: 'nope' } } }, 'tool_choice'],
      [{ tool_choice: 'required' }, 'tool_choice'],
      [{ tools: TOOLS, parallel_tool_calls: 'yes' }, 'parallel_tool_calls'],
      [{ tools: TOOLS, tool_choice: 'required', response_format: { type: 'json_object' } }, 'tool_choice'],
      [{ tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', patternProperties: {} } } }], tool_choice: 'required' }, 'tools'],
    ]) {
      const res = await post(srv.base, '/v1/chat/completions', { model: M, messages: ASK, max_tokens: 4, ...extra });
      assert.equal(res.status, 400, `${JSON.stringify(extra)}: ${res.body}`);
      assert.equal(JSON.parse(res.body).error.param, param, JSON.stringify(extra));
    }
  });
});

describe('tool calls: a template without tool support', { skip: SKIP }, () => {
  test('is a 400 that says so; tool_choice none still answers', async () => {
    const srv = await startServer(['-np', '1']); // the test model has no template: the ChatML fallback
    try {
      const res = await post(srv.base, '/v1/chat/completions', { model: M, messages: ASK, tools: TOOLS, max_tokens: 4 });
      assert.equal(res.status, 400);
      const e = JSON.parse(res.body).error;
      assert.equal(e.param, 'tools');
      assert.match(e.message, /no tool support/);
      const none = await post(srv.base, '/v1/chat/completions', { model: M, messages: ASK, tools: TOOLS, tool_choice: 'none', max_tokens: 4 });
      assert.equal(none.status, 200, none.body);
    } finally {
      assert.equal((await srv.stop()).code, 0);
    }
  });
});
