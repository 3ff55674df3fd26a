import type {Redis} from 'ioredis'

import type {RedisConnection} from './connection.js'

/** SCAN COUNT: the seeds used the default (10), which costs a round trip per ten keys. */
export const SCAN_COUNT = 1000

export interface KeyBatch {
  /** The master that holds these keys: pipeline reads and writes for them through it. */
  node: Redis
  keys: string[]
}

/**
 * Bounded SCAN batches over every master (one for a single node). Memory holds
 * one batch at a time whatever the number of keys. SCAN may return a key twice
 * across batches (rehashing); callers that count must tolerate or dedupe per batch.
 */
export async function* scanKeys(
  connection: RedisConnection,
  pattern: string,
  options: {count?: number; type?: 'hash' | 'list' | 'string' | 'zset' | 'set'} = {},
): AsyncGenerator<KeyBatch> {
  const count = options.count ?? SCAN_COUNT
  for (const node of connection.masters()) {
    let cursor = '0'
    do {
      const args: (string | number)[] = [cursor, 'MATCH', pattern, 'COUNT', count]
      if (options.type) args.push('TYPE', options.type)
      const [next, keys] = (await node.call('SCAN', ...args)) as [string, string[]]
      cursor = next
      if (keys.length > 0) yield {node, keys}
    } while (cursor !== '0')
  }
}

/** Number of keys matching `pattern` on every master (a full scan, nothing held). */
export async function countKeys(connection: RedisConnection, pattern: string): Promise<number> {
  let total = 0
  for await (const batch of scanKeys(connection, pattern)) total += batch.keys.length
  return total
}

/** UNLINK the keys of one batch through their node; returns how many existed. */
export async function unlinkBatch(batch: KeyBatch, cluster = false): Promise<number> {
  if (!cluster) return batch.node.unlink(...batch.keys)
  const pipeline = batch.node.pipeline()
  // In a cluster, keys of one node still span many slots: one UNLINK per key, pipelined.
  for (const key of batch.keys) pipeline.unlink(key)
  const replies = (await pipeline.exec()) ?? []
  let removed = 0
  for (const [error, reply] of replies) {
    if (error) throw error
    removed += Number(reply)
  }
  return removed
}
