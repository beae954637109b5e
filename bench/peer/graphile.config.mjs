// PostGraphile 5 on the bench's database: the peer `incidentd-bench run --peer` measures
// against. It serves every table of the `public` schema as Amber's preset names it, with no
// authentication: the bench scopes each peer query to one organization with a `condition`,
// so both servers read the same rows. Nothing here is fit to face a network.
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { makePgService } from "postgraphile/adaptors/pg";

const connectionString = process.env.DATABASE_URL;
if (!connectionString) {
  throw new Error("set DATABASE_URL to the bench's database");
}
const [host, port] = (process.env.PEER_LISTEN ?? "127.0.0.1:5678").split(":");

/** @type {GraphileConfig.Preset} */
export default {
  extends: [PostGraphileAmberPreset],
  // By default PostGraphile 5 hides orderings and backward relations that no index leads
  // with; the pages need `created_at` and `sequence` orders and an incident's postmortem
  // (indexed by `incident_id` alone), as incidentd reads them.
  disablePlugins: ["PgIndexBehaviorsPlugin"],
  pgServices: [
    makePgService({
      connectionString,
      schemas: ["public"],
      // The size of incidentd's own pool, so neither gets more of the database.
      poolConfig: { max: Number(process.env.PEER_POOL ?? 20) },
    }),
  ],
  grafserv: { host, port: Number(port), graphiql: false, watch: false },
  grafast: { explain: false },
};
