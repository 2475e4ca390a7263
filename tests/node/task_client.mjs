// A system written in Node.js that uses ossabus over NATS only: it publishes a task message on
// ossa.tasks.<agent> (through JetStream, with a Nats-Msg-Id), follows the run's events on
// ossa.events.<thread>.<run>.>, and prints what it saw as JSON.
//
//   node task_client.mjs <nats-url> <agent> <text>
import { connect, headers } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";

const [url, agent, text] = process.argv.slice(2);
const nc = await connect({ servers: url });
const suffix = Math.random().toString(36).slice(2, 12);
const threadId = `thread_node${suffix}`;
const runId = `run_node${suffix}`;

const events = [];
let result = null;
const sub = nc.subscribe(`ossa.events.${threadId}.${runId}.>`);
const done = (async () => {
  for await (const msg of sub) {
    const event = msg.json();
    events.push(event.event);
    if (event.event === "task.result" || event.event === "error") {
      result = event.data;
      break;
    }
  }
})();

const js = jetstream(nc);
const h = headers();
h.set("Nats-Msg-Id", `node-${suffix}`);
const ack = await js.publish(`ossa.tasks.${agent}`, JSON.stringify({ input: text, thread_id: threadId, run_id: runId }), { headers: h });

const timer = setTimeout(() => { console.error("no result within 60 s"); process.exit(2); }, 60000);
await done;
clearTimeout(timer);
console.log(JSON.stringify({ stream: ack.stream, thread_id: threadId, run_id: runId, events, result }));
await nc.drain();
