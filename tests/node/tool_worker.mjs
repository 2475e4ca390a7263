// A tool worker written in Node.js: serves `get_time` on ossa.tools.get_time (queue group
// ossa-tool-get_time) and announces it, speaking the wire format of contracts/tools.py.
//
//   node tool_worker.mjs <nats-url>
import { connect } from "@nats-io/transport-node";

const nc = await connect({ servers: process.argv[2] });
const announcement = JSON.stringify({
  name: "get_time", description: "The time in a city", worker: `node-${process.pid}`, every_s: 5,
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
});
const announce = () => nc.publish("ossa.announce.tools.get_time", announcement);

nc.subscribe("ossa.tools.get_time", {
  queue: "ossa-tool-get_time",
  callback: (err, msg) => {
    if (err) return;
    const call = msg.json();
    msg.respond(JSON.stringify({ output: `12:00 in ${call.arguments.city} (from node)` }));
  },
});
nc.subscribe("ossa.announce.rollcall", { callback: () => announce() });
announce();
setInterval(announce, 5000);
console.log("ready");
process.on("SIGTERM", async () => { await nc.drain(); process.exit(0); });
