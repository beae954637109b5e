// The graphql-sse reference client in either mode of its protocol, running the whole workflow
// over Server-Sent Events: mutations and queries on one client, the timeline on another that
// goes through the test's proxy and is cut, then resumes from its cursor.
// Usage: node sse.mjs HTTP_URL LIVE_URL TOKEN single|distinct
import { createClient } from 'graphql-sse';
import { TIMELINE, run, runWorkflow } from './workflow.mjs';

const [httpUrl, liveUrl, token, mode] = process.argv.slice(2);
const options = (url) => ({
  url,
  headers: { Authorization: `Bearer ${token}` },
  singleConnection: mode === 'single',
  retryAttempts: 0,
});
const opsClient = createClient(options(httpUrl));
const liveClient = createClient(options(liveUrl));

const ops = {
  async exec(query, variables) {
    let result;
    for await (const r of opsClient.iterate({ query, variables })) result = r;
    if (result?.errors?.length) throw new Error(JSON.stringify(result.errors));
    return result.data;
  },
};

const live = {
  follow(variables, onEvent, onEnd) {
    return liveClient.subscribe(
      { query: TIMELINE, variables },
      {
        next: (result) => {
          if (result.errors) return onEnd();
          onEvent(result.data.incidentEvents);
        },
        error: () => onEnd(),
        complete: () => onEnd(),
      },
    );
  },
};

run(async () => ({ mode, ...(await runWorkflow({ ops, live, name: `graphql-sse ${mode}` })) }));
