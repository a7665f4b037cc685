// Enqueues the fan-out as a BullMQ user would: one job per contact, with addBulk in chunks
// of 1,000, completed jobs removed (200,000 kept job hashes would only grow Redis).
//
// Usage: node bullmq_produce.mjs N FIRST_ID     (environment as for bullmq_worker.mjs)
//        node bullmq_produce.mjs --obliterate  (removes the queue and all its keys)
import { Queue } from 'bullmq';
import IORedis from 'ioredis';

const env = process.env;
// BullMQ 6 takes an ioredis client it does not construct itself in ESM.
const connection = new IORedis({
  host: env.BENCH_REDIS_HOST ?? '127.0.0.1',
  port: Number(env.BENCH_REDIS_PORT ?? 6379),
  db: Number(env.BENCH_REDIS_DB ?? 0),
  maxRetriesPerRequest: null,
});
const queue = new Queue(env.BENCH_QUEUE, { connection, prefix: env.BENCH_PREFIX });
const started = performance.now();
if (process.argv[2] === '--obliterate') {
  await queue.obliterate({ force: true });
} else {
  const n = Number(process.argv[2]);
  const first = Number(process.argv[3]);
  const chunk = 1000;
  for (let i = 0; i < n; i += chunk) {
    const jobs = [];
    for (let j = i; j < Math.min(n, i + chunk); j++) {
      jobs.push({
        name: 'execFlow',
        data: { id: first + j },
        opts: { removeOnComplete: true, removeOnFail: 1000, attempts: 3 },
      });
    }
    await queue.addBulk(jobs);
  }
  console.error(`bullmq_produce: ${n} jobs in ${((performance.now() - started) / 1000).toFixed(2)} s`);
}
await queue.close();
connection.disconnect();
