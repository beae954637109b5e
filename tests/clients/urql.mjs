// urql as a frontend sets it up: the persisted exchange (APQ, hashed queries over GET), fetch for
// queries and mutations, and subscriptions through `subscriptionExchange` over either graphql-ws
// (WebSocket) or the graphql-sse client (Server-Sent Events, distinct connections).
// Usage: node urql.mjs HTTP_URL LIVE_URL TOKEN ws|sse
import { Client, fetchExchange, gql, subscriptionExchange } from '@urql/core';
import { persistedExchange } from '@urql/exchange-persisted';
import { createClient as createWsClient } from 'graphql-ws';
import { createClient as createSseClient } from 'graphql-sse';
import WebSocket from 'ws';
import { TIMELINE, run, runWorkflow } from './workflow.mjs';

const [httpUrl, liveUrl, token, transport] = process.argv.slice(2);
const authorization = `Bearer ${token}`;

// The timeline resumes from its own cursor, so neither transport retries by itself.
const live =
  transport === 'ws'
    ? createWsClient({
        url: liveUrl.replace(/^http/, 'ws'),
        webSocketImpl: WebSocket,
        connectionParams: { Authorization: authorization },
        retryAttempts: 0,
      })
    : createSseClient({ url: liveUrl, headers: { Authorization: authorization }, retryAttempts: 0 });

let hashOnlyGets = 0;
const client = new Client({
  url: httpUrl,
  fetchOptions: { headers: { authorization } },
  fetch: (url, init) => {
    if ((init.method ?? 'GET') === 'GET' && !String(url).includes('query=')) hashOnlyGets += 1;
    return fetch(url, init);
  },
  exchanges: [
    persistedExchange({ preferGetForPersistedQueries: true }),
    fetchExchange,
    subscriptionExchange({
      forwardSubscription(request) {
        const input = { ...request, query: request.query || '' };
        return {
          subscribe(sink) {
            const unsubscribe = live.subscribe(input, sink);
            return { unsubscribe };
          },
        };
      },
    }),
  ],
});

const ops = {
  async exec(document, variables) {
    const query = gql(document);
    const isMutation = query.definitions[0].operation === 'mutation';
    const result = isMutation
      ? await client.mutation(query, variables).toPromise()
      : await client.query(query, variables, { requestPolicy: 'network-only' }).toPromise();
    if (result.error) throw new Error(result.error.message);
    return result.data;
  },
};

const timeline = {
  follow(variables, onEvent, onEnd) {
    let ended = false;
    const end = () => {
      if (!ended) {
        ended = true;
        onEnd();
      }
    };
    const { unsubscribe } = client.subscription(gql(TIMELINE), variables).subscribe((result) => {
      if (result.error) return end();
      onEvent(result.data.incidentEvents);
    });
    return () => {
      ended = true;
      unsubscribe();
    };
  },
};

run(async () => {
  const summary = await runWorkflow({ ops, live: timeline, name: `urql over ${transport}` });
  if (hashOnlyGets < 1) throw new Error('urql sent no hash-only GET');
  return { ...summary, transport, hashOnlyGets };
});
