/** taskflow:stuck:fix: orphaned PENDING re-queued, stuck ACTIVE failed with counters and retry queue. */
import {expect} from 'chai'

import {parseJsonOutput, runOps} from '../../../test/helpers/cli.js'
import {Queue, taskKey} from '../src/keyspace.js'
import {commandCalls, isoNow, readCounters, withFreshRedis, writeHeartbeat, writesBetween, writeTask, writeTasks} from './fixtures.js'

describe('taskflow:stuck:fix', function () {
  const server = withFreshRedis()
  const ops = (args: string[]) => runOps(args, {env: {REDIS_URL: server.url}})
  let ids: Record<string, string>

  beforeEach(async () => {
    await server.redis.flushdb()
    await writeHeartbeat(server.redis, 'worker-1')
    ids = {
      queuedPending: await writeTask(server.redis, {state: 'PENDING'}, {count: true}),
      orphanPending: await writeTask(server.redis, {state: 'PENDING'}, {count: true, queue: 'none'}),
      oldActive: await writeTask(server.redis, {state: 'ACTIVE', started_at: isoNow(-2 * 3_600_000)}, {count: true}),
      freshActive: await writeTask(server.redis, {state: 'ACTIVE'}, {count: true}),
      deadWorker: await writeTask(server.redis, {state: 'ACTIVE', worker_id: 'worker-gone'}, {count: true}),
      completed: await writeTask(server.redis, {state: 'COMPLETED'}, {count: true}),
    }
  })

  it('lists what it would fix and writes nothing with --dry-run', async () => {
    const before = await commandCalls(server.redis)
    const result = await ops(['taskflow:stuck:fix', '--dry-run'])
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stdout).to.contain('Found 3 stuck tasks to fix')
    expect(result.stdout).to.contain(ids.orphanPending)
    expect(result.stdout).to.contain(`${ids.deadWorker}: worker worker-gone has no heartbeat`)
    expect(writesBetween(before, await commandCalls(server.redis))).to.deep.equal({})
  })

  it('re-queues orphaned PENDING tasks and fails stuck ACTIVE ones, moving counters and queueing them for retry', async () => {
    const unchangedIds = [ids.freshActive, ids.completed, ids.queuedPending]
    const hashes = () => Promise.all(unchangedIds.map((id) => server.redis.hgetall(taskKey(id))))
    const untouched = await hashes()
    expect(untouched.map((h) => h.state)).to.deep.equal(['ACTIVE', 'COMPLETED', 'PENDING'])
    const result = await ops(['taskflow:stuck:fix', '--force', '--older-than', '30m'])
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stdout).to.contain('Successfully fixed 3 stuck tasks')
    const primary = await server.redis.lrange(Queue.primary, 0, -1)
    expect(primary.filter((id) => id === ids.queuedPending)).to.have.length(1)
    expect(primary).to.include(ids.orphanPending)
    for (const id of [ids.oldActive, ids.deadWorker]) {
      const task = await server.redis.hgetall(taskKey(id))
      expect(task).to.include({state: 'FAILED', error_type: 'StuckTask'})
      expect(task.failed_at).to.match(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$/)
      expect(JSON.parse(task.error_history).at(-1)).to.include({error_type: 'StuckTask'})
      expect(JSON.parse(task.state_history).at(-1)).to.include({state: 'FAILED'})
    }
    expect((await server.redis.lrange(Queue.retry, 0, -1)).sort()).to.deep.equal([ids.oldActive, ids.deadWorker].sort())
    expect(await readCounters(server.redis)).to.include({PENDING: 2, ACTIVE: 1, FAILED: 2, COMPLETED: 1})
    expect(await hashes()).to.deep.equal(untouched)
  })

  it('finds the orphans among queues longer than one page of ids (25,000 queued on primary, 12,000 on retry)', async () => {
    await writeTasks(server.redis, 25_000, {state: 'PENDING'})
    await writeTasks(server.redis, 12_000, {state: 'PENDING'}, {queue: 'retry'})
    const orphans = await writeTasks(server.redis, 3, {state: 'PENDING'}, {queue: 'none'})
    const result = await ops(['taskflow:stuck:fix', '--dry-run', '--json'])
    expect(result.code, result.stderr).to.equal(0)
    const doc = parseJsonOutput<{data: {scanned: number; orphanedPending: string[]}}>(result)
    expect(doc.data.scanned).to.equal(6 + 37_003)
    expect(doc.data.orphanedPending.sort()).to.deep.equal([ids.orphanPending, ...orphans].sort())
  })

  it('leaves a task alone when a worker completed it after the scan', async () => {
    const {failStuckTask} = await import('../src/repair/stuck-task.js')
    await server.redis.hset(taskKey(ids.oldActive), 'state', 'COMPLETED')
    expect(await failStuckTask(server.redis, ids.oldActive, 'test')).to.equal(false)
    expect(await server.redis.hget(taskKey(ids.oldActive), 'state')).to.equal('COMPLETED')
  })

  it('takes --older-than as the one ops duration (90m, 1.5h, 2 days) and refuses a bare number as bad usage', async () => {
    const dry = await ops(['taskflow:stuck:fix', '--dry-run', '--older-than', '1.5h', '--json'])
    expect(dry.code, dry.stderr).to.equal(0)
    expect(parseJsonOutput<{filters: {olderThanMs: number}}>(dry).filters.olderThanMs).to.equal(5_400_000)
    const bare = await ops(['taskflow:stuck:fix', '--dry-run', '--older-than', '30'])
    expect(bare.code).to.equal(2)
    expect(bare.stderr).to.contain('--older-than')
  })
})
