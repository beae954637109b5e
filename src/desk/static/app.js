// The desk's entry: sign-in, the two screens and their addresses, the connection indicator,
// the declare dialog and the keys that work everywhere.

import { h, replace, typing, toast } from './dom.js';
import {
  gql, live, on, token, session, signedIn, signOut, endSession, describe, GqlError, providers,
} from './gql.js';
import * as incidents from './incidents.js';
import * as postmortems from './postmortems.js';
import * as webhooks from './webhooks.js';

const main = document.getElementById('main');
let current = null; // { screen, view }
let viewer = null;

const SCREENS = [
  { screen: incidents, pattern: /^\/desk\/incidents(?:\/([^/]+))?\/?$/, nav: 'nav-incidents' },
  { screen: postmortems, pattern: /^\/desk\/postmortems(?:\/([^/]+))?\/?$/, nav: 'nav-postmortems' },
  { screen: webhooks, pattern: /^\/desk\/settings\/webhooks()\/?$/, nav: 'nav-webhooks' },
];

/** Goes to a desk address without reloading; `replace` keeps the history entry. */
export function navigate(url, { replace: replaceEntry = false } = {}) {
  if (replaceEntry) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  route();
}

function route() {
  if (!signedIn()) return;
  const path = location.pathname;
  const match = SCREENS.find((s) => s.pattern.test(path));
  if (!match) {
    navigate('/desk/incidents', { replace: true });
    return;
  }
  const id = decodeURIComponent(path.match(match.pattern)[1] || '') || null;
  const params = { id, query: new URLSearchParams(location.search) };
  for (const s of SCREENS) {
    const link = document.getElementById(s.nav);
    if (s === match) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (current && current.screen === match.screen) {
    current.view.update(params);
    return;
  }
  if (current) current.view.unmount();
  clearMain();
  current = { screen: match.screen, view: match.screen.mount(main, params) };
}

function clearMain() {
  replace(main);
}

// Links inside the desk change the screen without a reload.
document.addEventListener('click', (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest('a[href]');
  if (!link || link.target || link.origin !== location.origin || !link.pathname.startsWith('/desk/')) return;
  event.preventDefault();
  navigate(link.pathname + link.search);
});
window.addEventListener('popstate', route);

// The connection indicator.
const connection = document.getElementById('connection');
on('connection', (state, detail) => {
  connection.dataset.state = state;
  connection.textContent = {
    idle: 'Not connected',
    connecting: 'Connecting…',
    live: 'Live',
    offline: `Offline — retrying in ${detail} s`,
  }[state];
});

// Sign-in.
on('signout', (reason) => {
  viewer = null;
  if (current) current.view.unmount();
  current = null;
  showSignIn(reason);
});

document.getElementById('sign-out').addEventListener('click', () => {
  if (session.me && !token.get()) endSession();
  else signOut('You signed out.');
});

// Why the identity provider's sign-in did not work, by the reason the server gives.
const SIGNIN_ERRORS = {
  state_mismatch: 'The sign-in could not be matched to this browser (it expired, or came from another tab). Try again.',
  provider_denied: 'The identity provider did not sign you in.',
  provider_unavailable: 'The identity provider cannot be reached right now. Try again in a moment.',
  code_rejected: 'The identity provider refused to complete this sign-in. Try again.',
  id_token_missing: 'The identity provider sent no ID token.',
  id_token_signature: 'The identity provider’s answer has a signature that does not verify.',
  id_token_issuer: 'The identity provider’s answer names another issuer.',
  id_token_audience: 'The identity provider’s answer was issued to another application.',
  id_token_nonce: 'The identity provider’s answer belongs to another sign-in.',
  id_token_expired: 'The identity provider’s answer has expired. Check this machine’s clock, then try again.',
  id_token_invalid: 'The identity provider’s answer could not be read.',
  no_organization: 'Your account at the identity provider names no organization on this desk. Ask whoever runs incidentd.',
  no_role: 'Your groups at the identity provider give you no role on this desk. Ask whoever runs incidentd.',
};

/** The `signin_error` the server sent back here, as a sentence; taken off the address. */
function signinError() {
  const params = new URLSearchParams(location.search);
  const reason = params.get('signin_error');
  if (!reason) return null;
  params.delete('signin_error');
  const rest = params.toString();
  history.replaceState(null, '', location.pathname + (rest ? `?${rest}` : ''));
  return `Sign-in failed: ${SIGNIN_ERRORS[reason] || reason}`;
}

/** "Sign in with …" when the server signs people in with an identity provider. */
async function providerButton() {
  try {
    const { oidc, name } = await providers();
    if (!oidc) return null;
    const next = location.pathname + location.search;
    return h('a.button.primary.provider', {
      id: 'sign-in-provider',
      href: `/auth/login?next=${encodeURIComponent(next)}`,
    }, `Sign in with ${name}`);
  } catch {
    return null;
  }
}

async function showSignIn(reason) {
  document.getElementById('sign-out').hidden = true;
  document.getElementById('whoami').hidden = true;
  const field = h('textarea#token', {
    id: 'token', rows: 5, required: true, autocomplete: 'off', spellcheck: 'false',
    'aria-describedby': 'token-hint',
  });
  const error = h('p.error-box', { role: 'alert', hidden: !reason }, reason || '');
  const hint = h('p.hint', { id: 'token-hint' },
    'Paste a bearer token (a JWT from “incidentd token” or your identity provider). ',
    'It is kept in this browser tab only.');
  const button = h('button.primary', { type: 'submit' }, 'Sign in');
  const form = h('form.signin', {
    onsubmit: async (event) => {
      event.preventDefault();
      const value = field.value.trim().replace(/^Bearer\s+/i, '');
      if (!value) {
        error.hidden = false;
        error.textContent = 'Paste a token first.';
        field.focus();
        return;
      }
      button.disabled = true;
      // What went wrong before is not this attempt's answer.
      error.hidden = true;
      token.set(value);
      try {
        await start();
      } catch (e) {
        token.clear();
        error.hidden = false;
        error.textContent = e instanceof GqlError && e.code === 'UNAUTHENTICATED'
          ? `The server refused this token: ${e.message}`
          : describe(e);
        button.disabled = false;
        field.focus();
      }
    },
  },
  h('h1', {}, 'Sign in to the desk'),
  error,
  h('label', { for: 'token' }, 'Bearer token'),
  field,
  hint,
  button);
  replace(main, h('section.signin-page', {}, form));
  const provider = await providerButton();
  if (provider) {
    form.querySelector('h1').after(provider, h('p.hint', {}, 'Or paste a bearer token:'));
    provider.focus();
  } else {
    field.focus();
  }
  try {
    const response = await fetch('/desk/session.json');
    const session = await response.json();
    if (session.devToken && !field.value) {
      field.value = session.devToken;
      hint.append(h('span.dev', {}, ' Dev mode: filled in with the demo organization’s token.'));
    }
  } catch {
    // Without the hint the form still works.
  }
}

async function start() {
  const data = await gql('{ viewer { userId organizationId role } }');
  viewer = data.viewer;
  document.body.dataset.role = viewer.role;
  document.getElementById('sign-out').hidden = false;
  const whoami = document.getElementById('whoami');
  const person = !token.get() && session.me ? session.me.person : null;
  whoami.hidden = !person;
  whoami.textContent = person ? person.name || person.email || '' : '';
  whoami.title = person && person.email ? `${person.email} · ${viewer.role}` : viewer.role;
  live.start();
  route();
}

// The declare dialog.
const declare = document.getElementById('declare');
const declareForm = document.getElementById('declare-form');
const declareError = document.getElementById('declare-error');

export function openDeclare() {
  if (!signedIn() || declare.open) return;
  declareForm.reset();
  declareError.hidden = true;
  declare.showModal();
  document.getElementById('declare-title-input').focus();
}

document.getElementById('declare-cancel').addEventListener('click', () => declare.close());
declareForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = new FormData(declareForm);
  const tickets = String(form.get('tickets') || '')
    .split(',').map((t) => t.trim()).filter(Boolean);
  const submit = declareForm.querySelector('button[type=submit]');
  submit.disabled = true;
  try {
    const data = await gql(
      'mutation($input: CreateIncidentInput!) { createIncident(input: $input) { id } }',
      {
        input: {
          // A retry after a lost answer returns the same incident instead of a second one.
          id: crypto.randomUUID(),
          title: String(form.get('title') || ''),
          severity: String(form.get('severity')),
          linkedTicketIds: tickets,
        },
      },
    );
    declare.close();
    toast('Incident declared.');
    const query = location.pathname.startsWith('/desk/incidents') ? location.search : '';
    navigate(`/desk/incidents/${data.createIncident.id}${query}`);
  } catch (e) {
    declareError.hidden = false;
    declareError.textContent = describe(e);
  } finally {
    submit.disabled = false;
  }
});

// Keys.
const help = document.getElementById('help');
document.getElementById('help-button').addEventListener('click', () => help.showModal());
document.addEventListener('keydown', (event) => {
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
  if (document.querySelector('dialog[open]')) return;
  if (typing(event.target)) {
    if (event.key === 'Escape') event.target.blur();
    return;
  }
  if (event.key === '?') {
    event.preventDefault();
    help.showModal();
  } else if (event.key === 'n' && signedIn()) {
    event.preventDefault();
    openDeclare();
  } else if (current && current.view.key) {
    current.view.key(event);
  }
});

// Start: with a token from earlier in this tab, straight in; otherwise the sign-in form.
if (location.pathname === '/desk' || location.pathname === '/desk/') {
  history.replaceState(null, '', '/desk/incidents');
}
function enter() {
  start().catch((e) => {
    if (e instanceof GqlError && e.code === 'UNAUTHENTICATED') return; // signOut already showed the form
    token.clear();
    showSignIn(describe(e));
  });
}
const refused = signinError();
if (token.get()) {
  enter();
} else {
  // A session cookie (after signing in with the identity provider) lets the desk straight in.
  session.load().then((me) => (me ? enter() : showSignIn(refused)));
}
