// The workflow every client script runs, written once against two small adapters:
// `ops.exec(document, variables)` runs a query or mutation and returns `data` (throwing on
// errors), and `live.follow(variables, onEvent, onEnd)` subscribes to incidentEvents and
// returns a stop function. The timeline follower keeps its cursor and resumes from it after
// the connection is cut (by the Rust test, which owns a proxy in front of the server).
import readline from 'node:readline';

export const DECLARE = `mutation Declare($input: CreateIncidentInput!) {
  createIncident(input: $input) { id status severity allowedTransitions }
}`;
export const NOTE = `mutation Note($id: UUID!, $content: String!) {
  addIncidentEvent(incidentId: $id, input: { content: $content }) { sequence eventType }
}`;
export const TRANSITION = `mutation Transition($id: UUID!, $to: IncidentStatus!, $note: String) {
  transitionIncident(id: $id, to: $to, note: $note) { id status resolvedAt }
}`;
export const POSTMORTEM = `mutation Postmortem($id: UUID!, $input: PostmortemInput!) {
  createPostmortem(incidentId: $id, input: $input) { id rootCause }
}`;
export const INCIDENT = `query Incident($id: UUID!) {
  incident(id: $id) {
    id title status severity resolvedAt
    events(first: 50) { totalCount nodes { sequence eventType content } }
    postmortem { rootCause actionItems { title done } }
  }
}`;
export const TIMELINE = `subscription Timeline($id: UUID!, $after: Int) {
  incidentEvents(incidentId: $id, afterSequence: $after) { sequence eventType content }
}`;

const WAIT_MS = 20_000;

function fail(message) {
  throw new Error(message);
}

/** Resolves when `predicate()` holds, re-checked whenever `notify` fires; rejects after WAIT_MS. */
function waiter() {
  const waiting = new Set();
  return {
    notify() {
      for (const w of [...waiting]) w();
    },
    until(predicate, what) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (predicate()) {
            waiting.delete(check);
            clearTimeout(timer);
            resolve();
          }
        };
        const timer = setTimeout(() => {
          waiting.delete(check);
          reject(new Error(`timed out waiting for ${what}`));
        }, WAIT_MS);
        waiting.add(check);
        check();
      });
    },
  };
}

const input = readline.createInterface({ input: process.stdin });
const lines = [];
const stdinWaiter = waiter();
input.on('line', (line) => {
  lines.push(line.trim());
  stdinWaiter.notify();
});

/** Asks the test to cut every live connection, and waits until it says it did. */
async function cut() {
  console.log('CUT');
  await stdinWaiter.until(() => lines.includes('cut'), 'the test to cut the connections');
  lines.splice(lines.indexOf('cut'), 1);
}

/** The timeline follower: every sequence seen, in order, across reconnects. */
function follower(live, id) {
  const seen = [];
  const w = waiter();
  let connected = false;
  let stop = null;
  let ends = 0;
  const subscribe = () => {
    const after = seen.length ? seen[seen.length - 1] : 0;
    connected = true;
    stop = live.follow(
      { id, after },
      (event) => {
        const last = seen.length ? seen[seen.length - 1] : 0;
        if (event.sequence !== last + 1) {
          fail(`timeline out of order: ${event.sequence} after ${last} (seen ${seen})`);
        }
        seen.push(event.sequence);
        w.notify();
      },
      () => {
        connected = false;
        ends += 1;
        w.notify();
      },
    );
  };
  subscribe();
  return {
    seen,
    resume: subscribe,
    stop: () => stop && stop(),
    has: (n, what) => w.until(() => seen.length >= n, `${what} (sequence ${n}, seen ${seen})`),
    disconnected: () => w.until(() => !connected && ends > 0, 'the cut to end the subscription'),
  };
}

/** Declare, note, mitigate, (cut) note and resolve while away, resume, postmortem, close. */
export async function runWorkflow({ ops, live, name }) {
  const declared = await ops.exec(DECLARE, {
    input: { title: `${name}: checkout is failing`, severity: 'SEV2', linkedTicketIds: ['OPS-1'] },
  });
  const id = declared.createIncident.id;
  if (declared.createIncident.status !== 'OPEN') fail(`declared: ${JSON.stringify(declared)}`);

  const timeline = follower(live, id);
  await ops.exec(NOTE, { id, content: 'error rate at 40%' });
  await timeline.has(1, 'the first note');
  await ops.exec(TRANSITION, { id, to: 'MITIGATING', note: 'rolling back' });
  await timeline.has(2, 'the mitigation');

  await cut();
  await timeline.disconnected();
  // While the follower is away: two more events it must not miss.
  await ops.exec(NOTE, { id, content: 'written while the dashboard was offline' });
  const resolved = await ops.exec(TRANSITION, { id, to: 'RESOLVED' });
  if (!resolved.transitionIncident.resolvedAt) fail(`resolved: ${JSON.stringify(resolved)}`);
  timeline.resume();
  await timeline.has(4, 'the events written while away');

  await ops.exec(POSTMORTEM, {
    id,
    input: {
      rootCause: 'a config change disabled the payment provider',
      actionItems: [{ title: 'alert on checkout error rate', owner: 'payments' }],
    },
  });
  await ops.exec(TRANSITION, { id, to: 'CLOSED' });
  await timeline.has(5, 'the close');
  timeline.stop();

  const { incident } = await ops.exec(INCIDENT, { id });
  const types = incident.events.nodes.map((e) => e.eventType).join(',');
  if (incident.status !== 'CLOSED') fail(`status ${incident.status}`);
  if (types !== 'note,status_changed,note,status_changed,status_changed') fail(`events ${types}`);
  if (incident.postmortem?.rootCause !== 'a config change disabled the payment provider') {
    fail(`postmortem ${JSON.stringify(incident.postmortem)}`);
  }
  if (timeline.seen.join(',') !== '1,2,3,4,5') fail(`timeline ${timeline.seen}`);
  return { id, timeline: timeline.seen };
}

/** Runs `main`, printing `OK …` or the error, and exits. */
export function run(main) {
  main()
    .then((summary) => {
      console.log(`OK ${JSON.stringify(summary)}`);
      process.exit(0);
    })
    .catch((error) => {
      console.error(error?.stack ?? error);
      console.log(`FAILED ${error?.message ?? error}`);
      process.exit(1);
    });
}
