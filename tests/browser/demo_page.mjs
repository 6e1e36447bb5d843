#!/usr/bin/env node
// fastsse's real-browser test, browser side: loads the demo page (demo/index.html) in Debian's
// chromium, driven by playwright-core (never a downloaded browser), waits until every box has shown
// enough events, saves a screenshot, and prints ONE JSON object on stdout (progress goes to stderr).
// tests/integration/test_browser.py starts the servers, runs this, and asserts on the JSON.
//
//   node demo_page.mjs --url http://127.0.0.1:PORT/ --screenshot OUT.png --profile EMPTY_DIR
//        [--modules DIR] [--chromium /usr/bin/chromium] [--bounded-ids 12] [--count-lines 10]
//        [--timeout-ms 40000]
//
// --modules: the folder where `npm ci` installed package.json's playwright-core (in the build
// folder, never the source tree); default $FASTSSE_BROWSER_DIR, else the current directory.
//
// Exit status: 0 when the JSON was printed (whether or not the page got everything: "ok" and
// "waiting_for" say), 1 when the browser could not be driven at all ("error" says why).
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { CHROMIUM_ARGS, commonOptions, loadChromium, runAndPrint } from './browser_script.mjs';

const { values: opt } = parseArgs({
  options: {
    url: { type: 'string' },
    screenshot: { type: 'string' },
    profile: { type: 'string' },
    ...commonOptions(40000),
    'bounded-ids': { type: 'string', default: '12' },
    'count-lines': { type: 'string', default: '10' },
  },
});
for (const name of ['url', 'screenshot', 'profile']) {
  if (!opt[name]) {
    console.error(`demo_page.mjs: --${name} is required`);
    process.exit(2);
  }
}
const boundedIds = Number(opt['bounded-ids']);
const countLines = Number(opt['count-lines']);
const timeoutMs = Number(opt['timeout-ms']);
const t0 = Date.now();
const since = () => Date.now() - t0;
const log = (...args) => console.error(`[demo_page ${(since() / 1000).toFixed(2)} s]`, ...args);

const result = {
  ok: false,
  waiting_for: [],
  error: null,
  url: opt.url,
  browser: null,
  elapsed_ms: null,
  boxes: {},
  clock_ids_seen: [],     // the clock box shows only its last id: the distinct values it showed
  requests: [],           // every EventSource request, as chromium sent it
  console_errors: [],
  page_errors: [],
  screenshot: null,
};

// What the page shows, read from its DOM (lists are newest first: returned oldest first).
function readPage() {
  const text = (li) => [...li.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE)
    .map((n) => n.textContent).join('');
  const boxes = {};
  for (const box of document.querySelectorAll('section[id]')) {
    const out = {
      state: box.querySelector('.state')?.textContent ?? null,
      items: [...box.querySelectorAll('[data-list] > li')].reverse().map((li) => ({
        id: li.dataset.id ?? null,
        text: text(li),
        connection: li.dataset.connection ? Number(li.dataset.connection) : null,
        separator: li.classList.contains('sep'),
      })),
    };
    const big = box.querySelector('[data-out]');
    if (big) out.out = big.textContent;
    const lastId = box.querySelector('[data-id]');
    if (lastId && !lastId.matches('li')) out.last_id = lastId.textContent;
    const connections = box.querySelector('[data-connections]');
    if (connections) out.connections = Number(connections.textContent);
    boxes[box.id] = out;
  }
  return boxes;
}

// What is still missing; empty once every box has shown enough for the test to judge it.
function missing(boxes, clockIds) {
  const want = [];
  const items = (id) => boxes[id]?.items ?? [];
  if (clockIds.length < 3) want.push(`clock: 3 ticks (saw ids ${JSON.stringify(clockIds)})`);
  if (items('ping').length < 3) want.push(`ping: 3 events (saw ${items('ping').length})`);
  const count = items('count');
  if (!count.some((i) => i.text === `line ${countLines} of ${countLines}`) ||
      !count.some((i) => i.text.startsWith('exit:'))) {
    want.push(`count: line ${countLines} of ${countLines} and the exit event (saw ${count.length} lines)`);
  }
  if (items('vmstat').length < 3) want.push(`vmstat: 3 lines (saw ${items('vmstat').length})`);
  if (!items('access-log').some((i) => i.text.includes('"GET / '))) {
    want.push('access-log: the line of this page\'s own GET /');
  }
  const ticks = items('bounded').filter((i) => !i.separator);
  const connections = Math.ceil(boundedIds / 5);
  if (ticks.length < boundedIds || (boxes.bounded?.connections ?? 0) < connections) {
    want.push(`bounded: ${boundedIds} ticks over ${connections} connections ` +
              `(saw ${ticks.length} over ${boxes.bounded?.connections ?? 0})`);
  }
  return want;
}

async function main() {
  const chromium = loadChromium(opt.modules);
  if (!fs.existsSync(opt.chromium)) throw new Error(`no chromium at ${opt.chromium} (apt-get install chromium)`);

  // A fresh profile of our own (launchPersistentContext: playwright refuses --user-data-dir in args).
  const context = await chromium.launchPersistentContext(opt.profile, {
    executablePath: opt.chromium,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1100, height: 900 },
    locale: 'en-GB',
    timezoneId: 'UTC',
    timeout: 20000,
  });
  try {
    result.browser = context.browser()?.version() ?? null;
    const page = context.pages()[0] ?? await context.newPage();
    if (!result.browser) result.browser = await page.evaluate(() => navigator.userAgent);
    log('browser', result.browser);

    const byRequest = new Map();
    const pending = [];
    page.on('request', (req) => {
      if (req.resourceType() !== 'eventsource') return;
      const rec = { url: req.url(), path: new URL(req.url()).pathname, sent_ms: since(), last_event_id: null,
                    accept: null, status: null, finished_ms: null, failure: null };
      result.requests.push(rec);
      byRequest.set(req, rec);
      // The headers chromium's network stack really sent (allHeaders: raw headers when known).
      pending.push(req.allHeaders().then((h) => {
        rec.last_event_id = h['last-event-id'] ?? null;
        rec.accept = h['accept'] ?? null;
      }).catch((e) => { rec.headers_error = String(e); }));
    });
    page.on('response', (resp) => {
      const rec = byRequest.get(resp.request());
      if (rec) {
        rec.status = resp.status();
        rec.content_type = resp.headers()['content-type'] ?? null;
      }
    });
    page.on('requestfinished', (req) => {
      const rec = byRequest.get(req);
      if (rec) rec.finished_ms = since();
    });
    page.on('requestfailed', (req) => {
      const rec = byRequest.get(req);
      if (rec) rec.failure = req.failure()?.errorText ?? 'failed';
    });
    page.on('console', (msg) => {
      if (msg.type() === 'error') result.console_errors.push({ text: msg.text(), location: msg.location() });
    });
    page.on('pageerror', (err) => result.page_errors.push(String(err)));

    log('loading', opt.url);
    const response = await page.goto(opt.url, { waitUntil: 'load', timeout: 10000 });
    result.page_status = response?.status() ?? null;

    // Wait on the page's state, polled; the deadline only bounds a failure.
    const deadline = t0 + timeoutMs;
    let boxes = {};
    let last = '';
    for (;;) {
      boxes = await page.evaluate(readPage);
      const id = boxes.clock?.last_id;
      if (id && /^\d+$/.test(id) && !result.clock_ids_seen.includes(id)) result.clock_ids_seen.push(id);
      result.waiting_for = missing(boxes, result.clock_ids_seen);
      if (result.waiting_for.length === 0) break;
      const now = result.waiting_for.join('; ');
      if (now !== last) log('waiting for', now);
      last = now;
      if (Date.now() >= deadline) {
        log('deadline passed');
        break;
      }
      await page.waitForTimeout(100);
    }
    result.ok = result.waiting_for.length === 0;
    result.boxes = boxes;
    result.elapsed_ms = since();

    result.screenshot = path.resolve(opt.screenshot);
    await page.screenshot({ path: result.screenshot, fullPage: true });
    log('screenshot', result.screenshot);
    await Promise.all(pending);
  } finally {
    await context.close();
  }
}

await runAndPrint(main, result);
