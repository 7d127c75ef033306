// Passkeys (WebAuthn) on the portal in a real headless Chromium, with a virtual
// authenticator driven through the Chrome DevTools Protocol (WebAuthn.enable,
// WebAuthn.addVirtualAuthenticator: ctap2, resident keys, user verification). Run by
// crates/server/tests/e2e/browser.rs in two phases against one gateway ([webauthn]
// passwordless = true), which checks the audit log and the store between and after them:
//
//   "passkeys": alice adds a passkey on /settings, signs in with password + passkey and
//               with the passkey alone; refused: an assertion replayed from a captured
//               request (as it was, and into a fresh ceremony), a signature counter that
//               goes back (the credential put back into the authenticator with a lower
//               signCount: a clone), the portal behind a phishing proxy on another
//               origin, the portal under other host names (127.0.0.1, other.localhost), and
//               bob registering alice's credential ID; an authenticator pulled while the
//               browser waits for it leaves the code form working.
//   "removal":  the credential (kept in STATE) in a new browser: alice signs in with it,
//               removes it on /settings, and the login falls back to the code; the
//               removed key signs nobody in passwordless.
//
//   PHASE              "passkeys" or "removal"
//   PORTAL_URL         http://localhost:PORT (an RP ID cannot be an IP address; plain HTTP
//                      is a secure context on localhost)
//   PORTCULLIS_BIN     the binary, for `otp code`
//   PORTCULLIS_CONFIG  its configuration
//   STATE              a JSON file the phases share (the credential, the TOTP steps used);
//                      also read by the Rust test
//   SCREENSHOTS        directory for the PNG files
//   ALICE_SECRET, ALICE_PASSWORD, BOB_SECRET, BOB_PASSWORD
//   CHROMIUM           optional, default /usr/bin/chromium
//   TIMEOUT_MS         optional global limit, default 90000
//
// Exits 0 when every expectation held, 1 with a message naming the first one that did not.

import http from 'node:http';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { codeAt, expect, expectPath, expectText, fail, launch, log, need, nowSeconds, run, watchdog } from './common.mjs';

let browser;

const phase = need('PHASE');
const portal = need('PORTAL_URL').replace(/\/$/, '');
const bin = need('PORTCULLIS_BIN');
const config = need('PORTCULLIS_CONFIG');
const statePath = need('STATE');
const shots = need('SCREENSHOTS');
const users = {
  alice: { secret: need('ALICE_SECRET'), password: need('ALICE_PASSWORD') },
  bob: { secret: need('BOB_SECRET'), password: need('BOB_PASSWORD') },
};
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const timeoutMs = Number(process.env.TIMEOUT_MS || 90000);
const portalUrl = new URL(portal);

const timer = watchdog(timeoutMs, () => browser);
const pageErrors = [];

// What the phases share: alice's credential as the authenticator holds it, the last TOTP
// step used per user.
const state = existsSync(statePath) ? JSON.parse(readFileSync(statePath, 'utf8')) : { steps: {} };
const saveState = () => writeFileSync(statePath, JSON.stringify(state, null, 2));

// What passkey.js says in #passkey-status.
const WAITING = 'Waiting for your passkey';
const NOT_ACCEPTED = 'That passkey was not accepted.';
const NOT_USED = 'The passkey was not used (cancelled or timed out).';
const EXPIRED_PAGE = 'The page expired. Reload it and try again.';
const REGISTERED_ALREADY = 'This passkey is registered already (to this account or another one).';

async function shot(page, name) {
  const file = join(shots, `${phase}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot ${file}`);
}

/**
 * A TOTP code `user` has not used yet: the current step, or the one after the last used.
 * (The gateway refuses a used step, accepts one step either side of now plus the drift it
 * learnt from the last code, and always tries the current step.)
 */
function freshCode(user) {
  const step = Math.max((state.steps[user] ?? 0) + 1, Math.floor(nowSeconds() / 30));
  state.steps[user] = step;
  return codeAt(bin, config, users[user].secret, step * 30);
}

const b64ToB64url = (s) => Buffer.from(s, 'base64').toString('base64url');

const AUTHENTICATOR = {
  protocol: 'ctap2',
  ctap2Version: 'ctap2_1',
  transport: 'internal',
  hasResidentKey: true,
  hasUserVerification: true,
  isUserVerified: true,
  automaticPresenceSimulation: true,
};

/** A fresh browser context (no cookies) and a tab with a virtual authenticator in it. */
async function fresh() {
  const context = await browser.newContext({ viewport: { width: 1024, height: 768 } });
  context.setDefaultTimeout(10000);
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const tab = { context, page, cdp, authenticatorId: null };
  await plugIn(tab);
  return tab;
}

/** A new virtual authenticator in the tab (one internal one per tab), holding `credential`. */
async function plugIn(tab, credential) {
  const { authenticatorId } = await tab.cdp.send('WebAuthn.addVirtualAuthenticator', { options: AUTHENTICATOR });
  tab.authenticatorId = authenticatorId;
  if (credential) await tab.cdp.send('WebAuthn.addCredential', { authenticatorId, credential });
}

/** The credentials the tab's authenticator holds (credentialId in base64, signCount). */
async function held(tab) {
  return (await tab.cdp.send('WebAuthn.getCredentials', { authenticatorId: tab.authenticatorId })).credentials;
}

/** Replaces the authenticator's copy of `credential` (same ID) by `credential`. */
async function replaceCredential(tab, credential) {
  const { authenticatorId } = tab;
  await tab.cdp.send('WebAuthn.removeCredential', { authenticatorId, credentialId: credential.credentialId });
  await tab.cdp.send('WebAuthn.addCredential', { authenticatorId, credential });
}

/** Alice's credential as `tab` holds it now (after assertions: its counter moved on). */
async function aliceCredential(tab) {
  const all = await held(tab);
  const c = all.find((x) => x.credentialId === state.credential.credentialId);
  expect(c, `the authenticator lost alice's credential: ${JSON.stringify(all)}`);
  return c;
}

/** The password page at `base`, from the protected page: lands on the code page. */
async function passwordStep(page, base, user) {
  await page.goto(`${base}/`);
  await expectPath(page, '/login', `GET ${base}/ as ${user} without a session`);
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(users[user].password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await expectPath(page, '/login/code', `${user}'s password step at ${base}`);
}

/** The code form of the code page. */
async function codeStep(page, user, what) {
  await page.getByLabel('One-time code').fill(freshCode(user));
  await page.getByRole('button', { name: 'Verify' }).click();
  await expectSignedIn(page, user, what);
}

/** On the demo page, signed in with both factors, with an HttpOnly session cookie. */
async function expectSignedIn(page, user, what) {
  await expectPath(page, '/', what, 10000);
  await expectText(page, `Hello, ${user}. You passed both factors.`, what);
  const cookie = (await page.context().cookies()).find((c) => c.name === 'portcullis_session');
  expect(cookie && cookie.httpOnly, `${what}: no HttpOnly portcullis_session cookie`);
}

async function signOut(page, base = portal) {
  await page.goto(`${base}/`);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expectText(page, 'You are signed out', 'sign out');
}

/** Waits for `text` in #passkey-status (what passkey.js says). */
async function expectStatus(page, text, what, timeout = 8000) {
  const status = page.locator('#passkey-status');
  try {
    await status.filter({ hasText: text }).waitFor({ state: 'visible', timeout });
  } catch {
    const shown = await status.innerText().catch(() => '(no #passkey-status)');
    fail(`${what}: expected ${JSON.stringify(text)} in #passkey-status on ${page.url()}, it says ${JSON.stringify(shown)}`);
  }
}

/** The JSON bodies the tab posts to `path`, as they leave the browser. */
function captured(page, path) {
  const bodies = [];
  page.on('request', (r) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === path) bodies.push(JSON.parse(r.postData() || 'null'));
  });
  return bodies;
}

/** A POST of `body` (JSON) from the page itself: its origin, its cookies. */
function postFromPage(page, path, body) {
  return page.evaluate(
    async ([url, b]) => {
      const r = await fetch(url, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify(b),
      });
      return { status: r.status, body: await r.json().catch(() => null) };
    },
    [path, body],
  );
}

/** The CSRF token the page's passkey button carries. */
const buttonCsrf = (page) => page.locator('[data-passkey]').first().getAttribute('data-csrf');

/**
 * A phishing site: a reverse proxy on another port of localhost (the same RP ID, so the
 * browser lets the page use alice's passkey) in front of the portal, rewriting Host and
 * Origin as a phishing proxy does. Only the origin inside the signed client data can give
 * it away.
 */
function phishingProxy() {
  const server = http.createServer((req, res) => {
    const headers = { ...req.headers, host: portalUrl.host };
    if (headers.origin) headers.origin = portalUrl.origin;
    delete headers.referer;
    const up = http.request(
      { host: '127.0.0.1', port: portalUrl.port, method: req.method, path: req.url, headers },
      (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', (e) => {
      res.writeHead(502);
      res.end(String(e));
    });
    req.pipe(up);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function passkeys() {
  // 1. Alice (password + code) adds a passkey on the settings page.
  const a = await fresh();
  const { page } = a;
  await passwordStep(page, portal, 'alice');
  await codeStep(page, 'alice', 'alice with password and code');
  await page.getByRole('link', { name: 'Passkeys and security keys' }).click();
  await expectPath(page, '/settings', 'the home page links to the settings page');
  await expectText(page, 'You have no passkey yet.', 'the settings page before any passkey');
  const registrations = captured(page, '/settings/passkeys/finish');
  await page.locator('#passkey-label').fill('laptop');
  await page.getByRole('button', { name: 'Add a passkey' }).click();
  await expectText(page, 'Passkey \u201claptop\u201d added.', 'after "Add a passkey"');
  await expectPath(page, '/settings', 'after "Add a passkey"');
  const keys = page.locator('ul.keys li');
  expect((await keys.count()) === 1, `the settings page lists ${await keys.count()} passkeys, not 1`);
  const row = await keys.first().innerText();
  expect(row.includes('laptop') && row.includes('last used never'), `the passkey's row says ${JSON.stringify(row)}`);
  await shot(page, 'settings-added');
  const made = await held(a);
  expect(made.length === 1, `the authenticator holds ${made.length} credentials after the registration`);
  const [credential] = made;
  expect(
    credential.isResidentCredential && credential.rpId === portalUrl.hostname && credential.userName === 'alice',
    `the new credential: ${JSON.stringify({ ...credential, privateKey: '…' })}`,
  );
  expect(registrations.length === 1, `${registrations.length} registration answers were posted`);
  expect(
    registrations[0].credential.id === b64ToB64url(credential.credentialId),
    `the posted registration is for ${registrations[0].credential.id}, the authenticator holds ${credential.credentialId}`,
  );
  state.credential = credential;
  state.credentialId = registrations[0].credential.id;
  state.credentialHex = Buffer.from(state.credentialId, 'base64url').toString('hex');
  log(`alice's passkey ${state.credentialId}, signCount ${credential.signCount}`);

  // 2. Password, then "Use your passkey" on the code page.
  await signOut(page);
  await passwordStep(page, portal, 'alice');
  const button = page.getByRole('button', { name: 'Use your passkey' });
  await button.waitFor({ state: 'visible', timeout: 5000 }).catch(() => fail('no "Use your passkey" on the code page'));
  await page.getByLabel('One-time code').waitFor({ state: 'visible' });
  await shot(page, 'code-page-with-passkey');
  const assertions = captured(page, '/login/passkey/finish');
  await button.click();
  await expectSignedIn(page, 'alice', 'alice with password and passkey');
  await shot(page, 'signed-in-with-passkey');
  expect(assertions.length === 1, `${assertions.length} assertions were posted for one sign-in`);
  const assertion = assertions[0];

  // 3. The captured request again, byte for byte, from a new one-factor session of the
  // same browser (its CSRF cookie, so the token still holds; its origin): refused as it
  // is (its ceremony is used up: "replayed"), and refused in a ceremony begun for it
  // (another challenge: "bad_passkey").
  await signOut(page);
  await passwordStep(page, portal, 'alice');
  const csrf = await buttonCsrf(page);
  expect(csrf === assertion.csrf, 'the CSRF token changed at the sign-out; the replays would be refused for that');
  const replayed = await postFromPage(page, '/login/passkey/finish', assertion);
  expect(
    replayed.status === 401 && replayed.body?.error === NOT_ACCEPTED,
    `the replayed assertion was answered ${JSON.stringify(replayed)}`,
  );
  const begun = await postFromPage(page, '/login/passkey/begin', { csrf, rd: assertion.rd });
  expect(begun.status === 200 && begun.body?.options?.publicKey?.challenge, `begin answered ${JSON.stringify(begun)}`);
  const reused = await postFromPage(page, '/login/passkey/finish', assertion);
  expect(
    reused.status === 401 && reused.body?.error === NOT_ACCEPTED,
    `the captured assertion in a fresh ceremony was answered ${JSON.stringify(reused)}`,
  );
  log('replayed assertions refused (401)');
  // A password alone does not let anyone add a passkey to the account.
  const added = await postFromPage(page, '/settings/passkeys/begin', { csrf, rd: '', label: 'intruder' });
  expect(added.status === 401, `a one-factor session's "Add a passkey" was answered ${JSON.stringify(added)}`);
  // Neither opened anything; the passkey itself still signs in from this page.
  await page.getByRole('button', { name: 'Use your passkey' }).click();
  await expectSignedIn(page, 'alice', 'alice with her passkey after the replays');

  // 4. Passwordless: "Sign in with a passkey" on the login page, nothing typed.
  await signOut(page);
  await page.goto(`${portal}/`);
  await expectPath(page, '/login', 'GET / after signing out');
  const passwordless = page.getByRole('button', { name: 'Sign in with a passkey' });
  await passwordless
    .waitFor({ state: 'visible', timeout: 5000 })
    .catch(() => fail('no "Sign in with a passkey" on the login page'));
  await shot(page, 'login-with-passwordless');
  const anonymous = captured(page, '/login/passwordless/finish');
  await passwordless.click();
  await expectSignedIn(page, 'alice', 'alice with her passkey alone');
  const ceremony = (await a.context.cookies()).find((c) => c.name === 'portcullis_passkey');
  expect(!ceremony, `the passwordless ceremony cookie outlived the sign-in: ${JSON.stringify(ceremony)}`);
  await shot(page, 'signed-in-passwordless');
  // Its captured request replayed from the login page: without the ceremony's cookie
  // (cleared by the sign-in), and in a ceremony begun for it (another challenge).
  expect(anonymous.length === 1, `${anonymous.length} passwordless assertions were posted for one sign-in`);
  await signOut(page);
  await page.goto(`${portal}/login`);
  const late = await postFromPage(page, '/login/passwordless/finish', anonymous[0]);
  expect(late.status === 401, `the replayed passwordless assertion was answered ${JSON.stringify(late)}`);
  const again = await postFromPage(page, '/login/passwordless/begin', { csrf: anonymous[0].csrf, rd: '' });
  expect(again.status === 200, `passwordless begin answered ${JSON.stringify(again)}`);
  const replayedAlone = await postFromPage(page, '/login/passwordless/finish', anonymous[0]);
  expect(
    replayedAlone.status === 401 && replayedAlone.body?.error === NOT_ACCEPTED,
    `the passwordless assertion in a fresh ceremony was answered ${JSON.stringify(replayedAlone)}`,
  );
  const after = (await a.context.cookies()).find((c) => c.name === 'portcullis_session');
  expect(!after, `a session cookie after the replayed passwordless assertions: ${JSON.stringify(after)}`);

  // 5. A clone: the same key with a signature counter behind the one the gateway saw last.
  const good = await aliceCredential(a);
  expect(good.signCount >= 3, `the authenticator counted ${good.signCount} signatures after three sign-ins`);
  await replaceCredential(a, { ...good, signCount: 0 });
  await passwordStep(page, portal, 'alice');
  await page.getByRole('button', { name: 'Use your passkey' }).click();
  await expectStatus(page, NOT_ACCEPTED, 'a passkey whose counter went back');
  await expectPath(page, '/login/code', 'after the cloned passkey');
  await shot(page, 'cloned-passkey-refused');
  // The real key (its counter ahead of the gateway's) signs in from the same page.
  await replaceCredential(a, good);
  await page.getByRole('button', { name: 'Use your passkey' }).click();
  await expectSignedIn(page, 'alice', 'alice with the real key after the clone');

  // 6. The authenticator pulled while the browser waits for a touch: the page keeps
  // waiting (the browser waits for one until the ceremony's timeout); another key plugged
  // in does not have the credential (refused at once: "not used"); the code form works.
  await signOut(page);
  await passwordStep(page, portal, 'alice');
  await a.cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId: a.authenticatorId, enabled: false });
  const beginAnswered = page.waitForResponse((r) => new URL(r.url()).pathname === '/login/passkey/begin');
  const before = assertions.length;
  await page.getByRole('button', { name: 'Use your passkey' }).click();
  expect((await beginAnswered).status() === 200, 'begin failed before the authenticator was pulled');
  await expectStatus(page, WAITING, 'while the browser waits for a touch');
  await a.cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: a.authenticatorId });
  await page.waitForTimeout(1000);
  await expectStatus(page, WAITING, 'after the authenticator was pulled');
  await shot(page, 'authenticator-pulled');
  await plugIn(a);
  await expectStatus(page, NOT_USED, 'another authenticator, without the credential');
  expect(assertions.length === before, 'an assertion was posted without an authenticator');
  expect(await page.getByRole('button', { name: 'Use your passkey' }).isEnabled(), 'the passkey button stayed disabled');
  await shot(page, 'other-authenticator');
  await codeStep(page, 'alice', 'alice with a code after the authenticator was pulled');
  await a.cdp.send('WebAuthn.addCredential', { authenticatorId: a.authenticatorId, credential: good });

  // 7a. A phishing proxy on another origin (http://localhost:OTHER): the password and
  // the code would pass through it, the passkey does not (its client data names the
  // proxy's origin, and only the portal's is allowed).
  const proxy = await phishingProxy();
  const phish = `http://localhost:${proxy.address().port}`;
  const b = await fresh();
  await b.cdp.send('WebAuthn.addCredential', { authenticatorId: b.authenticatorId, credential: await aliceCredential(a) });
  try {
    await passwordStep(b.page, phish, 'alice');
    await b.page.getByRole('button', { name: 'Use your passkey' }).click();
    await expectStatus(b.page, NOT_ACCEPTED, `"Use your passkey" at ${phish}`);
    await shot(b.page, 'phishing-proxy-refused');
    await b.context.clearCookies();
    await b.page.goto(`${phish}/login`);
    await b.page.getByRole('button', { name: 'Sign in with a passkey' }).click();
    await expectStatus(b.page, NOT_ACCEPTED, `"Sign in with a passkey" at ${phish}`);
    await b.page.goto(`${phish}/`);
    await expectPath(b.page, '/login', `GET ${phish}/ after the refused passkeys`);
    log(`passkey assertions for ${phish} refused`);
  } finally {
    proxy.closeAllConnections();
    proxy.close();
  }
  // The same authenticator at the portal itself: the refusals were for the origin.
  await passwordStep(b.page, portal, 'alice');
  await b.page.getByRole('button', { name: 'Use your passkey' }).click();
  await expectSignedIn(b.page, 'alice', "alice with the phished tab's authenticator at the portal");
  await replaceCredential(a, await aliceCredential(b));
  await b.context.close();

  // 7b. The portal under other names of the same server. The browser refuses RP ID
  // "localhost" on an IP address ("invalid domain") and on other.localhost (not a
  // registrable suffix of it); the gateway never gets that far: it refuses the passkey
  // buttons' requests (and the password form) because their Origin is not portal_url's.
  for (const host of ['127.0.0.1', 'other.localhost']) {
    const other = `http://${host}:${portalUrl.port}`;
    const c = await fresh();
    await c.cdp.send('WebAuthn.addCredential', { authenticatorId: c.authenticatorId, credential: await aliceCredential(a) });
    await c.page.goto(`${other}/login`);
    await c.page.getByRole('button', { name: 'Sign in with a passkey' }).click();
    await expectStatus(c.page, EXPIRED_PAGE, `"Sign in with a passkey" at ${other}`);
    if (host === '127.0.0.1') await shot(c.page, 'other-host-refused');
    const direct = await c.page.evaluate(
      ([rpId, id]) =>
        navigator.credentials
          .get({
            publicKey: {
              challenge: crypto.getRandomValues(new Uint8Array(32)),
              rpId,
              allowCredentials: [{ type: 'public-key', id: Uint8Array.from(atob(id), (ch) => ch.charCodeAt(0)) }],
              timeout: 5000,
            },
          })
          .then(
            () => 'an assertion',
            (e) => `${e.name}: ${e.message}`,
          ),
      [portalUrl.hostname, state.credential.credentialId],
    );
    expect(direct.startsWith('SecurityError'), `navigator.credentials.get for RP ID localhost at ${other}: ${direct}`);
    await c.page.getByLabel('User name').fill('alice');
    await c.page.getByLabel('Password').fill(users.alice.password);
    await c.page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await expectText(c.page, 'The form expired. Please try again.', `the password form at ${other}`);
    const session = (await c.context.cookies()).find((k) => k.name === 'portcullis_session');
    expect(!session, `a session cookie at ${other}: ${JSON.stringify(session)}`);
    log(`${other}: the browser says ${JSON.stringify(direct)}; the gateway refused the requests`);
    await c.context.close();
  }

  // 8. Bob, signed in, tries to register alice's credential ID as his. (a) Alice's
  // captured registration answer, posted into a ceremony begun for bob: refused (400, its
  // challenge is alice's). (b) A registration the browser really made for bob, its
  // credential ID swapped for alice's on the way out (attestation "none" signs nothing,
  // so the gateway cannot tell): refused as registered already (409).
  const d = await fresh();
  await passwordStep(d.page, portal, 'bob');
  await codeStep(d.page, 'bob', 'bob with password and code');
  await d.page.goto(`${portal}/settings`);
  await expectText(d.page, 'You have no passkey yet.', "bob's settings page");
  const bobCsrf = await buttonCsrf(d.page);
  const bobBegin = await postFromPage(d.page, '/settings/passkeys/begin', { csrf: bobCsrf, rd: '', label: 'stolen' });
  expect(bobBegin.status === 200, `bob's begin answered ${JSON.stringify(bobBegin)}`);
  const stolen = await postFromPage(d.page, '/settings/passkeys/finish', { ...registrations[0], csrf: bobCsrf });
  expect(
    stolen.status === 400 && stolen.body?.error === "The authenticator's answer was not accepted.",
    `alice's registration answer posted for bob was answered ${JSON.stringify(stolen)}`,
  );
  const aliceId = Buffer.from(state.credentialId, 'base64url');
  let swapped = false;
  await d.page.route(
    (u) => u.pathname === '/settings/passkeys/finish',
    async (route) => {
      const body = JSON.parse(route.request().postData());
      const own = Buffer.from(body.credential.rawId, 'base64url');
      const att = Buffer.from(body.credential.response.attestationObject, 'base64url');
      const at = att.indexOf(own);
      expect(own.length === aliceId.length && at > 0, `bob's new credential ID (${own.length} bytes) cannot be swapped`);
      aliceId.copy(att, at);
      body.credential.id = state.credentialId;
      body.credential.rawId = state.credentialId;
      body.credential.response.attestationObject = att.toString('base64url');
      swapped = true;
      await route.continue({ postData: JSON.stringify(body) });
    },
  );
  const finished = d.page.waitForResponse((r) => new URL(r.url()).pathname === '/settings/passkeys/finish');
  await d.page.locator('#passkey-label').fill('alice\u2019s key');
  await d.page.getByRole('button', { name: 'Add a passkey' }).click();
  const answer = await finished;
  expect(swapped, "bob's registration was not intercepted");
  expect(answer.status() === 409, `the swapped registration was answered ${answer.status()} ${await answer.text()}`);
  await expectStatus(d.page, REGISTERED_ALREADY, "bob registering alice's credential ID");
  await shot(d.page, 'bob-duplicate-refused');
  await d.page.unrouteAll({ behavior: 'wait' });
  await d.page.reload();
  await expectText(d.page, 'You have no passkey yet.', "bob's settings page after the refusals");
  log(`bob's registrations of alice's credential: ${stolen.status} (replayed answer), ${answer.status()} (swapped ID)`);
  await d.context.close();

  state.credential = await aliceCredential(a);
  await a.context.close();
}

async function removal() {
  expect(state.credential, `no credential in ${statePath} (run phase "passkeys" first)`);
  const a = await fresh();
  const { page } = a;
  await a.cdp.send('WebAuthn.addCredential', { authenticatorId: a.authenticatorId, credential: state.credential });
  // The key from the first browser still signs in (the counter the gateway kept).
  await passwordStep(page, portal, 'alice');
  await page.getByRole('button', { name: 'Use your passkey' }).click();
  await expectSignedIn(page, 'alice', 'alice with her passkey in a new browser');
  await page.goto(`${portal}/settings`);
  const row = await page.locator('ul.keys li').first().innerText();
  expect(row.includes('laptop') && !row.includes('last used never'), `the passkey's row says ${JSON.stringify(row)}`);
  await page.getByRole('button', { name: 'Remove laptop' }).click();
  await expectText(page, 'Passkey removed.', 'after "Remove"');
  await expectText(page, 'You have no passkey yet.', 'after "Remove"');
  await shot(page, 'settings-removed');
  // Without a passkey the code page offers only the code.
  await signOut(page);
  await passwordStep(page, portal, 'alice');
  await page.getByLabel('One-time code').waitFor({ state: 'visible' });
  const buttons = await page.locator('[data-passkey]').count();
  expect(buttons === 0, `the code page still has ${buttons} passkey buttons after the removal`);
  await shot(page, 'code-page-without-passkey');
  await codeStep(page, 'alice', 'alice with a code after removing her passkey');
  // The authenticator still holds the credential; the gateway knows it no more.
  await signOut(page);
  await page.goto(`${portal}/login`);
  await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
  await expectStatus(page, NOT_ACCEPTED, 'the removed passkey, passwordless');
  await shot(page, 'removed-passkey-refused');
  const session = (await a.context.cookies()).find((k) => k.name === 'portcullis_session');
  expect(!session, `a session cookie after the removed passkey: ${JSON.stringify(session)}`);
  state.credential = await aliceCredential(a);
  await a.context.close();
}

async function main() {
  mkdirSync(shots, { recursive: true });
  browser = await launch(executablePath);
  log(`Chromium ${browser.version()} started, phase ${phase}`);
  if (phase === 'passkeys') await passkeys();
  else if (phase === 'removal') await removal();
  else fail(`PHASE is ${JSON.stringify(phase)}, not passkeys or removal`);
  expect(pageErrors.length === 0, `JavaScript errors on the pages: ${pageErrors.join('; ')}`);
  saveState();
  log(`all passkey browser checks of phase ${phase} passed`);
}

await run(main, timer, () => browser);
