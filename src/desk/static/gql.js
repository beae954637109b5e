// The desk's only way to the server: GraphQL over HTTP on /graphql for queries and mutations,
// and one WebSocket speaking graphql-transport-ws for subscriptions, which reconnects by itself
// and tells its subscribers so they can refetch (or resume from their cursor). A caller is a
// pasted bearer token, or the browser's sign-in session (its cookie, with the CSRF token that
// /auth/me gives on every write).

const TOKEN_KEY = 'incidentd.token';

const listeners = { signout: new Set(), connection: new Set(), reconnected: new Set() };

export function on(event, fn) {
  listeners[event].add(fn);
  return () => listeners[event].delete(fn);
}

function emit(event, ...args) {
  for (const fn of [...listeners[event]]) fn(...args);
}

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

let providersAnswer = null;
/** What `/auth/providers` says (is sign-in on, the provider's name, where logout goes): asked once per page. */
export function providers() {
  providersAnswer ||= fetch('/auth/providers').then((r) => r.json()).catch((e) => {
    providersAnswer = null;
    throw e;
  });
  return providersAnswer;
}

/** The browser's sign-in session, when it has one: `/auth/me`'s answer (who, CSRF token). */
export const session = {
  me: null,
  async load() {
    try {
      // Without an identity provider there are no sessions: no need to ask (and be refused).
      if (!(await providers()).oidc) return (this.me = null);
      const response = await fetch('/auth/me', { credentials: 'same-origin' });
      this.me = response.ok ? await response.json() : null;
    } catch {
      this.me = null;
    }
    return this.me;
  },
};

/** Whether someone is signed in, by token or by session. */
export function signedIn() {
  return Boolean(token.get() || session.me);
}

/** A bearer token speaks for itself; a session's cookie goes along, with its CSRF token. */
function credentials() {
  const bearer = token.get();
  if (bearer) return { authorization: `Bearer ${bearer}` };
  if (session.me) return { 'x-csrf-token': session.me.csrfToken };
  return {};
}

/** Ends the sign-in session everywhere, then signs out at the provider too when it can. */
export async function endSession() {
  let to = '/desk/incidents';
  try {
    await fetch('/auth/logout', {
      method: 'POST',
      credentials: 'same-origin',
      redirect: 'manual',
      headers: { 'x-csrf-token': session.me ? session.me.csrfToken : '' },
    });
    const { logoutUrl } = await providers();
    if (logoutUrl) to = logoutUrl;
  } catch {
    // The desk forgets the session either way.
  }
  signOut('You signed out.');
  location.assign(to);
}

/** A failed operation: the first error's message and code, and all of them. */
export class GqlError extends Error {
  constructor(errors) {
    super(errors[0]?.message || 'The request failed.');
    this.errors = errors;
    this.code = errors[0]?.extensions?.code || 'UNKNOWN';
    this.field = errors[0]?.extensions?.field;
  }
}

/** Ends the session: the token is forgotten and the sign-in form says why. */
export function signOut(reason) {
  token.clear();
  session.me = null;
  live.stop();
  emit('signout', reason);
}

export async function gql(query, variables = {}) {
  let response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      credentials: 'same-origin',
      headers: {
        'content-type': 'application/json',
        accept: 'application/graphql-response+json, application/json;q=0.9',
        ...credentials(),
      },
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    throw new GqlError([{
      message: 'The server cannot be reached. Check the connection; nothing was changed.',
      extensions: { code: 'NETWORK' },
    }]);
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new GqlError([{
      message: `The server answered ${response.status} without a readable body.`,
      extensions: { code: 'HTTP' },
    }]);
  }
  if (body.errors && body.errors.length) {
    const error = new GqlError(body.errors);
    if (error.code === 'UNAUTHENTICATED') {
      signOut(token.get()
        ? `The server refused the token: ${error.message}`
        : 'Your session has ended. Sign in again.');
    }
    throw error;
  }
  return body.data;
}

/** One WebSocket for every subscription of the page. */
class Live {
  constructor() {
    this.subs = new Map();
    this.nextId = 1;
    this.ws = null;
    this.state = 'idle';
    this.attempt = 0;
    this.connectedOnce = false;
    this.stopped = true;
    this.retryTimer = null;
    this.pingTimer = null;
    window.addEventListener('online', () => this.retryNow());
    // The socket is as good as dead once the machine is offline: say so now and reconnect
    // (resuming every cursor) as soon as it is back, rather than wait for a ping to go missing.
    window.addEventListener('offline', () => { if (this.ws) this.ws.close(4000, 'offline'); });
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connectedOnce = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.ws) this.ws.close(1000, 'signed out');
    this.ws = null;
    this.setState('idle');
  }

  retryNow() {
    if (this.stopped || this.state === 'live' || this.state === 'connecting') return;
    clearTimeout(this.retryTimer);
    this.connect();
  }

  setState(state, detail) {
    this.state = state;
    emit('connection', state, detail);
  }

  connect() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/graphql`, 'graphql-transport-ws');
    this.ws = ws;
    this.setState('connecting');
    let awaitingPong = false;
    ws.addEventListener('open', () => {
      // A session needs no payload: the socket carries its cookie.
      const bearer = token.get();
      ws.send(JSON.stringify({
        type: 'connection_init',
        payload: bearer ? { Authorization: `Bearer ${bearer}` } : {},
      }));
    });
    ws.addEventListener('message', (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      const sub = message.id ? this.subs.get(message.id) : null;
      switch (message.type) {
        case 'connection_ack': {
          this.attempt = 0;
          this.setState('live');
          for (const [id, s] of this.subs) this.send(id, s);
          if (this.connectedOnce) emit('reconnected');
          this.connectedOnce = true;
          // A connection a network silently dropped never errors by itself: ping, and give up
          // on it when the previous ping went unanswered.
          clearInterval(this.pingTimer);
          this.pingTimer = setInterval(() => {
            if (awaitingPong) { ws.close(4000, 'no pong'); return; }
            awaitingPong = true;
            ws.send(JSON.stringify({ type: 'ping' }));
          }, 20000);
          break;
        }
        case 'ping':
          ws.send(JSON.stringify({ type: 'pong' }));
          break;
        case 'pong':
          awaitingPong = false;
          break;
        case 'next':
          if (sub) sub.handlers.next(message.payload);
          break;
        case 'error':
          if (sub) {
            const error = new GqlError(message.payload || []);
            if (error.code === 'SUBSCRIBER_LAGGED') {
              // The feed cannot replay: refetch, and subscribe again.
              this.send(message.id, sub);
              emit('reconnected');
            } else if (sub.handlers.error) {
              sub.handlers.error(error);
            }
          }
          break;
        case 'complete':
          if (sub && sub.handlers.complete) sub.handlers.complete();
          break;
        default:
          break;
      }
    });
    ws.addEventListener('close', (event) => {
      clearInterval(this.pingTimer);
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (event.code === 4401 || event.code === 4403) {
        signOut('The server refused your token for live updates. Sign in again.');
        return;
      }
      const delay = Math.min(15000, 1000 * 2 ** this.attempt) * (0.75 + Math.random() / 2);
      this.attempt += 1;
      this.setState('offline', Math.round(delay / 1000));
      this.retryTimer = setTimeout(() => this.connect(), delay);
    });
  }

  send(id, sub) {
    if (!this.ws || this.state !== 'live') return;
    this.ws.send(JSON.stringify({
      type: 'subscribe',
      id,
      payload: { query: sub.query, variables: sub.variables() },
    }));
  }

  /**
   * Subscribes now and again after every reconnect; `variables` is called each time, so a
   * timeline resumes after the last sequence it has. Returns the unsubscribe function.
   */
  subscribe(query, variables, handlers) {
    const id = String(this.nextId++);
    const sub = { query, variables, handlers };
    this.subs.set(id, sub);
    this.send(id, sub);
    return () => {
      if (!this.subs.delete(id)) return;
      if (this.ws && this.state === 'live') {
        this.ws.send(JSON.stringify({ type: 'complete', id }));
      }
    };
  }
}

export const live = new Live();

/** An error as a sentence for the person at the desk. */
export function describe(error) {
  if (!(error instanceof GqlError)) return `Something went wrong: ${error && error.message ? error.message : error}`;
  switch (error.code) {
    case 'FORBIDDEN':
      return `Your role does not allow this: ${error.message}`;
    case 'NOT_FOUND':
      return 'Not found: it does not exist, or it belongs to another organization.';
    case 'DATABASE_UNAVAILABLE':
      return 'The server cannot reach its database right now. Try again in a moment.';
    case 'BUSY':
      return 'The server is busy with this incident. Try again.';
    case 'INTERNAL':
      return `The server failed (request ${error.errors[0]?.extensions?.requestId || 'unknown'}). Try again, or tell whoever runs incidentd.`;
    default:
      return error.message;
  }
}
