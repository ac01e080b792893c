// The chat page in a real headless browser (Debian's chromium driven by playwright-core, which downloads no
// browser): against `aerollm serve` on the bundled teacher streamed under --mem 16M, a message typed and sent
// with Enter streams its answer, Stop ends it, the conversation survives a reload (local storage), the live
// view's layer cells change state while tokens stream, server errors are shown as the server words them, model
// output with HTML or script is shown as text, and with --draft and --api-key the key is asked for once and the
// accepted/rejected draft tokens are shown. Screenshots: /tmp/aerollm-web.png, /tmp/aerollm-web-draft.png.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { DRAFTER, HAVE_PAIR, TEACHER, startServer } from './server_util.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
let chromium = null;
try {
  ({ chromium } = await import('playwright-core'));
} catch {
  /* skipped below */
}
const SKIP = !existsSync(CHROMIUM) ? `skipped: no chromium at ${CHROMIUM} (scripts/install-deps.sh installs it)`
  : !chromium ? 'skipped: playwright-core is not installed (npm ci)'
  : !HAVE_PAIR ? 'skipped: the bundled teacher/drafter pair is missing' : false;
const SHOT = '/tmp/aerollm-web.png';
const SHOT_DRAFT = '/tmp/aerollm-web-draft.png';

// Polls fn in the page until it returns a truthy value.
async function until(page, fn, arg, what, timeout = 20000) {
  try {
    return await (await page.waitForFunction(fn, arg, { timeout, polling: 20 })).jsonValue();
  } catch (e) {
    throw new Error(`timed out waiting for ${what}: ${e.message.split('\n')[0]}`);
  }
}

// Changes a setting the way a user does: open the settings, type the value, leave the field.
async function setting(page, id, value) {
  if (!(await page.evaluate(() => document.getElementById('settings').open))) await page.click('#settings summary');
  await page.fill(id, value);
  await page.dispatchEvent(id, 'change');
}

// A skipped test (not a skipped suite) so that tests/run.sh reports SKIP with the reason.
if (SKIP) test('web page in chromium', { skip: SKIP }, () => {});
else describe('web page in chromium', () => {
  let browser;
  before(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  });
  after(async () => {
    if (browser) await browser.close();
  });

  describe('teacher streamed under --mem 16M', () => {
    let srv;
    let page;
    before(async () => {
      srv = await startServer(['--mem', '16M', '-np', '1'], {}, { model: TEACHER });
      page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      page.on('pageerror', (e) => console.log('page error:', e.message));
      await page.goto(srv.base + '/');
      await until(page, () => document.getElementById('model-name').textContent, null, 'the model name');
    });
    after(async () => {
      if (page) await page.close();
      if (srv) await srv.stop();
    });

    test('a message streams, the live view moves, Stop ends it, the chat survives a reload', async () => {
      await setting(page, '#set-max-tokens', '400');
      // Sample the layer cells' states in the page while the answer streams.
      await page.evaluate(() => {
        window.__seen = new Set();
        window.__timer = setInterval(() => {
          const cells = [...document.querySelectorAll('#units .cell')].map((c) => c.dataset.state).join('');
          if (document.querySelector('.msg.streaming')) window.__seen.add(cells);
        }, 20);
      });
      await page.fill('#input', 'Tell me a story about a dog.');
      await page.press('#input', 'Enter');
      await until(page, () => document.querySelector('.msg.user')?.textContent.includes('a dog'), null, 'the user message');
      await until(page, () => !document.getElementById('stop').hidden, null, 'the stop button');
      const partial = await until(page, () => {
        const b = document.querySelector('.msg.assistant.streaming .body');
        return b && b.textContent.length > 40 && b.textContent;
      }, null, 'streamed text');
      await until(page, () => window.__seen.size >= 3, null, 'the layer cells changing state');
      const seen = await page.evaluate(() => [...window.__seen]);
      assert.ok(seen.some((s) => /[rwc]/.test(s)), `states: ${seen.join(' ')}`);
      await page.screenshot({ path: SHOT, fullPage: true });
      console.log(`screenshot: ${SHOT}`);
      await page.click('#stop');
      await until(page, () => !document.querySelector('.msg.streaming') && document.getElementById('stop').hidden,
        null, 'the generation to stop');
      const meta = await page.textContent('.msg.assistant .meta');
      assert.match(meta, /stopped/);
      const text = await page.textContent('.msg.assistant .body');
      assert.ok(text.startsWith(partial.slice(0, 20)));
      const live = await page.textContent('#live-stats');
      assert.match(live, /GB\/s/);
      assert.match(live, /vs floor/);
      await page.evaluate(() => clearInterval(window.__timer));

      await page.reload();
      await until(page, () => document.querySelectorAll('.msg').length === 2, null, 'the saved conversation');
      assert.equal((await page.textContent('.msg.user .body')).trim(), 'Tell me a story about a dog.');
      assert.equal((await page.$$('#conv-list li')).length >= 1, true);
      await page.click('#new-chat');
      assert.equal((await page.$$('.msg')).length, 0);
    });

    test('model output with HTML or script is shown as text, never run', async () => {
      const evil = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">\n' +
        '**bold** and `<b>code</b>`\n```html\n<iframe src="javascript:alert(1)"></iframe>\n```\n' +
        '[x](javascript:alert(3)) [ok](https://example.com/"onmouseover="alert(4))';
      const html = await page.evaluate((t) => {
        const el = window.aeroApp.showMessage('assistant', t);
        return el.querySelector('.body').innerHTML;
      }, evil);
      const body = page.locator('.msg.assistant .body').last();
      assert.equal(await body.locator('script, img, iframe').count(), 0, html);
      assert.equal(await body.locator('strong').count(), 1);
      assert.match(await body.textContent(), /<script>window.__pwned = 1<\/script><img src=x/);
      assert.match(await body.locator('pre code').textContent(), /<iframe src="javascript:alert\(1\)"><\/iframe>/);
      for (const a of await body.locator('a').all()) {
        assert.match(await a.getAttribute('href'), /^https:\/\//);
        assert.equal(await a.getAttribute('onmouseover'), null);
      }
      assert.equal(await page.evaluate(() => window.__pwned), undefined);
    });

    test('a server error is shown as the server words it', async () => {
      await setting(page, '#set-max-tokens', '-3');
      await page.fill('#input', 'hello');
      await page.press('#input', 'Enter');
      const err = await until(page, () => !document.getElementById('error').hidden &&
        document.getElementById('error').textContent, null, 'the error');
      assert.match(err, /^400: .*max_tokens/);
      await setting(page, '#set-max-tokens', '64');
    });
  });

  test('--draft with --api-key: the key is asked for once, drafted tokens shown accepted and rejected', async () => {
    const srv = await startServer(['--mem', '64M', '-np', '1', '--draft', DRAFTER, '--api-key', 'sesame'], {},
      { model: TEACHER });
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    try {
      await page.goto(srv.base + '/');
      await page.waitForSelector('#key-dialog[open]');
      await page.fill('#key-input', 'sesame');
      await page.press('#key-input', 'Enter');
      await until(page, () => document.getElementById('model-name').textContent, null, 'the model name');
      await setting(page, '#set-temperature', '0');
      await setting(page, '#set-max-tokens', '80');
      await page.fill('#input', 'Once upon a time');
      await page.keyboard.down('Shift');
      await page.press('#input', 'Enter'); // Shift+Enter: a new line, not a send
      await page.keyboard.up('Shift');
      assert.equal(await page.inputValue('#input'), 'Once upon a time\n');
      await page.press('#input', 'Enter');
      await until(page, () => !document.querySelector('.msg.streaming') &&
        /accepted/.test(document.querySelector('.msg.assistant .meta')?.textContent || ''), null, 'the draft figures', 60000);
      const meta = await page.textContent('.msg.assistant .meta');
      const m = meta.match(/draft: (\d+) accepted \/ (\d+) rejected of (\d+)/);
      assert.ok(m, meta);
      assert.equal(Number(m[1]) + Number(m[2]), Number(m[3]));
      assert.ok(Number(m[1]) > 0, meta);
      assert.match(meta, /\d\.\d\d tokens per pass/);
      assert.ok(await page.locator('.msg.assistant .meta .acc').count() === 1);
      assert.ok(await page.locator('.msg.assistant .meta .rej').count() === 1);
      const live = await until(page, () => /acceptance/.test(document.getElementById('live-stats').textContent) &&
        document.getElementById('live-stats').textContent, null, 'the acceptance rate in the live view');
      assert.match(live, /tokens per pass/);
      assert.equal(await page.evaluate(() => localStorage.getItem('aero.key')), '"sesame"');
      await page.screenshot({ path: SHOT_DRAFT, fullPage: true });
      console.log(`screenshot: ${SHOT_DRAFT}`);
    } finally {
      await page.close();
      await srv.stop();
    }
  });
});
