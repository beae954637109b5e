// Drives the desk in two headless Chromium windows against a running incidentd (started by
// tests/api/desk.rs): live list, live timeline, the whole workflow, the postmortem editor and
// its conflict warning, the metrics panel, filters in the address, what the workflow tells (a
// lowered SEV1 still waits for its postmortem), names instead of ids, roles assigned through
// the people picker, the "Mine" filter, XSS, other origins, axe-core, keyboard, and
// screenshots at 1280 and 390 px.
//
// node desk.mjs <base url> <token one> <token two> <screenshot dir> [<identity provider>]
// With an identity provider, window one signs in through its login page (the session cookie
// then carries every request, the live WebSocket included); token one is used only for the API.
// Prints one line per step; exits non-zero with the reason on the first failure.

import { chromium } from 'playwright-core';
import { readFileSync, mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const [base, tokenOne, tokenTwo, shots, idp] = process.argv.slice(2);
const idpOrigin = idp ? new URL(idp).origin : null;
const origin = new URL(base).origin;
const host = new URL(base).host;
const TIMEOUT = 15000;
// Who window one is: the provider's bob when it signs in there, else token one's person.
const ONE = idp ? { name: 'Bob Responder', search: 'bob@' } : { name: 'Olive One', search: 'olive@' };
const XSS = '<img src=x onerror=alert(1)> checkout down';
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
mkdirSync(shots, { recursive: true });
for (const stale of ['failure-one.png', 'failure-two.png']) rmSync(path.join(shots, stale), { force: true });

const problems = [];
const started = Date.now();
const step = (what) => console.log(`step: ${what} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
const fail = (what) => { throw new Error(what); };

const browser = await chromium.launch({
  executablePath: process.env.INCIDENTD_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--disable-component-update'],
});

/** A window of its own (own sessionStorage) that records every request and every complaint. */
async function window(name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  context.on('request', (request) => {
    const url = new URL(request.url());
    if (!['data:', 'blob:'].includes(url.protocol) && url.origin !== origin && url.origin !== idpOrigin) {
      problems.push(`${name} requested another origin: ${request.url()}`);
    }
  });
  page.on('websocket', (ws) => {
    if (new URL(ws.url()).host !== host) problems.push(`${name} opened a WebSocket elsewhere: ${ws.url()}`);
  });
  page.on('console', (message) => {
    // The rejected token's 401 and the reconnects while offline are expected; anything else
    // (a CSP refusal above all) is not.
    const expected = ['status of 401', 'ERR_INTERNET_DISCONNECTED'].some((t) => message.text().includes(t));
    // The provider's own pages are not ours to judge.
    const provider = idpOrigin && page.url().startsWith(idpOrigin);
    if (message.type() === 'error' && !expected && !provider) problems.push(`${name} console error: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`${name} script error: ${error.message}`));
  page.on('dialog', async (dialog) => {
    problems.push(`${name} got a JavaScript dialog (XSS?): ${dialog.message()}`);
    await dialog.dismiss();
  });
  return { name, context, page };
}

/** Through the provider's login and consent pages (its development forms), as `login`. */
async function signInWithProvider(page, login) {
  const button = page.locator('#sign-in-provider');
  await button.waitFor();
  if (!(await text(button)).startsWith('Sign in with ')) fail(`the provider button says: ${await text(button)}`);
  await button.click();
  await page.waitForURL((url) => url.origin === idpOrigin, { waitUntil: 'commit' });
  await page.locator('input[name="login"]').fill(login);
  await page.locator('input[name="password"]').fill('any');
  await page.locator('button[type="submit"]').click();
  const consent = page.locator('input[name="prompt"][value="consent"]');
  const back = (url) => url.origin === origin;
  await Promise.race([consent.waitFor({ state: 'attached' }), page.waitForURL(back, { waitUntil: 'commit' })]);
  if (new URL(page.url()).origin === idpOrigin) await page.getByRole('button', { name: 'Continue' }).click();
  await page.waitForURL(back, { waitUntil: 'commit' });
  await page.locator('#connection[data-state="live"]').waitFor();
}

async function signIn(page, token) {
  await page.locator('#token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#connection[data-state="live"]').waitFor();
}

const text = async (locator) => (await locator.textContent()).trim();

async function waitText(page, selector, expected) {
  await page.waitForFunction(
    ([sel, want]) => document.querySelector(sel)?.textContent.trim() === want,
    [selector, expected],
    { timeout: TIMEOUT },
  ).catch(async () => fail(`${selector} should read "${expected}", reads "${await page.locator(selector).textContent().catch(() => '(missing)')}"`));
}

async function axe(page, screen) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
  });
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  for (const v of result) console.log(`axe ${screen}: ${v.impact} ${v.id}: ${v.help} (${v.nodes.join(', ')})`);
  if (bad.length) fail(`axe-core found serious or critical violations on ${screen}: ${JSON.stringify(bad)}`);
}

async function screenshot(page, file) {
  await page.screenshot({ path: path.join(shots, file), fullPage: true });
}

let one;
let two;
try {
  one = await window('one');
  two = await window('two');
  const p1 = one.page;
  const p2 = two.page;

  step('/ redirects to the desk, which asks for a token');
  await p2.goto(`${base}/`);
  if (new URL(p2.url()).pathname !== '/desk/incidents') fail(`/ led to ${p2.url()}`);
  await p2.locator('#token').waitFor();

  step('a refused sign-in says why, and the address forgets it');
  await p2.goto(`${base}/desk/incidents?signin_error=no_role`);
  await p2.locator('.signin .error-box:not([hidden])').filter({ hasText: 'give you no role' }).waitFor();
  if (new URL(p2.url()).search.includes('signin_error')) fail(`the reason stays in the address: ${p2.url()}`);
  if (idp) await p2.locator('#sign-in-provider').waitFor();

  step('a rejected token is refused in words');
  await p2.locator('#token').fill('not-a-token');
  await p2.getByRole('button', { name: 'Sign in' }).click();
  // This attempt's answer, not the reason the previous sign-in failed.
  await p2.locator('.signin .error-box:not([hidden])').filter({ hasText: /refused/i }).waitFor()
    .catch(async () => fail(`the refusal says: ${await text(p2.locator('.signin .error-box'))}`));

  step('both sign in; two watches the list');
  await signIn(p2, tokenTwo);
  await p1.goto(`${base}/desk/incidents`);
  if (idp) {
    await signInWithProvider(p1, 'bob');
    await waitText(p1, '#whoami', ONE.name);
    if (await p1.evaluate(() => sessionStorage.getItem('incidentd.token'))) fail('a session should not need a token');
  } else {
    await signIn(p1, tokenOne);
  }
  await waitText(p1, '#metric-total .stat-value', '0');
  await waitText(p1, '#metric-open-now .stat-value', '0');
  await p2.locator('.list-status').filter({ hasText: 'No incidents' }).waitFor();

  step('one declares with the keyboard (n)');
  await p1.locator('body').press('n');
  await p1.locator('#declare[open]').waitFor();
  await p1.locator('#declare-title-input').fill(XSS);
  await p1.locator('#declare-severity').selectOption('SEV2');
  await p1.locator('#declare-tickets').fill('OPS-1, OPS-2');
  await p1.getByRole('button', { name: 'Declare', exact: true }).click();
  await p1.locator('#detail-title').filter({ hasText: XSS }).waitFor();
  const id = new URL(p1.url()).pathname.split('/').pop();

  step('two sees it appear without a reload, as text');
  const row = p2.locator(`#incident-list a[data-id="${id}"]`);
  await row.waitFor();
  if ((await text(row.locator('.row-title'))) !== XSS) fail('the title is not shown as typed');
  if (await p2.locator('#incident-list img').count()) fail('the title became an <img> element');
  await waitText(p1, '#metric-open-now .stat-value', '1');

  step('two opens it from the list with j and Enter');
  await p2.locator('body').press('j');
  await p2.waitForFunction((rid) => document.activeElement?.dataset?.id === rid, id);
  await p2.keyboard.press('Enter');
  await p2.locator('#detail-title').filter({ hasText: XSS }).waitFor();
  if (!p2.url().includes(id)) fail(`Enter did not open the incident: ${p2.url()}`);

  step('one adds a note; two sees it on its open timeline');
  await p1.locator('#note').fill('Error rate at 40% since the 14:02 deploy');
  await p1.getByRole('button', { name: 'Add note' }).click();
  await p2.locator('.events li').filter({ hasText: 'Error rate at 40% since the 14:02 deploy' }).waitFor();

  step('names, not ids: who wrote the note, who declared, who leads');
  await p2.locator('.events li').filter({ hasText: 'Error rate at 40%' }).locator('.event-author').filter({ hasText: ONE.name }).waitFor();
  await waitText(p2, '.declarer', ONE.name);
  await waitText(p2, '.role[data-role="COMMANDER"] .role-holder', ONE.name);
  await waitText(p2, '.role[data-role="SCRIBE"] .role-holder', 'nobody');

  step('one makes two the commander through the people picker; two sees it live');
  await p1.locator('.role[data-role="COMMANDER"]').getByRole('button', { name: 'Change' }).click();
  await p1.locator('#people-search').fill('THEO');
  await p1.locator('#people-results button.person').filter({ hasText: 'Theo Two' }).click();
  await waitText(p1, '.role[data-role="COMMANDER"] .role-holder', 'Theo Two');
  await waitText(p2, '.role[data-role="COMMANDER"] .role-holder', 'Theo Two');
  const assigned = p2.locator('.events li.auto').filter({ hasText: 'Theo Two is now the commander' });
  await assigned.waitFor();
  if ((await text(assigned.locator('.event-author'))) !== ONE.name) fail('the role change does not name who made it');

  step('Mine: two leads it, one holds no role; one sees it arrive when made scribe');
  await p2.locator('#mine').click();
  await p2.waitForFunction(() => location.search.includes('mine=1'));
  await p2.locator(`#incident-list a[data-id="${id}"]`).waitFor();
  await p1.locator('#mine').click();
  await p1.locator('.list-status').filter({ hasText: 'No incidents' }).waitFor();
  await p2.locator('.role[data-role="SCRIBE"]').getByRole('button', { name: 'Assign' }).click();
  await p2.locator('#people-search').fill(ONE.search);
  await p2.locator('#people-results button.person').filter({ hasText: ONE.name }).click();
  await waitText(p2, '.role[data-role="SCRIBE"] .role-holder', ONE.name);
  await p1.locator(`#incident-list a[data-id="${id}"]`).waitFor();
  for (const p of [p1, p2]) {
    await p.locator('#mine').click();
    await p.waitForFunction(() => !location.search.includes('mine'));
  }

  step('two goes offline; what happens meanwhile arrives once it is back, once');
  await two.context.setOffline(true);
  await p2.locator('#connection[data-state="offline"]').waitFor();
  await p1.locator('#note').fill('Written while two was offline');
  await p1.getByRole('button', { name: 'Add note' }).click();
  await p1.locator('.events li').filter({ hasText: 'Written while two was offline' }).waitFor();
  await two.context.setOffline(false);
  await p2.locator('#connection[data-state="live"]').waitFor();
  await p2.locator('.events li').filter({ hasText: 'Written while two was offline' }).waitFor();
  const sequences = await p2.locator('.events li').evaluateAll((lis) => lis.map((li) => Number(li.dataset.sequence)));
  if (sequences.join() !== [...sequences.keys()].map((i) => i + sequences[0]).join()) fail(`timeline after the reconnect: ${sequences}`);

  step('mitigate and resolve; two follows, even when its refetch answers after the change');
  // Two's reconnect refetches the open incident and the list. Hold back their answers, read
  // before one mitigates, until the change has reached two: the late "Open" must not win.
  const refetches = ['query($id: UUID!) { incident(id: $id)', 'incidents(filter: $filter, first: $first'];
  const isRefetch = (body) => refetches.some((q) => (body || '').includes(q));
  let release;
  const released = new Promise((resolve) => { release = resolve; });
  const read = new Set();
  await p2.route('**/graphql', async (route) => {
    const body = route.request().postData();
    if (!isRefetch(body)) return route.fallback();
    const answer = await route.fetch();
    read.add(refetches.find((q) => body.includes(q)));
    await released;
    return route.fulfill({ response: answer });
  });
  const answered = Promise.all(refetches.map((q) => p2.waitForEvent('requestfinished', {
    predicate: (r) => (r.postData() || '').includes(q),
    timeout: 2 * TIMEOUT,
  })));
  await p2.evaluate(() => window.dispatchEvent(new Event('offline')));
  for (const until = Date.now() + TIMEOUT; read.size < refetches.length;) {
    if (Date.now() > until) fail('two did not refetch the incident and the list after reconnecting');
    await p2.waitForTimeout(20);
  }
  await p1.locator('button.transition[data-to="MITIGATING"]').click();
  await p2.locator('.detail-head .badge.status').filter({ hasText: 'Mitigating' }).waitFor();
  await p2.locator(`#incident-list a[data-id="${id}"] .badge.status`).filter({ hasText: 'Mitigating' }).waitFor();
  release();
  await answered;
  await p2.evaluate(() => new Promise((resolve) => setTimeout(resolve, 100)));
  await p2.unroute('**/graphql');
  const badge = await text(p2.locator('.detail-head .badge.status'));
  if (badge !== 'Mitigating') fail(`a refetch answered late put the incident's badge back to "${badge}"`);
  const listed = await text(p2.locator(`#incident-list a[data-id="${id}"] .badge.status`));
  if (listed !== 'Mitigating') fail(`a refetch answered late put the list's badge back to "${listed}"`);
  await p2.locator('.events li.auto').filter({ hasText: 'OPEN → MITIGATING' }).waitFor();
  await p2.locator('#hide-auto').check();
  if (await p2.locator('.events li.auto').first().isVisible()) fail('automatic events still show');
  if (!(await p2.locator('.events li:not(.auto)').first().isVisible())) fail('the note was hidden too');
  await p1.locator('button.transition[data-to="RESOLVED"]').click();
  await p1.locator('.detail-head .badge.status').filter({ hasText: 'Resolved' }).waitFor();
  if (await p1.locator('button.transition[data-to="CLOSED"]').count()) fail('Close offered without the postmortem a SEV2 needs');

  step('closing needs the postmortem, said in words with a link');
  const needs = p1.locator('.controls p.hint:not([hidden])');
  await needs.filter({ hasText: 'needs a postmortem' }).waitFor();
  await needs.getByRole('link', { name: 'Write the postmortem' }).click();
  await p1.locator('#pm-rootCause').waitFor();
  if (new URL(p1.url()).pathname !== `/desk/postmortems/${id}`) fail(`the link led to ${p1.url()}`);

  step('one writes the postmortem with an action item');
  await p1.locator('#pm-impactSummary').fill('Checkout failed for 18 minutes');
  await p1.locator('#pm-rootCause').fill('A config change disabled the payment provider');
  await p1.getByRole('button', { name: 'Add action item' }).click();
  const item = p1.locator('li.item').last();
  await item.locator('[data-key="title"]').fill('Alert on checkout error rate');
  await item.locator('[data-key="owner"]').fill('payments');
  await item.locator('[data-key="dueDate"]').fill('2020-01-31');
  await p1.getByRole('button', { name: 'Create postmortem' }).click();
  await p1.locator('.save-status').filter({ hasText: 'Saved' }).waitFor();

  step('two edits the same postmortem; one saves first; two is warned');
  await p2.goto(`${base}/desk/postmortems/${id}`);
  await p2.locator('#pm-rootCause').waitFor();
  if ((await p2.locator('#pm-rootCause').inputValue()) !== 'A config change disabled the payment provider') fail('two does not see the saved root cause');
  await p2.locator('#pm-whatWentWell').fill('Rollback took two minutes');
  await p1.locator('#pm-whatWentWrong').fill('No alert fired');
  await p1.getByRole('button', { name: 'Save postmortem' }).click();
  await p1.locator('.save-status').filter({ hasText: 'Saved' }).waitFor();
  await p2.locator('.conflict:not([hidden])').filter({ hasText: 'Someone else saved this postmortem' }).waitFor();
  await p2.getByRole('button', { name: 'Save postmortem' }).click();
  await p2.locator('.conflict:not([hidden])').waitFor();
  if ((await p2.locator('#pm-whatWentWell').inputValue()) !== 'Rollback took two minutes') fail('two lost its edit');
  await p2.locator('tr').filter({ hasText: XSS }).locator('td.num').filter({ hasText: '0 / 1' }).waitFor();

  step('the postmortems screen passes axe; screenshots');
  await axe(p2, 'postmortems');
  await screenshot(p2, 'postmortems-1280.png');

  step('one closes the incident; the metrics panel follows');
  await p1.getByRole('link', { name: 'Open the incident' }).click();
  await p1.locator('button.transition[data-to="CLOSED"]').click();
  await p1.locator('.detail-head .badge.status').filter({ hasText: 'Closed' }).waitFor();
  await p1.locator('.role[data-role="SCRIBE"] button').first().waitFor({ state: 'detached' });
  await waitText(p1, '.role[data-role="SCRIBE"] .role-holder', ONE.name);
  await waitText(p1, '#metric-open-now .stat-value', '0');
  await waitText(p1, '#metric-total .stat-value', '1');
  await waitText(p1, '#metric-action-items .stat-value', '1');
  await p1.locator('#metric-action-items').filter({ hasText: '1 overdue' }).waitFor();
  if ((await text(p1.locator('#metric-ttr .stat-value'))) === '—') fail('no time to resolve after resolving');
  if ((await text(p1.locator('#metric-ttm .stat-value'))) === '—') fail('no time to mitigate after mitigating');
  if ((await p1.locator('.chart rect').count()) < 1) fail('the weekly chart draws no bar');

  step('a filter survives a reload');
  await p2.goto(`${base}/desk/incidents`);
  await p2.locator('.list-status').filter({ hasText: 'No incidents' }).waitFor();
  await p2.locator('.chip-closed').click();
  await p2.locator('#severity-filter').selectOption('SEV2');
  await p2.locator('#search').fill('CHECKOUT');
  await p2.waitForFunction(() => location.search.includes('q=CHECKOUT'));
  await p2.locator(`#incident-list a[data-id="${id}"]`).waitFor();
  await p2.reload();
  await p2.locator(`#incident-list a[data-id="${id}"]`).waitFor();
  const search = new URLSearchParams(new URL(p2.url()).search);
  if (search.get('status') !== 'OPEN,MITIGATING,CLOSED' || search.get('severity') !== 'SEV2') fail(`filters in the address: ${p2.url()}`);
  if ((await p2.locator('.chip-closed').getAttribute('aria-pressed')) !== 'true') fail('the Closed chip is off after the reload');
  if ((await p2.locator('#severity-filter').inputValue()) !== 'SEV2') fail('the severity filter was lost');
  if ((await p2.locator('#search').inputValue()) !== 'CHECKOUT') fail('the search was lost');
  await p2.locator('.chip-closed .count').filter({ hasText: '1' }).waitFor();

  step('keys: / searches, ? shows help');
  await p2.locator('body').click({ position: { x: 5, y: 300 } });
  await p2.keyboard.press('/');
  if (!(await p2.evaluate(() => document.activeElement?.id === 'search'))) fail('/ does not focus the search');
  await p2.keyboard.press('Escape');
  await p2.keyboard.press('?');
  await p2.locator('#help[open]').waitFor();
  await p2.keyboard.press('Escape');

  step('the incidents screen passes axe; screenshots');
  await p2.locator(`#incident-list a[data-id="${id}"]`).click();
  await p2.locator('.events li').first().waitFor();
  await axe(p2, 'incidents');
  await screenshot(p2, 'incidents-1280.png');
  await p2.setViewportSize({ width: 390, height: 844 });
  await screenshot(p2, 'incident-390.png');
  await p2.goto(`${base}/desk/incidents`);
  await p2.locator('#metric-total .stat-value').waitFor();
  await axe(p2, 'incidents at 390 px');
  await screenshot(p2, 'incidents-390.png');
  await p2.goto(`${base}/desk/postmortems/${id}`);
  await p2.locator('#pm-rootCause').waitFor();
  await screenshot(p2, 'postmortems-390.png');
  await p2.goto(`${base}/desk/postmortems`);
  await p2.locator('.pm-table').waitFor();
  await axe(p2, 'postmortems at 390 px');

  step('declared SEV1, lowered to SEV3, resolved: no Close, the hint, and waiting for a postmortem');
  const api = async (query, variables) => {
    const response = await fetch(`${base}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${tokenOne}` },
      body: JSON.stringify({ query, variables }),
    });
    const body = await response.json();
    if (body.errors) fail(`${query}: ${JSON.stringify(body.errors)}`);
    return body.data;
  };
  const lowered = (await api('mutation { createIncident(input: { title: "Lowered before resolving", severity: SEV1 }) { id } }')).createIncident.id;
  await api('mutation($id: UUID!) { updateIncident(id: $id, input: { severity: SEV3 }) { id } }', { id: lowered });
  await api('mutation($id: UUID!) { transitionIncident(id: $id, to: RESOLVED) { id } }', { id: lowered });
  await p1.goto(`${base}/desk/incidents/${lowered}`);
  await p1.locator('.detail-head .badge.status').filter({ hasText: 'Resolved' }).waitFor();
  await p1.locator('.detail-head').filter({ hasText: 'SEV3' }).waitFor();
  await p1.locator('button.transition[data-to="OPEN"]').waitFor();
  if (await p1.locator('button.transition[data-to="CLOSED"]').count()) fail('Close offered for an incident that was SEV1');
  await p1.locator('.controls p.hint:not([hidden])').filter({ hasText: 'Closing a SEV1 incident needs a postmortem' }).waitFor();
  await p1.goto(`${base}/desk/postmortems`);
  await p1.locator(`#waiting-list li[data-id="${lowered}"]`).filter({ hasText: 'Lowered before resolving' }).waitFor();
  if (await p1.locator(`#waiting-list li[data-id="${id}"]`).count()) fail('a closed incident with its postmortem is listed as waiting');

  if (idp) {
    step('one signs out: the session ends on the server, then at the provider');
    await p1.goto(`${base}/desk/incidents`);
    await p1.locator('#connection[data-state="live"]').waitFor();
    await p1.getByRole('button', { name: 'Sign out' }).click();
    await p1.waitForURL((url) => url.origin === idpOrigin, { waitUntil: 'commit' });
    const me = await p1.request.get(`${base}/auth/me`);
    if (me.status() !== 401) fail(`/auth/me after signing out: ${me.status()}`);
  }

  step('no request left the origin, no script or CSP error');
  if (problems.length) fail(problems.join('\n'));
  console.log('ok');
} catch (error) {
  console.error(`FAILED: ${error.message}`);
  if (problems.length) console.error(problems.join('\n'));
  for (const w of [one, two]) {
    if (w) await w.page.screenshot({ path: path.join(shots, `failure-${w.name}.png`), fullPage: true }).catch(() => {});
  }
  await browser.close();
  process.exit(1);
}
await browser.close();
