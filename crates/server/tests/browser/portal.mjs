// The login portal in a real headless Chromium: sign in with password and code, a wrong
// code, sign out, and self-service enrollment through an invitation link. Writes a
// screenshot of every page visited. Run by crates/server/tests/e2e/browser.rs, which
// starts `portcullis serve` and passes everything through environment variables:
//
//   PORTAL_URL         e.g. http://127.0.0.1:41234 (demo_page = true, plain HTTP)
//   PORTCULLIS_BIN     the binary, for `otp code`
//   PORTCULLIS_CONFIG  its configuration
//   SCREENSHOTS        directory for the PNG files
//   ALICE_SECRET       base32 secret of alice's TOTP token
//   ALICE_PASSWORD     alice's password
//   INVITE_URL         `user invite bob` output: <portal>/enroll/<token>
//   BOB_PASSWORD       bob's password (bob has no token until he enrolls)
//   CHROMIUM           optional, default /usr/bin/chromium
//   TIMEOUT_MS         optional global limit, default 90000
//
// Exits 0 when every expectation held, 1 with a message naming the first one that did not.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { codeAt as codeFrom, expect, expectPath, expectText, fail, launch, log, need, nowSeconds, run, watchdog } from './common.mjs';

let browser;

const portal = need('PORTAL_URL').replace(/\/$/, '');
const bin = need('PORTCULLIS_BIN');
const config = need('PORTCULLIS_CONFIG');
const shots = need('SCREENSHOTS');
const aliceSecret = need('ALICE_SECRET');
const alicePassword = need('ALICE_PASSWORD');
const inviteUrl = need('INVITE_URL');
const bobPassword = need('BOB_PASSWORD');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const timeoutMs = Number(process.env.TIMEOUT_MS || 90000);

// Never hang: whatever is going on, stop after the global limit.
const timer = watchdog(timeoutMs, () => browser);

const codeAt = (secret, unixSeconds) => codeFrom(bin, config, secret, unixSeconds);
// The gateway refuses a code of a step already used (replay), accepts one step of clock
// skew either side ([otp] window = 1), and learns the device's drift from each code it
// accepts. So the next login uses the step after the one whose code was accepted, counted
// from when that code was made, not from now: a code made just before a step boundary and
// checked just after teaches a drift of one step, and "now + 30 s" would then be two steps
// ahead of what the gateway expects (seen once in CI).
const codeStepAfter = (secret, usedAt) => codeAt(secret, usedAt + 30);

/** A code that matches none of the steps the gateway would accept now. */
function wrongCode(secret) {
  const t = nowSeconds();
  const valid = new Set([-60, -30, 0, 30, 60].map((d) => codeAt(secret, t + d)));
  for (let i = 0; ; i++) {
    const candidate = String(123456 + i * 111111).slice(-6);
    if (!valid.has(candidate)) return candidate;
  }
}

let shotNumber = 0;
async function shot(page, name) {
  shotNumber += 1;
  const file = join(shots, `${String(shotNumber).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot ${file}`);
}

/** Fails when the page is wider than its viewport (horizontal scrolling on a phone). */
async function expectNoHorizontalOverflow(page, what) {
  const { scroll, inner } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    inner: window.innerWidth,
  }));
  expect(scroll <= inner, `${what}: the page is ${scroll}px wide in a ${inner}px viewport`);
}

/** Password page: fills the fields by their labels and submits. */
async function passwordStep(page, user, password) {
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expectPath(page, '/login/code', `password step for ${user}`);
  await expectText(page, 'Two-step verification', 'code page');
}

async function codeStep(page, code) {
  await page.getByLabel('One-time code').fill(code);
  await page.getByRole('button', { name: 'Verify' }).click();
}

async function signOut(page, what) {
  // Sign-out is a button (a POST with the CSRF token), never a link.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expectPath(page, '/logout', what);
  await expectText(page, 'You are signed out', what);
}

async function main() {
  mkdirSync(shots, { recursive: true });
  // launch() gives the browser a fresh temporary profile and removes it on close.
  browser = await launch(executablePath);
  log(`Chromium ${browser.version()} started`);

  const context = await browser.newContext({ viewport: { width: 1024, height: 768 } });
  context.setDefaultTimeout(10000);
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));

  // 1. The protected page sends a stranger to the login page, with the way back in rd.
  await page.goto(`${portal}/`);
  await expectPath(page, '/login', 'GET / without a session');
  const rd = new URL(page.url()).searchParams.get('rd');
  expect(rd === `${portal}/`, `the login page's rd is ${JSON.stringify(rd)}, expected ${portal}/`);
  await expectText(page, 'Sign in', 'login page');
  await shot(page, 'login');

  // The same page on a phone.
  const phone = await browser.newContext({
    viewport: { width: 375, height: 667 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });
  const phonePage = await phone.newPage();
  await phonePage.goto(`${portal}/login?rd=${encodeURIComponent(`${portal}/`)}`);
  await expectText(phonePage, 'Sign in', 'login page on a phone');
  await expectNoHorizontalOverflow(phonePage, 'login page on a phone');
  await phonePage.screenshot({ path: join(shots, '01-login-mobile.png'), fullPage: true });
  log(`screenshot ${join(shots, '01-login-mobile.png')}`);
  await phone.close();

  // 2. Password, then the current code: back on the protected page.
  await passwordStep(page, 'alice', alicePassword);
  await shot(page, 'code');
  const aliceCodeAt = nowSeconds();
  await codeStep(page, codeAt(aliceSecret, aliceCodeAt));
  await expectPath(page, '/', 'after a correct code');
  await expectText(page, 'Hello, alice', 'demo page');
  const cookie = (await context.cookies()).find((c) => c.name === 'portcullis_session');
  expect(cookie, 'no portcullis_session cookie after signing in');
  expect(cookie.httpOnly, 'the session cookie is not HttpOnly');
  await shot(page, 'demo');

  // 3. Sign out: the session is gone and / asks for a login again.
  await signOut(page, 'sign out');
  await shot(page, 'logout');
  await page.goto(`${portal}/`);
  await expectPath(page, '/login', 'GET / after signing out');
  await expectText(page, 'Sign in', 'login page after signing out');

  // 4. A second login with a wrong code first: an error, still on the code page.
  await passwordStep(page, 'alice', alicePassword);
  await codeStep(page, wrongCode(aliceSecret));
  await expectPath(page, '/login/code', 'after a wrong code');
  const alert = page.getByRole('alert');
  await alert.waitFor({ state: 'visible', timeout: 5000 }).catch(() => fail('no error shown after a wrong code'));
  const alertText = (await alert.innerText()).trim();
  expect(
    alertText === 'The user name, password or code is not correct.',
    `wrong-code message is ${JSON.stringify(alertText)}`,
  );
  await shot(page, 'wrong-code');
  // Then a right one (the next step's: the first login's code may not be replayed).
  await codeStep(page, codeStepAfter(aliceSecret, aliceCodeAt));
  await expectPath(page, '/', 'after a correct code following a wrong one');
  await expectText(page, 'Hello, alice', 'demo page after the second login');
  await signOut(page, 'second sign out');
  await context.close();

  // 5. Enrollment through the invitation, in a fresh browser context.
  const bobContext = await browser.newContext({ viewport: { width: 1024, height: 768 } });
  bobContext.setDefaultTimeout(10000);
  const bob = await bobContext.newPage();
  bob.on('pageerror', (e) => pageErrors.push(String(e)));
  await bob.goto(inviteUrl);
  await expectText(bob, 'Set up two-step verification', 'enrollment page');
  await expectText(bob, 'Account: bob', 'enrollment page');
  // Opening the link reveals nothing (link scanners open links too): a button does.
  await bob.getByRole('button', { name: 'Show my key' }).click();
  const qr = bob.getByRole('img', { name: 'QR code of your new token' });
  await qr.waitFor({ state: 'visible', timeout: 5000 }).catch(() => fail('no QR code on the enrollment page'));
  expect((await qr.locator('svg').count()) === 1, 'the QR code is not an inline SVG');
  await bob.getByText("Can't scan? Enter the key by hand").click();
  const uri = (await bob.locator('details code').last().innerText()).trim();
  expect(uri.startsWith('otpauth://totp/'), `the enrollment page shows ${JSON.stringify(uri)}, not an otpauth URI`);
  const bobSecret = new URL(uri).searchParams.get('secret');
  expect(bobSecret && /^[A-Z2-7]+=*$/.test(bobSecret), `no base32 secret in ${uri}`);
  // The key for typing by hand is the same secret, in groups of four.
  const typed = (await bob.locator('details code').first().innerText()).replace(/\s+/g, '');
  expect(typed === bobSecret, `the key to type (${typed}) differs from the URI's secret`);
  await shot(bob, 'enroll');
  // The same page on a phone: the QR code must fit.
  await bob.setViewportSize({ width: 375, height: 667 });
  await expectNoHorizontalOverflow(bob, 'enrollment page on a phone');
  const qrBox = await qr.boundingBox();
  expect(qrBox && qrBox.x >= 0 && qrBox.x + qrBox.width <= 375, `the QR code does not fit a phone: ${JSON.stringify(qrBox)}`);
  expect(qrBox.width >= 150, `the QR code is too small to scan on a phone: ${qrBox.width}px`);
  await bob.screenshot({ path: join(shots, `${String(shotNumber).padStart(2, '0')}-enroll-mobile.png`), fullPage: true });
  log(`screenshot ${join(shots, `${String(shotNumber).padStart(2, '0')}-enroll-mobile.png`)}`);
  await bob.setViewportSize({ width: 1024, height: 768 });

  const bobCodeAt = nowSeconds();
  await bob.getByLabel('One-time code').fill(codeAt(bobSecret, bobCodeAt));
  await bob.getByRole('button', { name: 'Confirm' }).click();
  await expectText(bob, 'All set', 'after confirming enrollment');
  await shot(bob, 'enrolled');

  // The link is used up.
  await bob.goto(inviteUrl);
  await expectText(bob, 'Link expired', 'the invitation opened a second time');

  // 6. Bob signs in with the new token.
  await bob.goto(`${portal}/`);
  await expectPath(bob, '/login', 'GET / as bob without a session');
  await passwordStep(bob, 'bob', bobPassword);
  await codeStep(bob, codeStepAfter(bobSecret, bobCodeAt));
  await expectPath(bob, '/', "after bob's first code");
  await expectText(bob, 'Hello, bob', "bob's demo page");
  await shot(bob, 'bob-demo');
  await bobContext.close();

  expect(pageErrors.length === 0, `JavaScript errors on the pages: ${pageErrors.join('; ')}`);
  log('all browser checks passed');
}

await run(main, timer, () => browser);
