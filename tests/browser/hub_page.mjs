#!/usr/bin/env node
// fastsse's Mercure hub in a real browser, browser side: Debian's chromium (driven by
// playwright-core) opens tests/browser/hub_page.html from the same nginx as the hub, once per
// subscriber, each in a browser context of its own holding its own mercureAuthorization cookie;
// once every page's EventSource is open, the PHP publisher runs (its argv given), one run after the
// other; then it waits until each page has as many events as expected, and prints ONE JSON object on
// stdout. tests/integration/test_hub_browser.py starts the servers and asserts on the JSON.
//
//   node hub_page.mjs --spec SPEC.json [--modules DIR] [--chromium /usr/bin/chromium] [--timeout-ms 20000]
//
// SPEC: {"origin": "http://127.0.0.1:PORT", "page": "/hub-page.html",
//        "subscribers": [{"name": "a", "cookie": "TOKEN", "query": "topic=..."}],
//        "publishes": [["php", "mercure_publish.php", ...]], "expect": {"a": 2}}
// The publisher's key comes in this process's environment (MERCURE_PUBLISHER_JWT_KEY).
// Exit 0 when the JSON was printed ("ok" and "waiting_for" say whether all came); 1 on an error.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { parseArgs } from 'node:util';

import { CHROMIUM_ARGS, commonOptions, loadChromium, runAndPrint } from './browser_script.mjs';

const { values: opt } = parseArgs({
  options: {
    spec: { type: 'string' },
    ...commonOptions(20000),
  },
});
if (!opt.spec) {
  console.error('hub_page.mjs: --spec is required');
  process.exit(2);
}
const spec = JSON.parse(fs.readFileSync(opt.spec, 'utf8'));
const timeoutMs = Number(opt['timeout-ms']);
const t0 = Date.now();
const log = (...args) => console.error(`[hub_page ${((Date.now() - t0) / 1000).toFixed(2)} s]`, ...args);

const result = { ok: false, waiting_for: [], error: null, published: [], pages: {}, console_errors: [], page_errors: [] };

async function main() {
  const chromium = loadChromium(opt.modules);
  const browser = await chromium.launch({ executablePath: opt.chromium, headless: true, args: CHROMIUM_ARGS, timeout: 20000 });
  try {
    const pages = {};
    for (const sub of spec.subscribers) {
      // A context each: its own cookie jar, as two users' browsers.
      const context = await browser.newContext();
      await context.addCookies([{ name: 'mercureAuthorization', value: sub.cookie, url: spec.origin,
                                  httpOnly: true, sameSite: 'Strict' }]);
      const page = await context.newPage();
      const rec = { requests: [], events: [] };
      result.pages[sub.name] = rec;
      page.on('console', (m) => { if (m.type() === 'error') result.console_errors.push(`${sub.name}: ${m.text()}`); });
      page.on('pageerror', (e) => result.page_errors.push(`${sub.name}: ${e}`));
      page.on('request', (req) => {
        if (req.resourceType() !== 'eventsource') return;
        const r = { url: req.url(), cookie: null, status: null };
        rec.requests.push(r);
        req.allHeaders().then((h) => { r.cookie = h.cookie ?? null; }).catch(() => {});
      });
      page.on('response', (resp) => {
        const r = rec.requests.find((x) => x.url === resp.url() && x.status === null);
        if (r) r.status = resp.status();
      });
      await page.goto(`${spec.origin}${spec.page}?${sub.query}`, { waitUntil: 'load', timeout: 10000 });
      pages[sub.name] = page;
    }
    const deadline = t0 + timeoutMs;
    for (const [name, page] of Object.entries(pages)) {
      await page.waitForFunction(() => window.hubOpen, null, { timeout: Math.max(1, deadline - Date.now()) })
        .catch(() => { throw new Error(`${name}: the EventSource did not open`); });
    }
    log('every subscriber is open: publishing');
    for (const argv of spec.publishes) {
      result.published.push(execFileSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 20000 }).trim());
    }
    for (;;) {
      result.waiting_for = [];
      for (const [name, page] of Object.entries(pages)) {
        result.pages[name].events = await page.evaluate(() => window.hubEvents);
        const want = spec.expect[name] ?? 0;
        if (result.pages[name].events.length < want) result.waiting_for.push(`${name}: ${want} events`);
      }
      if (result.waiting_for.length === 0 || Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    result.ok = result.waiting_for.length === 0;
  } finally {
    await browser.close();
  }
}

await runAndPrint(main, result);
