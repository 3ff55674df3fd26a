/** PatternSorter: one SCAN pass sorted client-side must agree with Redis' own MATCH. */
import {expect} from 'chai'

import {TASK_FLOW_PATTERNS} from '../src/keyspace.js'
import {PatternSorter} from '../src/read/scan.js'
import {withFreshRedis, writeCeleryMeta, writeHeartbeat, writeTasks, writeUnrelatedKeys} from './fixtures.js'

describe('PatternSorter', function () {
  const server = withFreshRedis()

  it('sorts every key as SCAN MATCH does for the task-flow patterns, near misses included', async () => {
    await server.redis.flushdb()
    await writeTasks(server.redis, 50, (i) => ({state: ['PENDING', 'DLQ', 'SCHEDULED'][i % 3]}))
    await writeCeleryMeta(server.redis, 20)
    await writeHeartbeat(server.redis, 'w1')
    await writeUnrelatedKeys(server.redis)
    const nearMisses = [
      'task',
      'tasks',
      'Task:1',
      'xtask:1',
      'dlq:tasks:1',
      'dlq:task',
      'dlq:tasksx',
      'celery-task-meta',
      'metrics:tasks:state',
      'worker:heartbeat',
      'task:',
      'tasks:',
      'task:a\nb',
      'task:*?',
      'dlq.tasks',
    ]
    for (const key of nearMisses) await server.redis.set(key, '1')
    const sorter = new PatternSorter(TASK_FLOW_PATTERNS)
    const matchedBy = await Promise.all(TASK_FLOW_PATTERNS.map(async (pattern) => new Set(await server.redis.keys(pattern))))
    const all = await server.redis.keys('*')
    expect(all.length).to.be.greaterThan(80)
    for (const key of all) {
      // The first pattern Redis matches the key with, or -1: what the sorter must say.
      expect(sorter.indexOf(key), JSON.stringify(key)).to.equal(matchedBy.findIndex((keys) => keys.has(key)))
    }
    for (const key of nearMisses.filter((k) => !k.startsWith('task:') && !k.startsWith('tasks:')))
      expect(sorter.indexOf(key), key).to.equal(-1)
  })

  it('refuses a glob it would only half understand', () => {
    expect(() => new PatternSorter(['task:[ab]*'])).to.throw(/only \* and \?/)
  })
})
