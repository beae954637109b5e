// A real OpenID Provider (panva's oidc-provider, a certified implementation) for the sign-in
// tests. It listens on a free loopback port and prints `port <n>`; then it reads one line of
// JSON from stdin with what the test knows only later (the redirect URIs of the server under
// test, the organization, token lifetimes, and how to misbehave), starts, and prints `ready`.
//
// Misbehaviours (`tamper`), each re-signing the ID token the token endpoint returns with the
// provider's own key, so only the claim under test is wrong:
//   "iss"     the issuer is another one
//   "aud"     the token was issued to another client
//   "expired" it expired two minutes ago
//   "rotate"  it is signed with a new key that the JWKS publishes only from now on
import http from 'node:http';
import readline from 'node:readline';

import Provider from 'oidc-provider';
import { SignJWT, decodeJwt, exportJWK, generateKeyPair } from 'jose';

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;
console.log(`port ${port}`);

const line = await new Promise((resolve) => {
  const input = readline.createInterface({ input: process.stdin });
  input.once('line', (text) => { input.close(); resolve(text); });
});
const test = JSON.parse(line);

async function key(kid) {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
  return { privateKey, jwk };
}
const current = await key('k1');
const next = await key('k2');
let rotated = false;

// The people who can sign in: the dev login form accepts any password.
const people = {
  alice: { name: 'Alice Admin', email: 'alice@example.test', groups: ['sre-admins', 'oncall'], org: test.org },
  bob: { name: 'Bob Responder', email: 'bob@example.test', groups: 'oncall', org: test.org },
  carol: { name: 'Carol Marketing', email: 'carol@example.test', groups: ['marketing'], org: test.org },
  dave: { name: 'Dave Nowhere', email: 'dave@example.test', groups: ['oncall'] },
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'incidentd',
      client_secret: 'incidentd-test-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      redirect_uris: test.redirect_uris,
      post_logout_redirect_uris: test.post_logout_redirect_uris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
    {
      client_id: 'other',
      client_secret: 'other-client-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      redirect_uris: ['http://127.0.0.1:9/other'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
  ],
  jwks: { keys: [current.jwk, next.jwk] },
  cookies: { keys: ['incidentd-test-provider-cookie-key'] },
  pkce: { required: () => true, methods: ['S256'] },
  claims: {
    openid: ['sub'],
    profile: ['name', 'groups', 'org'],
    email: ['email', 'email_verified'],
  },
  // Scope claims go into the ID token itself, which is what the server reads.
  conformIdTokenClaims: false,
  ttl: { IdToken: Number(test.id_token_ttl || 3600) },
  async findAccount(ctx, id) {
    const person = people[id];
    if (!person) return undefined;
    return {
      accountId: id,
      async claims() {
        const claims = { sub: id, name: person.name, email: person.email, email_verified: true, groups: person.groups };
        if (person.org) claims.org = person.org;
        return claims;
      },
    };
  },
});

provider.use(async (ctx, nextMiddleware) => {
  await nextMiddleware();
  // The development pages load a web font from the internet; these machines have none.
  if (typeof ctx.body === 'string' && ctx.body.includes('fonts.googleapis.com')) {
    ctx.body = ctx.body.replace(/@import url\(https:\/\/fonts\.googleapis\.com[^)]*\);?/g, '');
  }
  // The JWKS shows the second key only once it signs something.
  if (ctx.path === '/jwks' && ctx.body && Array.isArray(ctx.body.keys) && !rotated) {
    ctx.body = { keys: ctx.body.keys.filter((k) => k.kid === 'k1') };
  }
  if (ctx.path === '/token' && ctx.status === 200 && ctx.body && ctx.body.id_token && test.tamper) {
    const claims = decodeJwt(ctx.body.id_token);
    let signer = current;
    const now = Math.floor(Date.now() / 1000);
    switch (test.tamper) {
      case 'iss': claims.iss = `http://127.0.0.1:${port}/elsewhere`; break;
      case 'aud': claims.aud = 'other'; claims.azp = 'other'; break;
      case 'expired': claims.iat = now - 600; claims.exp = now - 120; break;
      case 'rotate': rotated = true; signer = next; break;
      default: throw new Error(`unknown tamper ${test.tamper}`);
    }
    ctx.body.id_token = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: signer.jwk.kid })
      .sign(signer.privateKey);
  }
});

provider.on('server_error', (ctx, err) => console.error('server_error', err));
server.on('request', provider.callback());
console.log('ready');
