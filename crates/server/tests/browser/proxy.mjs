// Reverse-proxy mode in a real headless Chromium: the app's page sends a stranger to the
// portal under the app's own host, the login returns to the page, the app names the user
// and the page's own WebSocket reaches the app through the gateway; signing out locks the
// app again. Run by crates/server/tests/e2e/browser.rs, which starts the app (aiohttp)
// and `portcullis serve` with `[proxy] upstream`, and passes:
//
//   APP_URL            e.g. http://127.0.0.1:41234 (the gateway, in front of the app)
//   PORTAL_PATH        the portal's path on that host, e.g. /.portcullis
//   PORTCULLIS_BIN     the binary, for `otp code`
//   PORTCULLIS_CONFIG  its configuration
//   SCREENSHOTS        directory for the PNG files
//   ALICE_SECRET       base32 secret of alice's TOTP token
//   ALICE_PASSWORD     alice's password
//   CHROMIUM           optional, default /usr/bin/chromium
//   TIMEOUT_MS         optional global limit, default 90000
//
// Exits 0 when every expectation held, 1 with a message naming the first one that did not.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { codeAt, expect, expectPath, expectText, launch, log, need, nowSeconds, run, watchdog } from './common.mjs';

let browser;
const app = need('APP_URL').replace(/\/$/, '');
const base = need('PORTAL_PATH');
const bin = need('PORTCULLIS_BIN');
const config = need('PORTCULLIS_CONFIG');
const shots = need('SCREENSHOTS');
const aliceSecret = need('ALICE_SECRET');
const alicePassword = need('ALICE_PASSWORD');
const timer = watchdog(Number(process.env.TIMEOUT_MS || 90000), () => browser);

async function shot(page, name) {
  const file = join(shots, `proxy-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot ${file}`);
}

async function main() {
  mkdirSync(shots, { recursive: true });
  browser = await launch(process.env.CHROMIUM || '/usr/bin/chromium');
  const context = await browser.newContext({ viewport: { width: 1024, height: 768 } });
  context.setDefaultTimeout(10000);
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));

  // 1. The app's page sends a stranger to the portal on the same host.
  await page.goto(`${app}/page`);
  await expectPath(page, `${base}/login`, 'the app without a session');
  const rd = new URL(page.url()).searchParams.get('rd');
  expect(rd === `${app}/page`, `the login page's rd is ${JSON.stringify(rd)}, expected ${app}/page`);
  await shot(page, 'login');

  // 2. Password, then code: back on the app's page, which knows the user.
  await page.getByLabel('User name').fill('alice');
  await page.getByLabel('Password').fill(alicePassword);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expectPath(page, `${base}/login/code`, 'password step');
  await page.getByLabel('One-time code').fill(codeAt(bin, config, aliceSecret, nowSeconds()));
  await page.getByRole('button', { name: 'Verify' }).click();
  await expectPath(page, '/page', 'after a correct code');
  await expectText(page, 'Signed in as alice', "the app's page");

  // 3. The page's own WebSocket goes through the gateway with the session cookie.
  await expectText(page, 'WebSocket says user=alice', "the page's WebSocket");
  const cookie = (await context.cookies()).find((c) => c.name === 'portcullis_session');
  expect(cookie && cookie.path === '/' && cookie.httpOnly, `session cookie: ${JSON.stringify(cookie)}`);
  await shot(page, 'app');

  // 4. Signing out locks the app again.
  await page.goto(`${app}${base}/logout`);
  await expectText(page, 'Sign out?', 'the sign-out confirmation');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expectText(page, 'You are signed out', 'sign out');
  await page.goto(`${app}/page`);
  await expectPath(page, `${base}/login`, 'the app after signing out');

  expect(pageErrors.length === 0, `JavaScript errors on the pages: ${pageErrors.join('; ')}`);
  log('all reverse-proxy browser checks passed');
}

await run(main, timer, () => browser);
