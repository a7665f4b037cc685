// The fan-out job as a BullMQ user would write it: one job per contact, each making one
// HTTP call (`PUT /contacts/{id}/execFlow`) with Node's fetch (keep-alive). Run by
// `tarefas-bench peers` (crates/tarefas-bench/src/peers.rs), two processes of concurrency 64.
//
// Environment: BENCH_REDIS_HOST, BENCH_REDIS_PORT, BENCH_REDIS_DB (a database number of the
// benchmark's own), BENCH_PREFIX (the Redis key prefix), BENCH_QUEUE, BENCH_CONCURRENCY,
// BENCH_LIMIT_MAX and BENCH_LIMIT_DURATION_MS (the rate limiter; off when unset),
// BENCH_HUGGY_URL, BENCH_HUGGY_TOKEN, BENCH_CHANNEL.
import { Worker } from 'bullmq';
import IORedis from 'ioredis';

const env = process.env;
// BullMQ 6 takes an ioredis client it does not construct itself in ESM.
const connection = new IORedis({
  host: env.BENCH_REDIS_HOST ?? '127.0.0.1',
  port: Number(env.BENCH_REDIS_PORT ?? 6379),
  db: Number(env.BENCH_REDIS_DB ?? 0),
  maxRetriesPerRequest: null,
});
const huggy = env.BENCH_HUGGY_URL;
const headers = {
  authorization: `Bearer ${env.BENCH_HUGGY_TOKEN}`,
  'content-type': 'application/json',
};
const body = JSON.stringify({
  uuid: env.BENCH_CHANNEL,
  flowId: 42,
  variables: {},
  whenInChat: true,
  whenWaitForChat: true,
  whenInAuto: true,
});

const options = {
  connection,
  prefix: env.BENCH_PREFIX,
  concurrency: Number(env.BENCH_CONCURRENCY ?? 64),
};
if (env.BENCH_LIMIT_MAX) {
  options.limiter = { max: Number(env.BENCH_LIMIT_MAX), duration: Number(env.BENCH_LIMIT_DURATION_MS ?? 1000) };
}

const worker = new Worker(
  env.BENCH_QUEUE,
  async (job) => {
    const r = await fetch(`${huggy}/contacts/${job.data.id}/execFlow`, { method: 'PUT', headers, body });
    await r.arrayBuffer();
    if (!r.ok) throw new Error(`execFlow ${job.data.id}: ${r.status}`);
  },
  options,
);
worker.on('error', (e) => console.error('worker error', e));
await worker.waitUntilReady();
console.error(`bullmq_worker: ready (concurrency ${options.concurrency}, limiter ${JSON.stringify(options.limiter ?? null)})`);
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, async () => {
    await worker.close(true);
    process.exit(0);
  });
}
