// Drives /desk/settings/webhooks in headless Chromium against a running incidentd (started by
// tests/api/webhooks.rs): an admin adds an endpoint (its description is hostile text), reads the
// secret shown once, sends a test message, watches it delivered in the log, sends it again; a
// responder is refused. Screenshots at 1280 and 390 px.
//
// node webhooks.mjs <base url> <admin token> <responder token> <receiver url> <screenshot dir>
// Prints one line per step and `secret: whsec_…`; exits non-zero with the reason on a failure.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

const [base, adminToken, responderToken, receiver, shots] = process.argv.slice(2);
const origin = new URL(base).origin;
const TIMEOUT = 15000;
const XSS = '<img src=x onerror=alert(1)> pager relay';
mkdirSync(shots, { recursive: true });
const problems = [];
const step = (what) => console.log(`step: ${what}`);
const fail = (what) => { throw new Error(what); };

const browser = await chromium.launch({
  executablePath: process.env.INCIDENTD_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--disable-component-update'],
});

async function window(name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  context.on('request', (request) => {
    const url = new URL(request.url());
    if (!['data:', 'blob:'].includes(url.protocol) && url.origin !== origin) {
      problems.push(`${name} requested another origin: ${request.url()}`);
    }
  });
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`${name} console error: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`${name} script error: ${error.message}`));
  page.on('dialog', async (dialog) => {
    problems.push(`${name} got a JavaScript dialog (XSS?): ${dialog.message()}`);
    await dialog.dismiss();
  });
  return { context, page };
}

async function signIn(page, token) {
  await page.goto(`${base}/desk/settings/webhooks`);
  await page.locator('#token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** Clicks "Reload log" until the endpoint's log has a delivery in `status`. */
async function waitDelivery(page, status, count = 1) {
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    const rows = await page.locator(`tr.wh-delivery[data-status="${status}"]`).count();
    if (rows >= count) return;
    if (Date.now() > deadline) fail(`no ${count} delivery ${status} in the log`);
    await page.getByRole('button', { name: 'Reload log' }).click();
    await page.waitForTimeout(200);
  }
}

let admin;
try {
  admin = await window('admin');
  const page = admin.page;
  step('an admin opens the webhooks screen');
  await signIn(page, adminToken);
  await page.locator('h1#wh-title').waitFor();
  await page.locator('#nav-webhooks').waitFor({ state: 'visible' });

  step('adds an endpoint; the secret is shown once');
  await page.locator('#wh-url').fill(receiver);
  await page.locator('#wh-description').fill(XSS);
  await page.getByRole('button', { name: 'Add endpoint' }).click();
  const secret = (await page.locator('.wh-secret-value').textContent()).trim();
  if (!secret.startsWith('whsec_')) fail(`the secret reads ${secret}`);
  console.log(`secret: ${secret}`);
  const description = (await page.locator('.wh-endpoint .wh-description').textContent()).trim();
  if (description !== XSS) fail(`the description reads ${description}`);
  if (await page.locator('.wh-endpoint img').count()) fail('the description became HTML');

  step('sends a test message and sees it delivered');
  await page.getByRole('button', { name: 'Send test message' }).click();
  await waitDelivery(page, 'DELIVERED');
  const cells = await page.locator('tr.wh-delivery td').allTextContents();
  if (!cells.includes('webhook.test')) fail(`the log reads ${cells.join(' | ')}`);

  step('sends it again from the log');
  await page.locator('button.wh-replay').first().click();
  await page.locator('#toast').filter({ hasText: 'Queued again.' }).waitFor();
  await waitDelivery(page, 'DELIVERED');

  step('screenshots');
  await page.screenshot({ path: path.join(shots, 'webhooks-1280.png'), fullPage: true });
  await page.setViewportSize({ width: 390, height: 800 });
  await page.screenshot({ path: path.join(shots, 'webhooks-390.png'), fullPage: true });

  step('a responder is refused and sees no link');
  const responder = await window('responder');
  await signIn(responder.page, responderToken);
  await responder.page.locator('.wh-page .error-box').filter({ hasText: 'role' }).waitFor();
  if (await responder.page.locator('#nav-webhooks').isVisible()) fail('a responder sees the Webhooks link');

  if (problems.length) fail(problems.join('\n'));
  console.log('ok');
} catch (error) {
  console.error(`FAILED: ${error.message}`);
  if (problems.length) console.error(problems.join('\n'));
  if (admin) await admin.page.screenshot({ path: path.join(shots, 'failure-webhooks.png'), fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
}
await browser.close();
