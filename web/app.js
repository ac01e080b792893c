// The chat page served by `aerollm serve` at "/": a conversation streamed over the server's own
// /v1/chat/completions, kept in the browser's local storage, and the live view of the engine fed by
// /v1/engine/events. Plain JS, no framework; every request goes to the server that served the page.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const md = window.aeroMarkdown;

  // ---- storage ----
  const store = {
    get(k, d) {
      try {
        const v = localStorage.getItem(k);
        return v == null ? d : JSON.parse(v);
      } catch {
        return d;
      }
    },
    set(k, v) {
      try {
        localStorage.setItem(k, JSON.stringify(v));
      } catch {
        /* full or disabled storage: the page still works, it only forgets */
      }
    },
  };
  const DEFAULTS = { temperature: 0.7, top_p: 0.95, max_tokens: 256, system: '', live: true };
  const settings = { ...DEFAULTS, ...store.get('aero.settings', {}) };
  let convs = store.get('aero.convs', []);
  let currentId = store.get('aero.current', null);
  let apiKey = store.get('aero.key', '');
  let running = null; // the generation in progress: {ctrl, msg, el, id}
  let lastLive = null;

  const save = () => {
    store.set('aero.convs', convs);
    store.set('aero.current', currentId);
  };
  const newConv = () => {
    const c = { id: Date.now().toString(36) + Math.random().toString(36).slice(2, 6), title: 'New chat', messages: [] };
    convs.unshift(c);
    currentId = c.id;
    save();
    return c;
  };
  const current = () => convs.find((c) => c.id === currentId) || newConv();

  // ---- HTTP: the API key is asked for once (on the first 401) and kept ----
  let keyPrompt = null;
  function askKey() {
    if (keyPrompt) return keyPrompt;
    keyPrompt = new Promise((resolve) => {
      const dlg = $('key-dialog');
      $('key-input').value = '';
      const done = () => {
        dlg.removeEventListener('close', done);
        keyPrompt = null;
        resolve($('key-input').value.trim() || null);
      };
      dlg.addEventListener('close', done);
      dlg.showModal();
    });
    return keyPrompt;
  }
  async function api(url, opts = {}) {
    for (let tries = 0; ; tries++) {
      const headers = { ...(opts.headers || {}) };
      if (apiKey) headers.Authorization = 'Bearer ' + apiKey;
      const r = await fetch(url, { ...opts, headers });
      if (r.status !== 401 || tries >= 3) return r;
      const k = await askKey();
      if (!k) return r;
      apiKey = k;
      store.set('aero.key', k);
    }
  }
  // The server's own words for a failed request.
  async function errorText(r) {
    const t = await r.text().catch(() => '');
    try {
      const j = JSON.parse(t);
      if (j.error && j.error.message) return `${r.status}: ${j.error.message}`;
    } catch {
      /* not JSON: show the body as it is */
    }
    return `${r.status} ${r.statusText}${t ? ': ' + t : ''}`;
  }
  // Server-sent events of a fetch response: {event, data} per event.
  async function* sse(resp) {
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true }).replace(/\r\n/g, '\n');
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          else if (line.startsWith('event:')) event = line.slice(6).trim();
        }
        if (data.length) yield { event, data: data.join('\n') };
      }
    }
  }

  // ---- chat view ----
  function showError(text) {
    const e = $('error');
    e.textContent = text;
    e.hidden = !text;
  }
  function metaHtml(msg, live) {
    const parts = [];
    const u = msg.usage;
    if (u) parts.push(`${u.completion_tokens} tokens`);
    const drafted = u && u.draft_tokens != null ? u.draft_tokens : live && live.drafted;
    const accepted = u && u.draft_accepted != null ? u.draft_accepted : live && live.accepted;
    if (drafted > 0) {
      const pct = ((100 * accepted) / drafted).toFixed(0);
      parts.push(`draft: <span class="acc">${accepted} accepted</span> / ` +
        `<span class="rej">${drafted - accepted} rejected</span> of ${drafted} (${pct}%)`);
      // Each verify pass yields its accepted drafts plus one token of the model's own, so the passes are the
      // generated tokens less the accepted ones.
      const n = u ? u.completion_tokens : live && live.n_gen;
      if (n > accepted) parts.push(`${(n / (n - accepted)).toFixed(2)} tokens per pass`);
    }
    if (msg.finish) parts.push(md.escapeHtml(msg.finish));
    return parts.join(' · ');
  }
  function messageEl(msg) {
    const el = document.createElement('div');
    el.className = 'msg ' + msg.role;
    el.innerHTML = '<div class="role"></div><div class="body"></div><div class="meta"></div>';
    el.querySelector('.role').textContent = msg.role;
    fillMessage(el, msg);
    $('messages').appendChild(el);
    el.scrollIntoView({ block: 'end' });
    return el;
  }
  function fillMessage(el, msg, live) {
    // User text is shown as typed; model text through the escaping Markdown renderer.
    if (msg.role === 'user') el.querySelector('.body').textContent = msg.content;
    else el.querySelector('.body').innerHTML = md.render(msg.content);
    el.querySelector('.meta').innerHTML = msg.role === 'assistant' ? metaHtml(msg, live) : '';
  }
  function renderConvList() {
    const ul = $('conv-list');
    ul.textContent = '';
    for (const c of convs) {
      const li = document.createElement('li');
      if (c.id === currentId) li.className = 'current';
      const t = document.createElement('span');
      t.textContent = c.title;
      const del = document.createElement('button');
      del.className = 'del';
      del.type = 'button';
      del.title = 'Delete';
      del.textContent = '×';
      del.onclick = (ev) => {
        ev.stopPropagation();
        convs = convs.filter((x) => x !== c);
        if (currentId === c.id) currentId = convs[0] ? convs[0].id : null;
        save();
        renderAll();
      };
      li.append(t, del);
      li.onclick = () => {
        if (running) running.ctrl.abort();
        currentId = c.id;
        save();
        renderAll();
      };
      ul.appendChild(li);
    }
  }
  function renderAll() {
    const c = current();
    $('messages').textContent = '';
    for (const m of c.messages) messageEl(m);
    renderConvList();
    showError('');
  }
  function setRunning(on) {
    $('send').hidden = on;
    $('stop').hidden = !on;
  }

  async function send() {
    const text = $('input').value;
    if (!text.trim() || running) return;
    showError('');
    const conv = current();
    conv.messages.push({ role: 'user', content: text });
    if (conv.title === 'New chat') conv.title = text.trim().slice(0, 40);
    $('input').value = '';
    messageEl(conv.messages[conv.messages.length - 1]);
    const msg = { role: 'assistant', content: '' };
    const history = conv.messages.map(({ role, content }) => ({ role, content }));
    if (settings.system) history.unshift({ role: 'system', content: settings.system });
    conv.messages.push(msg);
    save();
    renderConvList();
    const el = messageEl(msg);
    el.classList.add('streaming');
    const ctrl = new AbortController();
    running = { ctrl, msg, el, id: null };
    setRunning(true);
    try {
      const body = {
        messages: history, stream: true, stream_options: { include_usage: true },
        temperature: Number(settings.temperature), top_p: Number(settings.top_p),
        max_tokens: Number(settings.max_tokens),
      };
      const r = await api('/v1/chat/completions', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
        signal: ctrl.signal,
      });
      if (!r.ok) throw new Error(await errorText(r));
      for await (const ev of sse(r)) {
        if (ev.data === '[DONE]') break;
        const j = JSON.parse(ev.data);
        if (j.error) throw new Error(j.error.message || JSON.stringify(j.error));
        if (j.id) running.id = j.id;
        const c = j.choices && j.choices[0];
        if (c && c.delta && typeof c.delta.content === 'string') msg.content += c.delta.content;
        if (c && c.finish_reason) msg.finish = c.finish_reason;
        if (j.usage) msg.usage = j.usage;
        fillMessage(el, msg, liveEntry(running.id));
        el.scrollIntoView({ block: 'end' });
      }
    } catch (e) {
      if (e.name === 'AbortError') msg.finish = 'stopped';
      else {
        msg.finish = 'error';
        showError(e.message || String(e));
      }
    }
    el.classList.remove('streaming');
    fillMessage(el, msg, liveEntry(running && running.id));
    running = null;
    setRunning(false);
    save();
  }
  function liveEntry(id) {
    if (!id || !lastLive) return null;
    return lastLive.requests.find((q) => q.id === id) || null;
  }

  // ---- live view ----
  const STATE_NAME = { d: 'on disk', r: 'being read', w: 'in the window', c: 'computing', p: 'resident',
    P: 'resident, computing' };
  let liveCtrl = null;
  async function startLive() {
    if (liveCtrl) return;
    const ctrl = new AbortController();
    liveCtrl = ctrl;
    $('live').hidden = false;
    while (!ctrl.signal.aborted) {
      try {
        const r = await api('/v1/engine/events', { signal: ctrl.signal });
        if (!r.ok) $('live-status').textContent = await errorText(r);
        else {
          $('live-status').textContent = 'connected';
          for await (const ev of sse(r)) {
            if (ev.event === 'end') break;
            renderLive(JSON.parse(ev.data));
          }
        }
      } catch (e) {
        if (ctrl.signal.aborted) return;
      }
      if (ctrl.signal.aborted) return;
      $('live-status').textContent = 'disconnected; retrying…';
      await new Promise((res) => setTimeout(res, 2000));
    }
  }
  function stopLive() {
    if (liveCtrl) liveCtrl.abort();
    liveCtrl = null;
    lastLive = null;
    $('live').hidden = true;
  }
  function statRow(tb, name, value) {
    const tr = document.createElement('tr');
    const a = document.createElement('td');
    const b = document.createElement('td');
    a.textContent = name;
    b.textContent = value;
    tr.append(a, b);
    tb.appendChild(tr);
  }
  const f = (x, d = 1) => (typeof x === 'number' && isFinite(x) ? x.toFixed(d) : '–');
  function renderLive(s) {
    lastLive = s;
    const units = $('units');
    if (units.children.length !== s.units.length) {
      units.textContent = '';
      for (let i = 0; i < s.units.length; i++) {
        const c = document.createElement('span');
        c.dataset.unit = i;
        units.appendChild(c);
      }
    }
    for (let i = 0; i < s.units.length; i++) {
      const c = units.children[i];
      const st = s.units[i];
      if (c.dataset.state === st) continue;
      c.dataset.state = st;
      c.className = 'cell s-' + st + (i === s.head_unit ? ' head' : '');
      c.title = `${i === s.head_unit ? 'output head' : 'layer ' + i}: ${STATE_NAME[st] || st}`;
    }
    const slots = $('window-slots');
    slots.textContent = '';
    for (let i = 0; i < s.slots; i++) {
      const w = s.window[i];
      const c = document.createElement('span');
      c.className = 'cell ' + (w ? 's-' + w.state : 's-d');
      c.textContent = w ? String(w.unit) : '';
      c.title = w ? `slot ${i}: unit ${w.unit} ${STATE_NAME[w.state]}` : `slot ${i}: free`;
      slots.appendChild(c);
    }
    const tb = $('live-stats').tBodies[0];
    tb.textContent = '';
    statRow(tb, 'units', `${s.n_units} (${s.pinned.length} pinned, ${s.slots} window slots)`);
    statRow(tb, 'disk', `${f(s.disk.gbps, 2)} GB/s (reads at ${f(s.disk.read_gbps, 2)} GB/s)`);
    statRow(tb, 'pass', `${f(s.disk.pass_ms, 2)} ms vs floor ${s.disk.floor_gbps > 0 ? f(s.disk.floor_ms, 2) + ' ms' : '–'}`);
    statRow(tb, 'passes', `${f(s.disk.passes_per_s, 1)}/s, ${s.disk.passes} total`);
    statRow(tb, 'decode', `${f(s.sched.tokens_per_s, 1)} tok/s`);
    statRow(tb, 'requests', `${s.sched.active} active, ${s.sched.queued} queued, ${s.sched.n_seq} sequences`);
    if (s.spec.on) {
      statRow(tb, 'drafter', s.spec.drafter);
      statRow(tb, 'draft tokens', `${s.spec.accepted} accepted, ${s.spec.rejected} rejected of ${s.spec.drafted}`);
      statRow(tb, 'acceptance', `${f(100 * s.spec.acceptance, 1)} %`);
      statRow(tb, 'tokens per pass', `${f(s.spec.tokens_per_pass, 2)} now, ${f(s.spec.tokens_per_pass_total, 2)} overall`);
    }
    const rq = $('live-requests');
    rq.textContent = '';
    if (!s.requests.length) rq.innerHTML = '<div class="muted">none</div>';
    for (const q of s.requests) {
      const d = document.createElement('div');
      d.className = 'req';
      const t = document.createElement('div');
      let line = `${q.id.slice(-8)} ${q.state}: ${q.n_prompt} prompt + ${q.n_gen} generated, ${f(q.tokens_per_s, 1)} tok/s`;
      if (q.drafted > 0) line += `, draft ${q.accepted}/${q.drafted}`;
      t.textContent = line;
      const bar = document.createElement('div');
      bar.className = 'bar';
      bar.title = `KV ${q.kv} / ${q.n_ctx}`;
      const fill = document.createElement('div');
      fill.style.width = `${Math.min(100, (100 * q.kv) / Math.max(1, q.n_ctx))}%`;
      bar.appendChild(fill);
      d.append(t, bar);
      rq.appendChild(d);
    }
    if (running && running.id) {
      const q = liveEntry(running.id);
      if (q) fillMessage(running.el, running.msg, q);
    }
  }

  // ---- wiring ----
  function bindSetting(id, key) {
    const el = $(id);
    if (el.type === 'checkbox') el.checked = !!settings[key];
    else el.value = settings[key];
    el.addEventListener('change', () => {
      settings[key] = el.type === 'checkbox' ? el.checked : el.value;
      store.set('aero.settings', settings);
      if (key === 'live') (settings.live ? startLive : stopLive)();
    });
  }
  bindSetting('set-temperature', 'temperature');
  bindSetting('set-top-p', 'top_p');
  bindSetting('set-max-tokens', 'max_tokens');
  bindSetting('set-system', 'system');
  bindSetting('set-live', 'live');
  $('forget-key').onclick = () => {
    apiKey = '';
    store.set('aero.key', '');
  };
  $('composer').addEventListener('submit', (ev) => {
    ev.preventDefault();
    send();
  });
  $('input').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      send();
    }
  });
  $('stop').onclick = () => {
    if (running) running.ctrl.abort();
  };
  $('new-chat').onclick = () => {
    if (running) running.ctrl.abort();
    const c = current();
    if (c.messages.length) newConv();
    renderAll();
    $('input').focus();
  };

  // For tests and embedding: the renderer path a model message takes.
  window.aeroApp = {
    showMessage(role, content) {
      return messageEl({ role, content });
    },
  };

  renderAll();
  api('/v1/models')
    .then(async (r) => {
      if (!r.ok) return showError(await errorText(r));
      const j = await r.json();
      if (j.data && j.data[0]) $('model-name').textContent = j.data[0].id;
    })
    .catch((e) => showError(String(e)));
  if (settings.live) startLive();
  $('input').focus();
})();
