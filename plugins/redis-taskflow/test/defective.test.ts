/** taskflow:defective:delete: every rule, queues and counters kept right, dry-run writes nothing. */
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'

import {childEnv, OPS_BIN, runOps} from '../../../test/helpers/cli.js'
import {defectsOf, TaskFields} from '../src/repair/defective-task.js'
import {Queue, taskKey} from '../src/keyspace.js'
import {commandCalls, DEFECTIVE_CASES, readCounters, snapshot, withFreshRedis, writesBetween, writeTask, writeTasks} from './fixtures.js'

describe('taskflow:defective:delete', function () {
  const server = withFreshRedis()
  const ops = (args: string[]) => runOps(args, {env: {REDIS_URL: server.url}})

  it('knows every rule, and a healthy task (empty completed_at included) is not defective', () => {
    const healthy: TaskFields = {
      task_id: 'a',
      state: 'PENDING',
      created_at: '2025-07-20T19:16:09.875503',
      updated_at: '2025-07-20T19:16:09',
      completed_at: '',
      task_type: 'summarize',
      content: 'x',
    }
    expect(defectsOf(healthy)).to.deep.equal([])
    expect(defectsOf({...healthy, created_at: '0001-01-01T00:00:00'})).to.have.length(1)
    expect(defectsOf({...healthy, completed_at: 'not a date'})).to.have.length(1)
    expect(defectsOf({...healthy, task_id: 'unknown_id'})).to.have.length(1)
    expect(defectsOf({...healthy, state: null, created_at: null})).to.have.length(2)
  })

  describe('against real keys', () => {
    let defectiveKeys: string[]
    let healthyIds: string[]

    beforeEach(async () => {
      await server.redis.flushdb()
      const states = ['PENDING', 'ACTIVE', 'COMPLETED', 'FAILED', 'SCHEDULED', 'DLQ'] as const
      healthyIds = await writeTasks(server.redis, 120, (i) => ({state: states[i % 6]}), {count: true})
      defectiveKeys = []
      for (const [, overrides] of DEFECTIVE_CASES) {
        const id = await writeTask(server.redis, overrides, {count: true})
        defectiveKeys.push(taskKey(id))
      }
    })

    it("lists them in delete_defective_tasks.py's format and writes nothing with --dry-run", async () => {
      const before = await commandCalls(server.redis)
      const result = await ops(['taskflow:defective:delete', '--dry-run', '--limit', '20'])
      expect(result.code, result.stderr).to.equal(0)
      for (const line of [
        'Defective Task Cleanup Utility',
        'Mode: DRY RUN',
        `Scanned ${120 + DEFECTIVE_CASES.length} total tasks`,
        `Found ${DEFECTIVE_CASES.length} defective tasks`,
        'Defective tasks found:',
        'Task ID: missing',
        'Created: missing',
        `DRY RUN: Would delete ${DEFECTIVE_CASES.length} defective tasks`,
      ]) {
        expect(result.stdout).to.contain(line)
      }
      for (const key of defectiveKeys) expect(result.stdout).to.contain(`Redis Key: ${key}`)
      expect(writesBetween(before, await commandCalls(server.redis))).to.deep.equal({})
    })

    it("feeds delete_defective_tasks.py's monitoring one-liner a plain integer, also past 1,000 defective tasks", async () => {
      await writeTasks(server.redis, 1200, {created_at: '0001-01-01T00:00:00'})
      // The one-liner as delete_defective_tasks.py's docs give it, with ops in place of the script.
      const script =
        `DEFECTIVE_COUNT=$("${process.execPath}" "${OPS_BIN}" taskflow:defective:delete --dry-run | ` +
        `grep "Found.*defective tasks" | awk '{print $2}')
if [ "$DEFECTIVE_COUNT" -gt 0 ]; then echo "WARNING: $DEFECTIVE_COUNT defective tasks found in Redis"; fi`
      const out = execFileSync('bash', ['-c', script], {env: childEnv({REDIS_URL: server.url}), encoding: 'utf8'})
      expect(out.trim()).to.equal(`WARNING: ${1200 + DEFECTIVE_CASES.length} defective tasks found in Redis`)
    })

    it('removes exactly the defective hashes, their queue entries and DLQ copies, and keeps counters equal to the states', async () => {
      const healthyBefore = await snapshot(server.redis, 'task:*')
      for (const key of defectiveKeys) delete healthyBefore[key]
      const result = await ops(['taskflow:defective:delete', '--force'])
      expect(result.code, result.stderr).to.equal(0)
      expect(result.stdout).to.contain(`Successfully deleted ${DEFECTIVE_CASES.length} defective tasks`)
      for (const key of defectiveKeys) expect(await server.redis.exists(key), key).to.equal(0)
      expect(await snapshot(server.redis, 'task:*')).to.deep.equal(healthyBefore)
      const defectiveIds = defectiveKeys.map((k) => k.slice('task:'.length))
      const queued = [
        ...(await server.redis.lrange(Queue.primary, 0, -1)),
        ...(await server.redis.lrange(Queue.retry, 0, -1)),
        ...(await server.redis.lrange(Queue.dlq, 0, -1)),
        ...(await server.redis.zrange(Queue.scheduled, 0, -1)),
      ]
      expect(queued.filter((id) => defectiveIds.includes(id))).to.deep.equal([])
      expect(queued.filter((id) => healthyIds.includes(id))).to.have.length(60) // PENDING, SCHEDULED, DLQ healthy ones stay queued
      for (const id of defectiveIds) expect(await server.redis.exists(`dlq:task:${id}`)).to.equal(0)
      expect(await readCounters(server.redis)).to.deep.equal({PENDING: 20, ACTIVE: 20, COMPLETED: 20, FAILED: 20, SCHEDULED: 20, DLQ: 20})
    })
  })
})
