// Opens GraphiQL in headless Chromium against a running incidentd (started by
// tests/api/graphiql.rs in dev mode, with --graphiql-assets): the page must load its pinned
// files, learn the schema by introspection, and run a query, with no Content-Security-Policy
// violation, no script error and no request to another origin.
//
// node graphiql.mjs <GraphiQL url>
// Prints one line per step, then `ok`; exits non-zero with the reason on the first failure.

import { chromium } from 'playwright-core';

const [address] = process.argv.slice(2);
const origin = new URL(address).origin;
const TIMEOUT = 30000;
const problems = [];
const step = (what) => console.log(`step: ${what}`);

const browser = await chromium.launch({
  executablePath: process.env.INCIDENTD_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--disable-component-update'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  context.on('request', (request) => {
    const url = new URL(request.url());
    if (!['data:', 'blob:'].includes(url.protocol) && url.origin !== origin) {
      problems.push(`requested another origin: ${request.url()}`);
    }
  });
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()} (${message.location().url})`);
  });
  page.on('response', (response) => {
    if (response.status() >= 400) problems.push(`${response.status()} for ${response.url()}`);
  });
  page.on('pageerror', (error) => problems.push(`script error: ${error.message}`));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
    });
  });

  const introspection = page.waitForResponse(
    (r) => r.url().startsWith(address) && r.request().method() === 'POST' && (r.request().postData() || '').includes('__schema'),
  );
  const response = await page.goto(address);
  if (response.status() !== 200) throw new Error(`GraphiQL answered ${response.status()}`);
  step('page loaded');

  const schema = await (await introspection).json();
  if (!schema.data?.__schema?.types?.some((t) => t.name === 'Incident')) {
    throw new Error(`introspection failed: ${JSON.stringify(schema).slice(0, 500)}`);
  }
  step('schema learned by introspection');

  await page.locator('.graphiql-query-editor .CodeMirror').waitFor();
  await page.evaluate(() => {
    document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue('{ viewer { role } }');
  });
  await page.locator('.graphiql-execute-button').click();
  await page.locator('.graphiql-response').getByText('"admin"').waitFor();
  step('query ran with the dev token');

  // The docs explorer shows the schema it learned.
  await page.locator('[aria-label="Show Documentation Explorer"]').click();
  await page.locator('.graphiql-doc-explorer').getByText('Query').first().waitFor();
  step('docs explorer shows the schema');

  // A dialog: its scroll lock adds a style element, which the policy allows by hash.
  await page.locator('[aria-label="Open settings dialog"]').click();
  await page.getByRole('dialog').waitFor();
  await page.keyboard.press('Escape');
  step('settings dialog opened and closed');

  if (problems.length) throw new Error(problems.join('\n'));

  // The policy is in force: a script injected into the page is refused, and says so.
  const refused = await page.evaluate(() => new Promise((resolve) => {
    document.addEventListener('securitypolicyviolation', (e) => resolve(e.effectiveDirective), { once: true });
    const script = document.createElement('script');
    script.textContent = 'window.injected = true;';
    document.body.append(script);
  }));
  if (refused !== 'script-src-elem' || (await page.evaluate(() => window.injected))) {
    throw new Error(`an injected script was not refused (${refused})`);
  }
  step('an injected inline script is refused by the policy');
  console.log('ok');
} catch (error) {
  console.log(`failed: ${error.message}`);
  if (problems.length) console.log(problems.join('\n'));
  process.exitCode = 1;
} finally {
  await browser.close();
}
