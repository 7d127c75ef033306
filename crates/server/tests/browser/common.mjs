// Helpers shared by the browser scripts (portal.mjs, proxy.mjs, duo.mjs): failing with a message,
// codes from `portcullis otp code`, waiting for a page or a text, starting Chromium.

import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';

const started = Date.now();

/** Fails the script with `message` (exit code 1). */
export function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exitCode = 1;
  throw new Error(message);
}

/** Fails unless `condition` holds. */
export function expect(condition, message) {
  if (!condition) fail(message);
}

/** A progress line with the seconds since start. */
export function log(message) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`);
}

/** The value of environment variable `name`; fails when it is not set. */
export function need(name) {
  const value = process.env[name];
  if (!value) fail(`environment variable ${name} is not set`);
  return value;
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);

/** The TOTP code of `secret` at `unixSeconds`, from `portcullis otp code`. */
export function codeAt(bin, config, secret, unixSeconds) {
  const out = execFileSync(bin, ['otp', 'code', '--secret', secret, '--time', String(unixSeconds)], {
    env: { ...process.env, PORTCULLIS_CONFIG: config },
    encoding: 'utf8',
  });
  const code = out.trim();
  expect(/^\d{6,10}$/.test(code), `otp code printed ${JSON.stringify(out)}`);
  return code;
}

/** Waits (up to `timeout` ms) for `text` on the page; fails showing what the page says instead. */
export async function expectText(page, text, what, timeout = 5000) {
  try {
    await page.getByText(text).first().waitFor({ state: 'visible', timeout });
  } catch {
    const body = await page.locator('body').innerText().catch(() => '(no body)');
    fail(`${what}: expected the text ${JSON.stringify(text)} on ${page.url()}, page shows:\n${body}`);
  }
}

/** Waits (up to `timeout` ms) until the page's path is `wanted`; fails showing where it is instead. */
export async function expectPath(page, wanted, what, timeout = 5000) {
  try {
    await page.waitForURL((u) => u.pathname === wanted, { timeout });
  } catch {
    const body = await page.locator('body').innerText().catch(() => '(no body)');
    fail(`${what}: expected to be on ${wanted}, but on ${page.url()}, page shows:\n${body}`);
  }
}

/** Headless Chromium with a fresh temporary profile and no background networking. */
export async function launch(executablePath) {
  return chromium.launch({
    executablePath,
    timeout: 30000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Stops the process after `timeoutMs` whatever it is doing; `browser()` is closed first. */
export function watchdog(timeoutMs, browser) {
  const timer = setTimeout(async () => {
    console.error(`FAIL: global timeout of ${timeoutMs} ms reached`);
    const b = browser();
    const closing = b ? b.close().catch(() => {}) : Promise.resolve();
    await Promise.race([closing, new Promise((r) => setTimeout(r, 5000))]);
    process.exit(2);
  }, timeoutMs);
  timer.unref();
  return timer;
}

/** Runs `main`, turning any exception into a failure; stops `timer` and closes `browser()`. */
export async function run(main, timer, browser) {
  try {
    await main();
  } catch (e) {
    if (!process.exitCode) console.error(`FAIL: ${e && e.stack ? e.stack : e}`);
    process.exitCode = 1;
  } finally {
    clearTimeout(timer);
    const b = browser();
    if (b) await b.close().catch(() => {});
  }
}
