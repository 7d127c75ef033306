// The portal's Duo push login in a real headless Chromium, with JavaScript (push.js waits
// in place) and without (the waiting page reloads itself), against the Duo stand-in
// (crates/duo/tests/standin.py, whose answer depends on the user name's prefix). Run by
// crates/server/tests/e2e/browser.rs twice, which starts the stand-in and `portcullis
// serve`, checks the stand-in's push counts afterwards and passes everything through
// environment variables:
//
//   PHASE            "up": the stand-in answers. The driver approves manual-bob's push
//                    itself, about 4 s after it was sent.
//                    "down": the stand-in is stopped; PORTAL_URL has failmode = "closed",
//                    OPEN_PORTAL_URL failmode = "open".
//   PORTAL_URL       e.g. http://127.0.0.1:41234 (demo_page = true, plain HTTP)
//   OPEN_PORTAL_URL  ("down" only) a second gateway, failmode = "open"
//   PASSWORD         every user's password
//   SCREENSHOTS      directory for the PNG files
//   CHROMIUM         optional, default /usr/bin/chromium
//   TIMEOUT_MS       optional global limit, default 90000
//
// Users ("up"): alice, manual-bob, deny-carol, enroll-dave, timeout-frank (Duo only) and
// erin (a TOTP token and Duo); [duo] timeout = 12. "down": alice on both gateways.
//
// Exits 0 when every expectation held, 1 with a message naming the first one that did not.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect, expectPath, expectText, fail, launch, log, need, run, watchdog } from './common.mjs';

let browser;

const phase = need('PHASE');
const portal = need('PORTAL_URL').replace(/\/$/, '');
const password = need('PASSWORD');
const shots = need('SCREENSHOTS');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const timeoutMs = Number(process.env.TIMEOUT_MS || 90000);
const home = `${portal}/`;

const timer = watchdog(timeoutMs, () => browser);
const pageErrors = [];

async function shot(page, name) {
  const file = join(shots, `${phase}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot ${file}`);
}

/** A fresh browser context (no cookies), with or without JavaScript. */
async function fresh(javaScriptEnabled) {
  const context = await browser.newContext({ viewport: { width: 1024, height: 768 }, javaScriptEnabled });
  context.setDefaultTimeout(15000);
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  // Every document the tab loads: [path, status] (not the redirects on the way).
  const loads = [];
  page.on('response', (r) => {
    const redirect = r.status() >= 300 && r.status() < 400;
    if (!redirect && r.request().isNavigationRequest() && r.frame() === page.mainFrame()) {
      loads.push([new URL(r.url()).pathname, r.status()]);
    }
  });
  return { context, page, loads };
}

/** How many times the tab loaded `path`. */
const loadsOf = (loads, path) => loads.filter(([p]) => p === path).length;

/** The status of the last document the tab loaded. */
const lastStatus = (loads) => (loads.length ? loads[loads.length - 1][1] : 0);

/**
 * Holds push.js's requests to /login/push/status until `release()`: the waiting page of a
 * push the stand-in approves in 0.3 s is otherwise gone before it can be looked at. The
 * gateway is not involved: the request leaves the browser later, unchanged.
 */
async function holdStatus(page) {
  let release;
  const gate = new Promise((r) => {
    release = r;
  });
  const held = {
    asked: 0,
    // Lets the held requests go and stops intercepting (an intercepted 401 with a Basic
    // challenge would wait for credentials that never come).
    release: async () => {
      release();
      await page.unrouteAll({ behavior: 'wait' });
    },
  };
  await page.route(
    (u) => u.pathname === '/login/push/status',
    async (route) => {
      held.asked += 1;
      await gate;
      await route.continue();
    },
  );
  return held;
}

async function until(condition, what, ms = 10000) {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** From the protected page to the login form, then the password: the Sign in button. */
async function signIn(page, base, user) {
  await page.goto(`${base}/`);
  await expectPath(page, '/login', `GET / as ${user} without a session`);
  const rd = new URL(page.url()).searchParams.get('rd');
  expect(rd === `${base}/`, `the login page's rd is ${JSON.stringify(rd)}, expected ${base}/`);
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** Back on the protected page, signed in with both factors (the demo page says so). */
async function expectSignedIn(page, context, user, what, timeout = 10000) {
  await expectPath(page, '/', what, timeout);
  await expectText(page, `Hello, ${user}`, what);
  const cookie = (await context.cookies()).find((c) => c.name === 'portcullis_session');
  expect(cookie && cookie.httpOnly, `${what}: no HttpOnly portcullis_session cookie`);
}

/** The waiting page: the push went out, to the stand-in's device. */
async function expectWaiting(page, what) {
  await expectPath(page, '/login/push', what);
  await expectText(page, 'Push sent to', what);
  const status = (await page.getByRole('status').innerText()).trim();
  expect(status.includes('iOS (XXX-XXX-0100)'), `${what}: the waiting page names no device: ${JSON.stringify(status)}`);
}

/**
 * Requests a page makes in the background (a tab left open, an app's XHR, a favicon):
 * the forward-auth check of a page and of static-looking paths, as a browser and as not,
 * and (`pushPages`) the push pages' GETs. None may send a push (the driver counts them at
 * the stand-in) or pass as signed in. They go through the page's own fetch() (its cookies,
 * from its origin) when `page` runs JavaScript, else through the context's request API
 * (the same cookie jar); so do the non-browser checks always: their 401 carries a Basic
 * challenge, which would leave a fetch() waiting for a password dialog.
 */
async function background(context, page, what, pushPages = true) {
  const viaPage = (url, headers) =>
    page.evaluate(
      ([u, h]) =>
        fetch(u, { headers: h, redirect: 'manual', credentials: 'same-origin' }).then((r) =>
          r.type === 'opaqueredirect' ? 0 : r.status,
        ),
      [url, headers],
    );
  const viaContext = async (url, headers) => {
    const r = await context.request.get(url, { headers, maxRedirects: 0 });
    return r.status() >= 300 && r.status() < 400 ? 0 : r.status();
  };
  const browserGet = page ? viaPage : viaContext;
  const forwarded = (uri, accept) => ({
    'X-Forwarded-Proto': 'http',
    'X-Forwarded-Host': '127.0.0.1',
    'X-Forwarded-Uri': uri,
    'X-Forwarded-Method': 'GET',
    Accept: accept,
  });
  const rd = encodeURIComponent(home);
  const seen = [];
  for (let round = 0; round < 3; round++) {
    for (const uri of ['/docs/report?id=1', '/static/app.css', '/favicon.ico', '/api/items.json']) {
      for (const [accept, get] of [
        ['text/html', browserGet],
        ['*/*', viaContext],
      ]) {
        const status = await get(`${portal}/api/authz/forward-auth`, forwarded(uri, accept));
        expect(status !== 200 && status < 500, `${what}: forward-auth of ${uri} (${accept}) answered ${status}`);
        seen.push(status);
      }
    }
    const paths = pushPages ? [`/login/push?rd=${rd}`, `/login/push/status?rd=${rd}`] : [];
    for (const path of [...paths, '/favicon.ico']) {
      const status = await browserGet(`${portal}${path}`, {});
      expect(status < 500, `${what}: GET ${path} answered ${status}`);
      seen.push(status);
    }
  }
  log(`${what}: ${seen.length} background requests, statuses ${[...new Set(seen)].join(' ')}`);
}

/** Nobody answers timeout-frank's push: after [duo] timeout (12 s) it is "Not approved". */
async function unanswered() {
  const { context, page, loads } = await fresh(true);
  await signIn(page, portal, 'timeout-frank');
  await expectText(page, 'Not approved', 'timeout-frank after [duo] timeout', 30000);
  expect(lastStatus(loads) === 401, `"Not approved" after the timeout came with status ${lastStatus(loads)}`);
  expect(loadsOf(loads, '/login/push') === 2, `timeout-frank's pages: ${JSON.stringify(loads)}`);
  log('timeout-frank: not approved after the timeout');
  await shot(page, 'frank-timeout');
  await context.close();
}

async function up() {
  // Beside the others (it takes [duo] timeout): a push nobody answers.
  const slow = unanswered().then(
    () => null,
    (e) => e,
  );
  // 1. JavaScript on, a Duo-only user: the password sends the push, the waiting page
  // waits in place (one load of it) and moves on by itself once approved (0.3 s).
  {
    const { context, page, loads } = await fresh(true);
    const held = await holdStatus(page);
    await signIn(page, portal, 'alice');
    await expectWaiting(page, "alice's waiting page");
    await until(() => held.asked > 0, "push.js's first status request");
    await shot(page, 'alice-waiting-js');
    await held.release();
    await expectSignedIn(page, context, 'alice', 'alice after the push, with JavaScript');
    expect(loadsOf(loads, '/login/push') === 1, `with JavaScript the waiting page was loaded ${loadsOf(loads, '/login/push')} times`);
    await shot(page, 'alice-signed-in');
    // Sign out; then the background requests of a tab whose session is gone.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await expectPath(page, '/logout', 'sign out');
    await expectText(page, 'You are signed out', 'sign out');
    await background(context, page, 'after signing out');
    await context.close();
  }

  // 2. JavaScript off: the waiting page reloads itself (meta refresh, each poll waits a
  // few seconds) until the driver approves manual-bob's push, then lands signed in.
  {
    const { context, page, loads } = await fresh(false);
    await signIn(page, portal, 'manual-bob');
    await expectWaiting(page, "manual-bob's waiting page without JavaScript");
    await shot(page, 'bob-waiting-nojs');
    // With the one-factor session and the push pending: background checks send nothing.
    // (Not the push pages: a poll there may collect the approval, for this very session.)
    await background(context, null, 'manual-bob waiting for his push', false);
    await expectSignedIn(page, context, 'manual-bob', 'manual-bob after the approval, without JavaScript', 40000);
    const reloads = loadsOf(loads, '/login/push');
    expect(reloads >= 2, `without JavaScript the waiting page was loaded ${reloads} times: it did not reload itself`);
    log(`without JavaScript the waiting page was loaded ${reloads} times`);
    await shot(page, 'bob-signed-in-nojs');
    await context.close();
  }

  // 3. Denied on the device: "Not approved" (401), and nothing more happens from there.
  {
    const { context, page, loads } = await fresh(true);
    await signIn(page, portal, 'deny-carol');
    await expectText(page, 'Not approved', 'deny-carol after the denial', 10000);
    expect(lastStatus(loads) === 401, `"Not approved" came with status ${lastStatus(loads)}`);
    await shot(page, 'carol-not-approved');
    await background(context, page, 'deny-carol after the denial (one-factor session)');
    await context.close();
  }

  // 4. Duo wants an enrolled device first: "Enroll with Duo first" (403) with Duo's link.
  {
    const { context, page, loads } = await fresh(true);
    await signIn(page, portal, 'enroll-dave');
    await expectText(page, 'Enroll with Duo first', 'enroll-dave');
    expect(lastStatus(loads) === 403, `"Enroll with Duo first" came with status ${lastStatus(loads)}`);
    const href = await page.getByRole('link', { name: 'Enroll a device with Duo' }).getAttribute('href');
    expect(href === 'https://enroll.example/portal?code=x', `the enrollment link is ${JSON.stringify(href)}`);
    await shot(page, 'dave-enroll');
    await context.close();
  }

  // 5. A token and Duo: the code page offers "Send a push" beside the code field; the
  // push is sent by the button, not by the password.
  {
    const { context, page, loads } = await fresh(true);
    const held = await holdStatus(page);
    await signIn(page, portal, 'erin');
    await expectPath(page, '/login/code', "erin's password step");
    await expectText(page, 'Two-step verification', "erin's code page");
    await page.getByLabel('One-time code').waitFor({ state: 'visible' });
    const button = page.getByRole('button', { name: 'Send a push' });
    await button.waitFor({ state: 'visible', timeout: 5000 }).catch(() => fail('no "Send a push" button on the code page'));
    await shot(page, 'erin-code');
    await button.click();
    await expectWaiting(page, "erin's waiting page");
    await until(() => held.asked > 0, "push.js's first status request");
    await shot(page, 'erin-waiting-js');
    await held.release();
    await expectSignedIn(page, context, 'erin', 'erin after the push');
    expect(loadsOf(loads, '/login/push') === 1, `erin's waiting page was loaded ${loadsOf(loads, '/login/push')} times`);
    await context.close();
  }

  // 6. No session at all: a gateway page's background requests send nothing either.
  {
    const { context, page } = await fresh(true);
    await page.goto(`${portal}/login`);
    await expectText(page, 'Sign in', 'the login page');
    await background(context, page, 'without a session');
    await context.close();
  }

  const failed = await slow;
  if (failed) throw failed;
}

async function down() {
  const open = need('OPEN_PORTAL_URL').replace(/\/$/, '');
  // failmode = "closed": no sign-in while Duo is out of reach (503).
  {
    const { context, page, loads } = await fresh(true);
    await signIn(page, portal, 'alice');
    await expectText(page, 'Duo cannot be reached', 'alice with Duo down, failmode closed', 15000);
    expect(lastStatus(loads) === 503, `"Duo cannot be reached" came with status ${lastStatus(loads)}`);
    const cookie = (await context.cookies()).find((c) => c.name === 'portcullis_session');
    if (cookie) {
      // The one-factor session it keeps opens nothing: back to the code page.
      await page.goto(`${portal}/`);
      const at = new URL(page.url()).pathname;
      expect(at === '/login' || at === '/login/code', `GET / with Duo down, failmode closed, led to ${page.url()}`);
    }
    await shot(page, 'duo-unreachable');
    await context.close();
  }
  // failmode = "open": the push is skipped, the sign-in goes on (the driver checks the WARN line).
  {
    const { context, page } = await fresh(true);
    await signIn(page, open, 'alice');
    await expectSignedIn(page, context, 'alice', 'alice with Duo down, failmode open', 15000);
    await shot(page, 'failmode-open');
    await context.close();
  }
}

async function main() {
  mkdirSync(shots, { recursive: true });
  browser = await launch(executablePath);
  log(`Chromium ${browser.version()} started, phase ${phase}`);
  if (phase === 'up') await up();
  else if (phase === 'down') await down();
  else fail(`PHASE is ${JSON.stringify(phase)}, not up or down`);
  expect(pageErrors.length === 0, `JavaScript errors on the pages: ${pageErrors.join('; ')}`);
  log(`all Duo browser checks of phase ${phase} passed`);
}

await run(main, timer, () => browser);
