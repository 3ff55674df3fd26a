/**
 * `npm run demo`: the main job on throwaway servers, for a newcomer with no
 * database of their own. Starts PostgreSQL and Redis through the test harness,
 * fills them with production-shaped data (the Django TaskManager table with its
 * watcher links; AsyncTaskFlow hashes, queues, counters, Celery keys), runs a
 * dry-run clear with its summary and a Redis inspect, then stops the servers.
 */
import {spawnSync} from 'node:child_process'
import {Redis} from 'ioredis'
import pg from 'pg'

import {createDjangoSchema, generateTasks} from '../plugins/postgres-taskmanager/test/helpers/django-fixture.js'
import {setCounters, writeCeleryMeta, writeHeartbeat, writeTasks} from '../plugins/redis-taskflow/test/fixtures.js'
import {OPS_BIN} from '../test/helpers/cli.js'
import {freshDatabase, freshRedis, stopAll} from '../test/helpers/servers.js'

const ROWS = Number(process.env.OPS_DEMO_ROWS ?? 200_000)
const TASKS = Number(process.env.OPS_DEMO_TASKS ?? 20_000)

function ops(title: string, args: string[], env: Record<string, string>): void {
  console.log(`\n$ ops ${args.join(' ')}    # ${title}`)
  const result = spawnSync(process.execPath, [OPS_BIN, ...args], {stdio: 'inherit', env: {...process.env, ...env}})
  if (result.status !== 0) throw new Error(`ops ${args.join(' ')} exited ${result.status}`)
}

async function main(): Promise<void> {
  console.log('Starting throwaway PostgreSQL and Redis (test harness)...')
  const databaseUrl = await freshDatabase('ops_demo')
  const redis = await freshRedis()

  console.log(`Filling PostgreSQL with ${ROWS.toLocaleString('en-US')} TaskManager rows (62% DONE, watcher links on 1%)...`)
  const db = new pg.Client({connectionString: databaseUrl})
  await db.connect()
  await createDjangoSchema(db)
  await generateTasks(db, ROWS)
  await db.end()

  console.log(`Filling Redis with ${TASKS.toLocaleString('en-US')} AsyncTaskFlow tasks, queues, counters and Celery keys...`)
  const client = new Redis(redis.url)
  const states = ['COMPLETED', 'COMPLETED', 'COMPLETED', 'PENDING', 'ACTIVE', 'FAILED', 'SCHEDULED', 'DLQ'] as const
  await writeTasks(client, TASKS, (i) => ({state: states[i % states.length]}))
  await writeTasks(client, 3, {task_id: 'unknown_id', state: 'COMPLETED'}) // defective, as seen in the field
  await writeCeleryMeta(client, 5_000)
  await writeHeartbeat(client, 'worker-1')
  const each = TASKS / states.length
  // Counters as the application keeps them, plus one phantom ACTIVE task, as fix_counter_sync.py describes.
  await setCounters(client, {PENDING: each, ACTIVE: each + 1, COMPLETED: 3 * each + 3, FAILED: each, SCHEDULED: each, DLQ: each})
  client.disconnect()

  const env = {DATABASE_URL: databaseUrl, REDIS_URL: redis.url}
  ops('the status and module summaries', ['taskmanager:summary'], env)
  ops(
    'what clearing old DONE tasks would do',
    ['taskmanager:clear', '--status', 'DONE', '--older-than', '30d', '--dry-run', '--show-summary'],
    env,
  )
  ops('the Redis task store at a glance', ['taskflow:inspect'], env)
  ops('what a counter sync would fix', ['taskflow:counters:sync', '--dry-run'], env)
  console.log('\nNothing was written: every destructive command above ran with --dry-run.')
}

try {
  await main()
} finally {
  console.log('Stopping the throwaway servers...')
  await stopAll()
}
