/** StateReader and HashScanner: read-only scripts per SCAN step or per chunk of keys, and the plain paths they fall back to. */
import {expect} from 'chai'
import {Redis} from 'ioredis'

import {TASK_KEY_PATTERN} from '../src/keyspace.js'
import {FieldRow, HashScanner, NOT_A_HASH, ROW_GONE} from '../src/read/hash-scan.js'
import {NO_STATE, NOT_HASH, StateReader, StateReading} from '../src/read/state-reader.js'
import {commandCalls, withFreshRedis, writesBetween, writeTask, writeTasks, writeUnrelatedKeys} from './fixtures.js'

/** Every key the reader returned, with what it read; fails on a key returned twice with different readings. */
async function readAll(node: Redis): Promise<Map<string, StateReading>> {
  const seen = new Map<string, StateReading>()
  for await (const {keys, readings} of new StateReader(node).scan(TASK_KEY_PATTERN)) {
    expect(readings).to.have.length(keys.length)
    keys.forEach((key, i) => {
      if (seen.has(key)) expect(seen.get(key), key).to.equal(readings[i])
      seen.set(key, readings[i])
    })
  }
  return seen
}

/** The truth, read key by key with plain commands. */
async function truth(node: Redis): Promise<Map<string, StateReading>> {
  const out = new Map<string, StateReading>()
  for (const key of await node.keys(TASK_KEY_PATTERN)) {
    out.set(key, (await node.type(key)) === 'hash' ? ((await node.hget(key, 'state')) ?? NO_STATE) : NOT_HASH)
  }
  return out
}

describe('StateReader.scan on a real Redis', function () {
  this.timeout(60_000)
  const server = withFreshRedis()

  beforeEach(async () => {
    await server.redis.flushdb()
    await writeTasks(server.redis, 5000, (i) => ({state: ['COMPLETED', 'PENDING', 'ACTIVE', 'FAILED', 'SCHEDULED', 'DLQ'][i % 6]}))
    await writeUnrelatedKeys(server.redis)
  })

  it('reads the state of every task key exactly as HGET does, and writes nothing', async () => {
    await writeTask(server.redis, {state: null}) // a hash without a state field
    await writeTask(server.redis, {state: ''})
    const before = await commandCalls(server.redis)
    const read = await readAll(server.redis)
    expect(writesBetween(before, await commandCalls(server.redis))).to.deep.equal({})
    expect(read.size).to.equal(5002)
    expect(read).to.deep.equal(await truth(server.redis))
    const calls = await commandCalls(server.redis)
    // the scripted path: one call per SCAN step of COUNT 1000, not one per key
    expect((calls.evalsha_ro ?? 0) + (calls.eval_ro ?? 0) - (before.evalsha_ro ?? 0) - (before.eval_ro ?? 0)).to.be.within(1, 20)
  })

  it('a task:* key that is not a hash, and a state or key name holding a newline, are read the plain way, nothing lost', async () => {
    await server.redis.set('task:not-a-hash', 'x')
    await server.redis.rpush('task:a-list', 'y')
    await server.redis.hset('task:multi\nline', 'state', 'PENDING')
    const odd = await writeTask(server.redis, {state: 'PENDING\nACTIVE'})
    const read = await readAll(server.redis)
    expect(read).to.deep.equal(await truth(server.redis))
    expect(read.get('task:not-a-hash')).to.equal(NOT_HASH)
    expect(read.get('task:multi\nline')).to.equal('PENDING')
    expect(read.get(`task:${odd}`)).to.equal('PENDING\nACTIVE')
  })

  it('where the ACL forbids scripts, it scans and reads with plain commands and gets the same answer', async () => {
    await server.redis.call('ACL', 'SETUSER', 'noscripts', 'on', '>secret', '~*', '&*', '+@all', '-@scripting')
    const limited = new Redis(server.url, {username: 'noscripts', password: 'secret'})
    try {
      const before = await commandCalls(server.redis)
      const read = await readAll(limited)
      const after = await commandCalls(server.redis)
      expect(read).to.deep.equal(await truth(server.redis))
      const reads = (calls: Record<string, number>) => (calls.hget ?? 0) + (calls.hmget ?? 0)
      expect(reads(after) - reads(before)).to.be.at.least(5000)
      expect((after.evalsha_ro ?? 0) + (after.eval_ro ?? 0)).to.equal((before.evalsha_ro ?? 0) + (before.eval_ro ?? 0))
    } finally {
      limited.disconnect()
      await server.redis.call('ACL', 'DELUSER', 'noscripts')
    }
  })
})

describe('HashScanner reading several fields', function () {
  this.timeout(60_000)
  const FIELDS = ['task_id', 'state', 'created_at'] as const
  const server = withFreshRedis()

  /** The truth for one key, with plain commands. */
  async function rowOf(key: string): Promise<FieldRow> {
    const type = await server.redis.type(key)
    if (type === 'none') return ROW_GONE
    if (type !== 'hash') return NOT_A_HASH
    return server.redis.hmget(key, ...FIELDS)
  }

  beforeEach(async () => {
    await server.redis.flushdb()
    await writeTasks(server.redis, 2500)
  })

  it('reads by chunks of keys exactly what HMGET reads: a deleted key, an empty row, a non-hash and a newline included', async () => {
    const keys = (await server.redis.keys('task:*')).slice(0, 700)
    await server.redis.hset('task:no-fields', 'other', 'x')
    await server.redis.set('task:a-string', 'x')
    await server.redis.hset('task:newline', {task_id: 'a\nb', state: 'PENDING'})
    const asked = [...keys, 'task:no-fields', 'task:deleted', 'task:a-string', 'task:newline']
    const before = await commandCalls(server.redis)
    const rows = await new HashScanner(server.redis, FIELDS).read(asked)
    expect(writesBetween(before, await commandCalls(server.redis))).to.deep.equal({})
    expect(rows).to.deep.equal(await Promise.all(asked.map(rowOf)))
    expect(rows.slice(-4)).to.deep.equal([[null, null, null], ROW_GONE, NOT_A_HASH, ['a\nb', 'PENDING', null]])
  })

  it('scans every key once with its fields, in bounded batches', async () => {
    await writeUnrelatedKeys(server.redis)
    const seen = new Map<string, FieldRow>()
    for await (const {keys, rows} of new HashScanner(server.redis, FIELDS).scan(TASK_KEY_PATTERN)) {
      expect(keys.length).to.be.at.most(1500).and.equal(rows.length)
      keys.forEach((key, i) => seen.set(key, rows[i]))
    }
    const all = await server.redis.keys(TASK_KEY_PATTERN)
    expect(seen.size).to.equal(all.length).and.equal(2500)
    for (const key of all.slice(0, 200)) expect(seen.get(key)).to.deep.equal(await rowOf(key))
  })
})
