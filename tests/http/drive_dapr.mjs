// The real @dapr/dapr client (HTTP mode) against a live worldflow server.
// DAPR_HTTP_PORT=<port> DAPR_API_TOKEN=<token> node drive_dapr.mjs  -> one JSON line per check
import { CommunicationProtocolEnum, DaprClient } from "@dapr/dapr";

const c = new DaprClient({
  daprHost: "127.0.0.1",
  daprPort: process.env.DAPR_HTTP_PORT,
  communicationProtocol: CommunicationProtocolEnum.HTTP,
  daprApiToken: process.env.DAPR_API_TOKEN,
});
const out = (check, value) => console.log(JSON.stringify({ check, value }));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(id, status) {
  for (let i = 0; i < 500; i++) {
    const state = await c.workflow.getWorkflowState(id);
    if (state.runtimeStatus === status) return state;
    await sleep(10);
  }
  throw new Error(`${id} never reached ${status}`);
}
const failure = async (fn) => {
  try { await fn(); return null; } catch (e) { return JSON.parse(e.message).status; }
};

const id = await c.workflow.scheduleNewWorkflow("order_wf", { item: "pen", qty: 2 }, "js-order-1");
out("scheduled", id);
let state = await until(id, "RUNNING");
out("running", { name: state.workflowName, input: state.properties["dapr.workflow.input"],
  createdIsDate: state.createdAt instanceof Date });
out("duplicate", await failure(() => c.workflow.scheduleNewWorkflow("order_wf", 1, id)));
await c.workflow.pause(id);
out("paused", (await c.workflow.getWorkflowState(id)).runtimeStatus);
await c.workflow.raiseEvent(id, "approval", { approved: true });
await c.workflow.resume(id);
state = await until(id, "COMPLETED");
out("completed", JSON.parse(state.properties["dapr.workflow.output"]));
await c.workflow.purge(id);
out("purged", await failure(() => c.workflow.getWorkflowState(id)));

const generated = await c.workflow.scheduleNewWorkflow("order_wf", "text input");
out("generated", generated.length);
state = await until(generated, "RUNNING");
out("text input", state.properties["dapr.workflow.input"]);
await c.workflow.terminate(generated);
out("terminated", (await until(generated, "TERMINATED")).runtimeStatus);
out("unknown pause", await failure(() => c.workflow.pause("no-such-instance")));
await c.stop();
