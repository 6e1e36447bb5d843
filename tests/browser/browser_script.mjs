// What the browser-side scripts (demo_page, hub_page, chat_page) share: their common flags, Debian's
// chromium through the playwright-core that `npm ci` installed, and the one JSON line each prints
// for its Python test.
import { createRequire } from 'node:module';
import path from 'node:path';

// --modules: where `npm ci` installed package.json's playwright-core (the build folder's browser/);
// --chromium: Debian's; --timeout-ms: how long the script waits for what it expects.
export function commonOptions(timeoutMs) {
  return {
    modules: { type: 'string', default: process.env.FASTSSE_BROWSER_DIR || process.cwd() },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    'timeout-ms': { type: 'string', default: String(timeoutMs) },
  };
}

// Chromium flags for a headless run as root on a machine without a display or internet.
// playwright-core adds --headless, --no-sandbox (chromiumSandbox: false) and the profile itself.
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

// playwright-core's chromium launcher, from the folder `npm ci` installed it in (never a browser
// it downloads: executablePath is always given).
export function loadChromium(modules) {
  const require = createRequire(path.join(path.resolve(modules), 'package.json'));
  try {
    return require('playwright-core').chromium;
  } catch (e) {
    throw new Error(`playwright-core not found under ${modules}/node_modules (run \`npm ci\` there): ${e.message}`);
  }
}

// Runs main(), then prints `result` as ONE JSON line on stdout, its error set if main() threw; exit
// status 0 when main() returned, 1 when it threw.
export async function runAndPrint(main, result) {
  let status = 0;
  try {
    await main();
  } catch (e) {
    result.error = e?.stack ?? String(e);
    status = 1;
  }
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exitCode = status;
}
