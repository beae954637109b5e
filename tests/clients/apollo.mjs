// Apollo Client 3 as a frontend sets it up: HttpLink behind the persisted-queries link (APQ,
// hashed queries over GET), and for subscriptions GraphQLWsLink (graphql-ws) or the README's
// link over the graphql-sse client.
// Usage: node apollo.mjs HTTP_URL LIVE_URL TOKEN ws|sse
import { createHash } from 'node:crypto';
import {
  ApolloClient,
  ApolloLink,
  HttpLink,
  InMemoryCache,
  Observable,
  gql,
  split,
} from '@apollo/client/core/index.js';
import { createPersistedQueryLink } from '@apollo/client/link/persisted-queries/index.js';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions/index.js';
import { getMainDefinition } from '@apollo/client/utilities/index.js';
import { print } from 'graphql';
import { createClient as createSseClient } from 'graphql-sse';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { INCIDENT, TIMELINE, run, runWorkflow } from './workflow.mjs';

const [httpUrl, liveUrl, token, transport] = process.argv.slice(2);

// Every request Apollo sends, to show that APQ did its work.
const sent = [];
const recordingFetch = async (url, init) => {
  const response = await fetch(url, init);
  const body = init.body ? JSON.parse(init.body) : null;
  sent.push({ method: init.method ?? 'GET', hashOnly: !body?.query && !String(url).includes('query='), status: response.status });
  return response;
};

const http = createPersistedQueryLink({
  sha256: (text) => createHash('sha256').update(text).digest('hex'),
  useGETForHashedQueries: true,
}).concat(new HttpLink({ uri: httpUrl, headers: { authorization: `Bearer ${token}` }, fetch: recordingFetch }));

// The timeline resumes from its own cursor; neither transport retries by itself.
const ws = new GraphQLWsLink(
  createClient({
    url: liveUrl.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    connectionParams: { Authorization: `Bearer ${token}` },
    retryAttempts: 0,
  }),
);
const sse = createSseClient({
  url: liveUrl,
  headers: () => ({ Authorization: `Bearer ${token}` }),
  retryAttempts: 0,
});
const sseLink = new ApolloLink(
  (op) =>
    new Observable((sink) =>
      sse.subscribe(
        { ...op, query: print(op.query) },
        { next: sink.next.bind(sink), complete: sink.complete.bind(sink), error: sink.error.bind(sink) },
      ),
    ),
);

const client = new ApolloClient({
  link: split(
    ({ query }) => {
      const definition = getMainDefinition(query);
      return definition.kind === 'OperationDefinition' && definition.operation === 'subscription';
    },
    transport === 'sse' ? sseLink : ws,
    http,
  ),
  cache: new InMemoryCache(),
  defaultOptions: { query: { fetchPolicy: 'network-only' } },
});

const ops = {
  async exec(document, variables) {
    const query = gql(document);
    const isMutation = getMainDefinition(query).operation === 'mutation';
    const result = isMutation
      ? await client.mutate({ mutation: query, variables })
      : await client.query({ query, variables });
    if (result.errors?.length) throw new Error(JSON.stringify(result.errors));
    return result.data;
  },
};

const live = {
  follow(variables, onEvent, onEnd) {
    const subscription = client
      .subscribe({ query: gql(TIMELINE), variables, fetchPolicy: 'no-cache' })
      .subscribe({
        next: ({ data }) => onEvent(data.incidentEvents),
        error: () => onEnd(),
        complete: () => onEnd(),
      });
    return () => subscription.unsubscribe();
  },
};

run(async () => {
  const summary = await runWorkflow({ ops, live, name: `apollo over ${transport}` });
  // The workflow's query went out as a bare hash over GET, was not found, was registered by
  // a POST with the text; the same query again is a hash-only GET answered from the store.
  await ops.exec(INCIDENT, { id: summary.id });
  const hashedGets = sent.filter((s) => s.method === 'GET' && s.hashOnly);
  if (hashedGets.length < 2) throw new Error(`no hash-only GETs: ${JSON.stringify(sent)}`);
  const postsWithText = sent.filter((s) => s.method === 'POST' && !s.hashOnly).length;
  const hashOnly = sent.filter((s) => s.hashOnly).length;
  return { ...summary, transport, requests: sent.length, hashOnly, postsWithText };
});
