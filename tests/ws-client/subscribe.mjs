// Subscribes to an incident's timeline with the graphql-ws client and prints one line per
// event ("seq N"), then exits 0 after `count` events. Usage:
//   node subscribe.mjs <ws-url> <token> <incidentId> <count>
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, token, incidentId, count] = process.argv.slice(2);
const want = Number(count);
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: `Bearer ${token}` },
  retryAttempts: 0,
});

const timer = setTimeout(() => {
  console.error('timed out');
  process.exit(2);
}, 30000);

let seen = 0;
client.subscribe(
  {
    query: 'subscription ($id: UUID!) { incidentEvents(incidentId: $id) { sequence content } }',
    variables: { id: incidentId },
  },
  {
    next: (result) => {
      if (result.errors) {
        console.error(JSON.stringify(result.errors));
        process.exit(1);
      }
      seen += 1;
      console.log(`seq ${result.data.incidentEvents.sequence}`);
      if (seen === want) {
        clearTimeout(timer);
        client.dispose();
        process.exit(0);
      }
    },
    error: (err) => {
      console.error('error', err instanceof Error ? err.message : JSON.stringify(err));
      process.exit(1);
    },
    complete: () => {},
  },
);
