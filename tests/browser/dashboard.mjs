// The dashboard in a real browser (issue 17): Debian's Chromium, headless, driven by
// playwright-core, against a real `tether serve` with the demo broker that
// tests/dashboard_browser.rs started and filled through the API. Run by that test, which passes
// the environment below.
//
// Protocol with the Rust side: a line `@@ <request>` on stdout asks it for something only it
// can do (create a binding through the API, let the broker finish an async bind); it answers
// with one line on stdin. Everything else this script says goes to stderr.
//
// Deterministic: every step waits for a condition in the page (with a deadline), never for a
// fixed time.

import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { mkdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import readline from 'node:readline';
import assert from 'node:assert/strict';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (this script is run by tests/dashboard_browser.rs)`);
  return v;
};
const API = env('TETHER_API');
const SHOTS = env('SCREENSHOT_DIR');
const TOKEN_KEY = 'tether.dashboard.token';
const EVIL_INSTANCE = env('EVIL_INSTANCE');
const EVIL_DESCRIPTION = env('EVIL_DESCRIPTION');
const ADMIN_TOKEN = env('ADMIN_TOKEN');

const log = (...args) => console.error('[browser]', ...args);

// A hung browser must not hang the test run.
setTimeout(() => {
  console.error('[browser] timed out after 4 minutes');
  process.exit(2);
}, 240_000).unref();

const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function ask(request) {
  process.stdout.write(`@@ ${request}\n`);
  const { value, done } = await lines.next();
  if (done) throw new Error(`no answer to ${request}`);
  return value.trim();
}

const require = createRequire(import.meta.url);
const axeSource = await readFile(require.resolve('axe-core/axe.min.js'), 'utf8');

await mkdir(SHOTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: env('TETHER_CHROMIUM'),
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

const problems = [];
const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
const page = await context.newPage();
page.setDefaultTimeout(20_000);
page.on('pageerror', (e) => problems.push(`uncaught error in the page: ${e.message}`));
page.on('dialog', (d) => {
  problems.push(`a dialog opened (script ran?): ${d.message()}`);
  d.dismiss().catch(() => {});
});
page.on('console', (m) => {
  // The dashboard must work under its own CSP: any refusal means it tried something it may not.
  if (/Content Security Policy/i.test(m.text())) problems.push(`CSP violation: ${m.text()}`);
});
const requested = [];
page.on('request', (r) => requested.push(r.url()));

// ---- helpers

async function until(what, check, timeout = 20_000) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last === true) return;
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const h1 = (name) => page.getByRole('heading', { level: 1, name, exact: true });

async function heading(name) {
  await h1(name).waitFor();
  // Loaded, not just begun: the view is swapped in when its data is there.
  await until(`${name} loaded`, async () => (await page.locator('#view[aria-busy]').count()) === 0);
}

async function shot(name) {
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot ${file}`);
}

const axeResults = [];
async function a11y(view) {
  if (await page.evaluate(() => typeof window.axe === 'undefined')) await page.evaluate(axeSource);
  const { passes, violations } = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return {
      passes: r.passes.length,
      violations: r.violations.map((v) => ({
        id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ')),
      })),
    };
  });
  assert.ok(passes > 10, `axe-core ran only ${passes} rules on ${view}`);
  for (const v of violations) log(`axe ${view}: ${v.impact} ${v.id} (${v.help}) at ${v.nodes.join(', ')}`);
  const serious = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  axeResults.push(`${view}: ${passes} rules passed, ${violations.length} violations, ${serious.length} serious or critical`);
  assert.equal(serious.length, 0, `axe found serious violations on ${view}: ${JSON.stringify(serious)}`);
}

const stored = () => page.evaluate((k) => JSON.parse(sessionStorage.getItem(k)), TOKEN_KEY);

async function go(hash) {
  await page.evaluate((h) => { location.hash = h; }, hash);
}

const bindingRows = () => page.locator('#bindings-table tbody tr[data-guid]');
const bindingNames = () => bindingRows().locator('th').allTextContents();

async function expectBindings(names, what) {
  await until(what, async () => JSON.stringify(await bindingNames()) === JSON.stringify(names));
}

async function signIn(user, password, landing = 'Organizations') {
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await heading(landing);
}

async function signOut() {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await heading('Sign in');
  assert.equal(await page.evaluate((k) => sessionStorage.getItem(k), TOKEN_KEY), null, 'token forgotten');
}

async function noScriptRan() {
  const state = await page.evaluate(() => ({
    xss: window.__xss,
    imgs: document.querySelectorAll('img').length,
    scripts: [...document.scripts].map((s) => s.getAttribute('src')),
  }));
  assert.equal(state.xss, undefined, 'a script from the data ran');
  assert.equal(state.imgs, 0, 'markup from the data became an <img>');
  assert.deepEqual(state.scripts, ['/dashboard/app.js'], 'markup from the data became a <script>');
}

const tokens = new Set([ADMIN_TOKEN]);

// ---- 1. sign-in page, headers, a refused password

const first = await page.goto(`${API}/dashboard`);
const csp = first.headers()['content-security-policy'] || '';
for (const d of ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]) {
  assert.ok(csp.includes(d), `CSP ${csp} lacks ${d}`);
}
await heading('Sign in');
await a11y('sign-in');
await shot('01-sign-in');

await page.getByLabel('User name').fill(env('DEV_USER'));
await page.getByLabel('Password', { exact: true }).fill('not-the-password');
await page.getByRole('button', { name: 'Sign in', exact: true }).click();
await page.getByRole('alert').filter({ hasText: 'Sign-in failed' }).waitFor();
assert.equal(await page.evaluate((k) => sessionStorage.getItem(k), TOKEN_KEY), null);
log('a wrong password is refused');

// ---- 2. the developer: orgs → org → space (roles apply: one org of two)

await signIn(env('DEV_USER'), env('DEV_PASSWORD'));
const devSession = await stored();
assert.ok(devSession.access_token && devSession.refresh_token, 'password sign-in keeps both tokens');
tokens.add(devSession.access_token);
tokens.add(devSession.refresh_token);
await page.getByText(`Signed in as ${env('DEV_USER')}`).waitFor();
assert.deepEqual(await page.locator('#orgs-table tbody th').allTextContents(), ['acme'],
  'the developer sees only the org they are in');
await a11y('organizations');
await shot('02-organizations');

await page.locator('#orgs-table').getByRole('link', { name: 'acme', exact: true }).click();
await heading('Organization acme');
await a11y('organization');
await shot('02b-organization');
// By keyboard: focus the space's link and press Enter.
await page.locator('#spaces-table').getByRole('link', { name: 'dev', exact: true }).focus();
await page.keyboard.press('Enter');
await heading('Space dev');
assert.equal(await page.evaluate(() => document.activeElement.tagName), 'H1', 'focus moves to the new heading');
// In creation order; the failed one last, on page 2 when a page has five rows.
const ALL = ['web-orders', 'worker-orders', 'web-evil', 'web-config', 'cron-orders',
  'cron-config', 'cron-evil', 'worker-config', 'worker-evil', 'worker-jobs'];
const SUCCEEDED = ALL.filter((name) => name !== 'worker-jobs');
await expectBindings(ALL, 'the space\'s bindings');
log('walked org → space (by mouse and keyboard)');

// Broker- and user-supplied strings are text.
await page.locator('#instances-table').getByRole('link', { name: EVIL_INSTANCE, exact: true }).waitFor();
const failedRow = page.locator(`#bindings-table tr[data-guid="${env('FAILED_GUID')}"]`);
assert.equal((await failedRow.locator('.badge').textContent()).trim(), '✕ failed');
assert.equal(await failedRow.locator('.op-desc').textContent(), EVIL_DESCRIPTION);
assert.equal(await failedRow.locator('td').nth(1).textContent(), 'jobs-db');
await noScriptRan();
log('the failed binding shows the broker\'s description, markup and all, as text');
await a11y('space');
await shot('03-space');

// Filters: by app, by state, by instance (each a `q=` of the API); paging through next_url.
const applyFilters = () => page.getByRole('button', { name: 'Apply filters' }).click();
const pager = (text) => page.locator('#bindings-table .pager').getByText(text, { exact: true }).waitFor();
await page.getByLabel('App', { exact: true }).selectOption({ label: 'worker' });
await applyFilters();
await expectBindings(['worker-orders', 'worker-config', 'worker-evil', 'worker-jobs'], 'the app filter');
await page.getByLabel('State', { exact: true }).selectOption('failed');
await applyFilters();
await expectBindings(['worker-jobs'], 'the app and state filters');
await page.getByLabel('App', { exact: true }).selectOption({ label: 'All apps' });
await page.getByLabel('State', { exact: true }).selectOption({ label: 'Any state' });
await page.getByLabel('Rows per page').selectOption('5');
await applyFilters();
await expectBindings(ALL.slice(0, 5), 'page 1 of five rows');
assert.ok(!ALL.slice(0, 5).includes('worker-jobs'), 'the failed binding is not on page 1');
await pager('Page 1 of 2 (10 in all)');
assert.ok(await page.getByRole('button', { name: 'Previous page of service bindings' }).isDisabled(), 'no page before the first');
await page.getByRole('button', { name: 'Next page of service bindings' }).click();
await expectBindings(ALL.slice(5), 'page 2');
await pager('Page 2 of 2 (10 in all)');
assert.ok(await page.getByRole('button', { name: 'Next page of service bindings' }).isDisabled(), 'no page after the last');
await shot('03b-space-page-2');
await page.getByRole('button', { name: 'Previous page of service bindings' }).click();
await expectBindings(ALL.slice(0, 5), 'back to page 1');
// The state filter asks the API, so "is anything failed" is answered from every page: the
// failed binding, on page 2 of the plain list, is the filtered list's only row.
await page.getByLabel('State', { exact: true }).selectOption('failed');
await applyFilters();
await expectBindings(['worker-jobs'], 'the failed binding, found beyond page 1');
await pager('1 in all');
assert.equal((await failedRow.locator('.badge').textContent()).trim(), '✕ failed');
await shot('03c-space-failed-filter');
// Its pages are the filter's, and the API's page links keep the filter.
await page.getByLabel('State', { exact: true }).selectOption('succeeded');
await applyFilters();
await expectBindings(SUCCEEDED.slice(0, 5), 'page 1 of the succeeded bindings');
await pager('Page 1 of 2 (9 in all)');
await page.getByRole('button', { name: 'Next page of service bindings' }).click();
await expectBindings(SUCCEEDED.slice(5), 'page 2 of the succeeded bindings');
await pager('Page 2 of 2 (9 in all)');
await page.getByLabel('State', { exact: true }).selectOption({ label: 'Any state' });
await page.getByLabel('Service instance', { exact: true }).selectOption({ label: 'orders-db' });
await applyFilters();
await expectBindings(['web-orders', 'worker-orders', 'cron-orders'], 'the instance filter');
log('filters by app, state and instance, and paging through next_url work');

// ---- 3. an app's bindings, with Code Engine role and prefix

await page.locator('#apps-table').getByRole('link', { name: 'web', exact: true }).click();
await heading('App web');
await expectBindings(['web-orders', 'web-evil', 'web-config'], 'the app\'s bindings');
const cells = async (guid) => page.locator(`#bindings-table tr[data-guid="${guid}"] td`).allTextContents();
const [app, inst, service, plan, role, prefix] = await cells(env('WEB_ORDERS_GUID'));
assert.deepEqual([app, inst, service, plan, role, prefix], ['web', 'orders-db', 'demo-db', 'small', 'Writer', 'ORDERS']);
const upsRow = page.locator('#bindings-table tbody tr', { hasText: 'web-config' }).locator('td');
assert.deepEqual((await upsRow.allTextContents()).slice(2, 6), ['user-provided', '—', '—', '—']);
await a11y('app');
await shot('04-app');

// ---- 4. a binding created through the API appears (Refresh, not a reload) and settles

const asyncGuid = await ask('create-async-binding web');
await page.evaluate(() => { window.__sameDocument = true; });
await page.getByRole('button', { name: 'Refresh' }).click();
const asyncRow = page.locator(`#bindings-table tr[data-guid="${asyncGuid}"]`);
await asyncRow.and(page.locator('[data-state="in progress"]')).waitFor();
assert.equal((await asyncRow.locator('th').textContent()), 'web-jobs');
assert.equal((await asyncRow.locator('.badge').textContent()).trim(), '… in progress');
log('the new async binding shows as in progress');
await shot('05-binding-in-progress');
assert.equal(await ask(`finish-async-binding ${asyncGuid}`), 'ok');
await asyncRow.and(page.locator('[data-state="succeeded"]')).waitFor({ timeout: 30_000 });
assert.equal((await asyncRow.locator('.badge').textContent()).trim(), '✓ succeeded');
assert.equal(await page.evaluate(() => window.__sameDocument), true, 'no reload happened');
await until('the change announced', async () =>
  (await page.locator('#status').textContent()) === 'Binding web-jobs: create succeeded');
log('it went to succeeded by itself, without a reload, and was announced');
await shot('06-binding-succeeded');

// Under a state filter, a row that settles into another state leaves the list by itself.
await go(`#/spaces/${env('SPACE_GUID')}`);
await heading('Space dev');
const cronGuid = await ask('create-async-binding cron');
await page.getByLabel('State', { exact: true }).selectOption('in progress');
await applyFilters();
await expectBindings(['cron-jobs'], 'the binding in progress');
await pager('1 in all');
assert.equal(await ask(`finish-async-binding ${cronGuid}`), 'ok');
await page.locator('#bindings-table').getByText('No bindings match.').waitFor({ timeout: 30_000 });
await pager('0 in all');
await until('the change announced', async () =>
  (await page.locator('#status').textContent()) === 'Binding cron-jobs: create succeeded');
assert.equal(await page.evaluate(() => window.__sameDocument), true, 'no reload happened');
log('a binding that settled left the "in progress" filter\'s list, without a reload');
await page.getByLabel('State', { exact: true }).selectOption({ label: 'Any state' });
await applyFilters();
await expectBindings(ALL.concat(['web-jobs', 'cron-jobs']), 'every binding of the space again');

// ---- 5. a binding's details: parameters and credentials

await page.locator('#bindings-table').getByRole('link', { name: 'web-orders', exact: true }).click();
await heading('Binding web-orders');
const detail = async (term) =>
  page.locator('dl.details dt', { hasText: term }).locator('xpath=following-sibling::dd[1]').textContent();
assert.equal(await detail('Role'), 'Writer');
assert.equal(await detail('Env-var prefix'), 'ORDERS');
assert.equal(await detail('Plan'), 'small');
assert.match(await page.locator('#parameters').textContent(), /"fetched": true/);
const toggle = page.getByRole('button', { name: 'Show credentials' });
assert.equal(await page.locator('#credentials').isVisible(), false, 'credentials hidden until asked');
await toggle.click();
assert.match(await page.locator('#credentials').textContent(), /"password": "secret"/);
assert.equal(await page.getByRole('button', { name: 'Hide credentials' }).getAttribute('aria-expanded'), 'true');
await a11y('binding');
await shot('07-binding');

await go(`#/bindings/${env('FAILED_GUID')}`);
await heading('Binding worker-jobs');
assert.equal(await page.locator('#binding-op .op-desc').textContent(), EVIL_DESCRIPTION);
await page.locator('#parameters-unavailable').waitFor();
await noScriptRan();
await shot('08-failed-binding');

await go(`#/instances/${env('EVIL_GUID')}`);
await heading(`Service instance ${EVIL_INSTANCE}`);
await expectBindings(['web-evil', 'cron-evil', 'worker-evil'], 'the instance\'s bindings');
await noScriptRan();
await a11y('service instance');
await shot('09-instance');

// ---- 6. token refresh: when the API refuses the token, and when it is due

await page.evaluate((k) => {
  const s = JSON.parse(sessionStorage.getItem(k));
  s.access_token = 'not-a-valid-token';
  sessionStorage.setItem(k, JSON.stringify(s));
}, TOKEN_KEY);
let refreshed = page.waitForRequest((r) => r.url() === `${API}/oauth/token`
  && (r.postData() || '').includes('grant_type=refresh_token'));
await go('#/');
await refreshed;
await heading('Organizations');
let now = await stored();
assert.notEqual(now.access_token, 'not-a-valid-token');
tokens.add(now.access_token);
log('a refused token is refreshed and the request retried');

await page.evaluate((k) => {
  const s = JSON.parse(sessionStorage.getItem(k));
  s.expires_at = Date.now() - 1000;
  sessionStorage.setItem(k, JSON.stringify(s));
}, TOKEN_KEY);
const before = now.access_token;
refreshed = page.waitForRequest((r) => r.url() === `${API}/oauth/token`
  && (r.postData() || '').includes('grant_type=refresh_token'));
await go(`#/orgs/${env('ORG_GUID')}`);
await refreshed;
await heading('Organization acme');
now = await stored();
assert.ok(now.expires_at > Date.now(), 'a fresh expiry');
tokens.add(now.access_token);
log(`an expired token is refreshed before use (token ${now.access_token === before ? 'same' : 'new'})`);

// ---- 7. sign-out forgets the token

await signOut();
await go(`#/spaces/${env('SPACE_GUID')}`);
await heading('Sign in');
log('signed out: the token is gone and views need a new sign-in');

// ---- 8. an auditor sees credentials redacted

// Signing in leads to the page that asked for it (the space, from the step before).
await signIn(env('AUDITOR_USER'), env('AUDITOR_PASSWORD'), 'Space dev');
tokens.add((await stored()).access_token);
await expectBindings(ALL.concat(['web-jobs', 'cron-jobs']), 'the auditor sees the space\'s bindings');
await go('#/');
await heading('Organizations');
assert.deepEqual(await page.locator('#orgs-table tbody th').allTextContents(), ['acme']);
await go(`#/bindings/${env('WEB_ORDERS_GUID')}`);
await heading('Binding web-orders');
assert.match(await page.locator('.redacted').textContent(), /\[PRIVATE DATA HIDDEN\]/);
assert.equal(await page.getByRole('button', { name: 'Show credentials' }).count(), 0);
assert.doesNotMatch(await page.locator('main').textContent(), /secret/);
await a11y('binding (auditor)');
await shot('10-binding-as-auditor');
log('the auditor sees the credentials redacted');
await signOut();
await go('#/');

// ---- 9. a pasted bearer token (as from an external UAA)

await page.getByLabel('Bearer token').fill('not.a.token');
await page.getByRole('button', { name: 'Use this token' }).click();
await page.getByRole('alert').filter({ hasText: 'Your session ended' }).waitFor();
await heading('Sign in');
await page.getByLabel('Bearer token').fill(`bearer ${ADMIN_TOKEN}`);
await page.getByRole('button', { name: 'Use this token' }).click();
await heading('Organizations');
assert.deepEqual((await page.locator('#orgs-table tbody th').allTextContents()).sort(), ['acme', 'hidden-org']);
assert.equal((await stored()).refresh_token, null);
log('a pasted token works (and a bad one sends you back to sign in)');
await signOut();

// ---- 10. the page talked to tether only, and never put a token in a URL

const apiOrigin = new URL(API).origin;
for (const url of requested) {
  if (url.startsWith('data:')) continue;
  assert.equal(new URL(url).origin, apiOrigin, `a request left tether: ${url}`);
  for (const t of tokens) assert.ok(!url.includes(t), `a token in a URL: ${url}`);
}
log(`${requested.length} requests, all to tether, none with a token in its URL`);

// ---- 11. CORS from a real second origin: allowed, and another one refused

const blank = '<!doctype html><html lang="en"><title>elsewhere</title><p>a page on another origin</p></html>';
const listen = (port) => new Promise((resolve, reject) => {
  const s = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(blank);
  });
  s.on('error', reject);
  s.listen(Number(port), '127.0.0.1', () => resolve(s));
});
const servers = [await listen(env('ALLOWED_PORT')), await listen(env('OTHER_PORT'))];
const elsewhere = await browser.newContext();
const remote = await elsewhere.newPage();

await remote.goto(`http://127.0.0.1:${env('ALLOWED_PORT')}/`);
const allowed = await remote.evaluate(async ({ api, token, user, password }) => {
  const auth = { Authorization: `bearer ${token}` };
  const orgs = await fetch(`${api}/v2/organizations`, { headers: auth });
  const missing = await fetch(`${api}/v2/service_bindings/no-such-binding`, { headers: auth });
  const login = await fetch(`${api}/oauth/token`, {
    method: 'POST',
    headers: { Authorization: `Basic ${btoa('cf:')}`, 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'password', username: user, password }),
  });
  return {
    status: orgs.status,
    names: (await orgs.json()).resources.map((o) => o.entity.name).sort(),
    requestId: orgs.headers.get('X-VCAP-Request-ID'),
    missing: [missing.status, (await missing.json()).error_code],
    login: [login.status, typeof (await login.json()).access_token],
  };
}, { api: API, token: ADMIN_TOKEN, user: env('DEV_USER'), password: env('DEV_PASSWORD') });
assert.deepEqual(allowed, {
  status: 200,
  names: ['acme', 'hidden-org'],
  requestId: allowed.requestId,
  missing: [404, 'CF-ServiceBindingNotFound'],
  login: [200, 'string'],
});
assert.ok(allowed.requestId, 'X-VCAP-Request-ID is exposed');
log('from the allowed origin: API reads, errors and sign-in work');

await remote.goto(`http://127.0.0.1:${env('OTHER_PORT')}/`);
const refused = await remote.evaluate(async ({ api, token }) => {
  try {
    const r = await fetch(`${api}/v2/organizations`, { headers: { Authorization: `bearer ${token}` } });
    return `read: ${r.status}`;
  } catch (e) {
    return `refused: ${e.name}`;
  }
}, { api: API, token: ADMIN_TOKEN });
assert.equal(refused, 'refused: TypeError');
log('from another origin: refused by the browser');

await elsewhere.close();
for (const s of servers) s.close();

// ---- done

assert.deepEqual(problems, [], 'page errors, dialogs or CSP violations');
for (const line of axeResults) log(`axe-core ${line}`);
await browser.close();
log('ok');
process.exit(0);
