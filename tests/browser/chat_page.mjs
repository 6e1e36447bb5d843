#!/usr/bin/env node
// The demo's chat in a real browser: Debian's chromium (playwright-core) opens demo/chat.html in two
// tabs, waits until both are subscribed to the hub, sends a message from each tab through the page's
// own form (chat.php publishes it with symfony/mercure), and waits until both tabs show both
// messages. Prints ONE JSON object on stdout; tests/integration/test_browser_chat.py asserts on it.
//
//   node chat_page.mjs --url http://127.0.0.1:PORT/chat.html [--modules DIR] [--chromium PATH]
//        [--timeout-ms 20000] [--screenshot OUT.png]
import { parseArgs } from 'node:util';

import { CHROMIUM_ARGS, commonOptions, loadChromium, runAndPrint } from './browser_script.mjs';

const { values: opt } = parseArgs({
  options: {
    url: { type: 'string' },
    ...commonOptions(20000),
    screenshot: { type: 'string' },
  },
});
const timeoutMs = Number(opt['timeout-ms']);
const result = { ok: false, error: null, tabs: [], console_errors: [], page_errors: [] };

// The messages a tab shows, oldest first.
const readTab = () => [...document.querySelectorAll('#chat [data-list] > li')].reverse()
  .map((li) => ({ id: li.dataset.id, name: li.querySelector('b').textContent,
                  message: [...li.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.textContent).join('') }));

async function main() {
  const chromium = loadChromium(opt.modules);
  const browser = await chromium.launch({ executablePath: opt.chromium, headless: true, args: CHROMIUM_ARGS, timeout: 20000 });
  try {
    const context = await browser.newContext();   // one user, two tabs
    const tabs = [];
    for (let i = 0; i < 2; i++) {
      const page = await context.newPage();
      page.on('console', (m) => { if (m.type() === 'error') result.console_errors.push(`tab ${i}: ${m.text()}`); });
      page.on('pageerror', (e) => result.page_errors.push(`tab ${i}: ${e}`));
      await page.goto(opt.url, { waitUntil: 'load', timeout: 10000 });
      await page.waitForFunction(() => document.querySelector('#chat .state').textContent === 'open', null, { timeout: timeoutMs });
      tabs.push(page);
    }
    const sent = [['Ann', 'hello from tab 0 <b>not bold</b>'], ['Bob', 'and from tab 1']];
    for (const [i, [name, message]] of sent.entries()) {
      await tabs[i].fill('#chat input[name=name]', name);
      await tabs[i].fill('#chat input[name=message]', message);
      await tabs[i].click('#chat button');
      for (const tab of tabs) {
        await tab.waitForFunction((n) => document.querySelectorAll('#chat [data-list] > li').length >= n, i + 1, { timeout: timeoutMs });
      }
    }
    for (const tab of tabs) {
      result.tabs.push({ messages: await tab.evaluate(readTab),
                         input_left: await tab.inputValue('#chat input[name=message]') });
    }
    if (opt.screenshot) await tabs[1].screenshot({ path: opt.screenshot });
    result.ok = true;
  } finally {
    await browser.close();
  }
}

await runAndPrint(main, result);
