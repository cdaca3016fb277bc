// Drives worldflow's Mastra API with the real @mastra/client-js: BASE=http://127.0.0.1:PORT node drive.mjs
// Prints one JSON line per check: {"check": name, ...what the client returned}.
import { MastraClient } from '@mastra/client-js';

const out = (check, value) => console.log(JSON.stringify({ check, ...value }));
const c = new MastraClient({ baseUrl: process.env.BASE, retries: 0, headers: { authorization: `Bearer ${process.env.TOKEN}` } });
const tag = process.env.TAG;

const list = await c.listWorkflows();
out('list', { keys: Object.keys(list).sort() });
const wf = c.getWorkflow('approval-wf');
const details = await wf.details();
out('details', { name: details.name, steps: Object.keys(details.steps), graph: details.stepGraph.map((s) => s.step.id), input: JSON.parse(details.inputSchema) });

const run = await wf.createRun({ runId: `${tag}-a`, resourceId: 'user-1' });
out('createRun', { runId: run.runId });
const r1 = await run.startAsync({ inputData: { a: 2, b: 3 } });
out('startAsync', { status: r1.status, suspended: r1.suspended, suspendPayload: r1.suspendPayload, steps: Object.keys(r1.steps) });
const r2 = await run.resumeAsync({ step: 'approve', resumeData: { approved: true } });
out('resumeAsync', { status: r2.status, result: r2.result, approve: r2.steps.approve.status, resumePayload: r2.steps.approve.resumePayload });
const got = await wf.runById(run.runId, { fields: ['status', 'result'] });
out('runById', { status: got.status, result: got.result, keys: Object.keys(got).sort() });
const full = await wf.runById(run.runId);
out('runByIdFull', { status: full.status, payload: full.payload, steps: Object.keys(full.steps), resourceId: full.resourceId });

const run2 = await wf.createRun({ runId: `${tag}-b` });
const t1 = [];
for await (const ch of await run2.stream({ inputData: { a: 1, b: 1 } })) t1.push(ch.type);
out('stream', { types: t1 });
const t2 = [];
for await (const ch of await run2.resumeStream({ step: ['approve'], resumeData: { approved: false } })) t2.push(ch.type);
out('resumeStream', { types: t2 });
const t3 = [];
for await (const ch of await run2.observe()) t3.push(ch.type);
out('observe', { types: t3 });
const t4 = [];
for await (const ch of await run2.observe({ offset: t3.length - 1 })) t4.push(ch.type);
out('observeOffset', { types: t4 });

const run3 = await wf.createRun({ runId: `${tag}-c` });
await run3.start({ inputData: { a: 5, b: 5 } });
out('start', { runId: run3.runId });
out('cancel', await run3.cancel());
const cancelled = await wf.runById(run3.runId, { fields: ['status'] });
out('cancelled', { status: cancelled.status });

const runs = await wf.runs({ resourceId: 'user-1' });
out('runs', { total: runs.total, ids: runs.runs.map((r) => r.runId) });
const paged = await wf.runs({ page: 0, perPage: 1 });
out('runsPaged', { total: paged.total, count: paged.runs.length });

const failing = await c.getWorkflow('failing-wf').createRun({ runId: `${tag}-f` });
const rf = await failing.startAsync({ inputData: { message: 'kaboom' } });
out('failed', { status: rf.status, error: rf.error && { message: rf.error.message, name: rf.error.name } });

const st = await c.getWorkflow('state-wf').createRun({ runId: `${tag}-s` });
const rs = await st.startAsync({ inputData: { id: 'o-1' }, initialState: { from: 'client' } });
out('state', { status: rs.status, result: rs.result });

async function error(name, fn) {
  try { await fn(); out(name, { ok: true }); } catch (e) { out(name, { status: e.status, body: e.body }); }
}
await error('unknownWorkflow', () => c.getWorkflow('nope').details());
await error('unknownRun', () => wf.runById(`${tag}-missing`));
await error('badInput', async () => (await wf.createRun({ runId: `${tag}-bad` })).startAsync({ inputData: { a: 'x' } }));
await error('notSuspended', () => run.resumeAsync({ step: 'approve', resumeData: { approved: false } }));
await error('delete', () => wf.deleteRunById(run.runId));
await error('deletedRun', () => wf.runById(run.runId));
