import type {Redis} from 'ioredis'

import type {RedisConnection} from '../connection.js'

/** SCAN COUNT: the Python utilities used the default (10), which costs a round trip per ten keys. */
export const SCAN_COUNT = 1000

export interface KeyBatch {
  /** The master that holds these keys: pipeline reads and writes for them through it. */
  node: Redis
  keys: string[]
  /** Names that are not UTF-8, as their bytes: a string cannot name them back to the server. */
  raw?: Buffer[]
}

/** How many keys a batch holds, names that are not UTF-8 included. */
export const sizeOf = (batch: KeyBatch): number => batch.keys.length + (batch.raw?.length ?? 0)

/** A key name that did not decode as UTF-8 carries U+FFFD in place of its bytes. */
export const isBadName = (key: string): boolean => key.includes('\uFFFD')

/**
 * Splits SCAN's names (as bytes) into strings, and the names that are not
 * UTF-8 kept as bytes. A valid name may hold U+FFFD itself: only a name whose
 * decoding does not give its bytes back is not UTF-8.
 */
export function namesOf(buffers: Buffer[]): {keys: string[]; raw?: Buffer[]} {
  const keys: string[] = []
  let raw: Buffer[] | undefined
  for (const buffer of buffers) {
    const name = buffer.toString()
    if (isBadName(name) && !Buffer.from(name).equals(buffer)) (raw ??= []).push(buffer)
    else keys.push(name)
  }
  return raw ? {keys, raw} : {keys}
}

/**
 * Bounded SCAN batches over every master (one for a single node). Memory holds
 * one batch at a time whatever the number of keys. SCAN may return a key twice
 * across batches (rehashing); callers that count must tolerate or dedupe per batch.
 */
export async function* scanKeys(connection: RedisConnection, pattern: string, options: {count?: number} = {}): AsyncGenerator<KeyBatch> {
  for (const node of connection.masters()) yield* scanNode(node, pattern, options)
}

/** The SCAN loop of one node; the next SCAN is already on the wire while the caller works on a batch. */
export async function* scanNode(node: Redis, pattern: string, options: {count?: number} = {}): AsyncGenerator<KeyBatch> {
  const count = Math.max(options.count ?? SCAN_COUNT, 10)
  // As bytes: a name that is not UTF-8 must reach UNLINK as it is, not as its lossy decoding.
  const scan = (cursor: string) => node.callBuffer('SCAN', cursor, 'MATCH', pattern, 'COUNT', count) as Promise<[Buffer, Buffer[]]>
  let pending = scan('0')
  for (;;) {
    const [cursor, names] = await pending
    const next = cursor.toString()
    if (next !== '0') pending = scan(next)
    if (names.length > 0) yield {node, ...namesOf(names)}
    if (next === '0') return
  }
}

/** Number of keys matching `pattern` on every master (a full scan, nothing held). */
export async function countKeys(connection: RedisConnection, pattern: string, options: {count?: number} = {}): Promise<number> {
  let total = 0
  for await (const batch of scanKeys(connection, pattern, options)) total += sizeOf(batch)
  return total
}

const clusterNodes = new WeakSet<Redis>()

/** Marks the masters of a cluster connection (connectRedis does) so their keys get grouped by slot. */
export function markClusterNodes(nodes: Redis[]): Redis[] {
  for (const node of nodes) clusterNodes.add(node)
  return nodes
}

/** Whether `node` is a master of a cluster: the keys of one command there must share a slot. */
export function isClusterNode(node: Redis): boolean {
  return clusterNodes.has(node)
}

/**
 * Marks a promise that is awaited later as handled now: with several in
 * flight, one failing before its turn would otherwise crash the process as
 * an unhandled rejection. Awaiting it still throws.
 */
export function quiet<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {})
  return promise
}

/**
 * Tells which of a few glob patterns a key name matches, client-side, so one
 * SCAN pass can sort every key instead of one pass per pattern (each pass
 * walks the whole keyspace: SCAN copies every key it visits before MATCH
 * filters). Takes the glob subset the task flow uses, `*` and `?` and
 * literals; a pattern with `[` or `\` is refused rather than half-understood.
 */
export class PatternSorter {
  private readonly expressions: RegExp[]

  constructor(readonly patterns: readonly string[]) {
    this.expressions = patterns.map((pattern) => {
      if (/[[\\]/.test(pattern)) throw new Error(`PatternSorter takes only * and ? globs, not ${pattern}`)
      const body = pattern
        .replace(/[.+^${}()|]/g, '\\$&')
        .replace(/\*/g, '[\\s\\S]*')
        .replace(/\?/g, '[\\s\\S]')
      return new RegExp(`^${body}$`)
    })
  }

  /** The index of the first pattern `key` matches, or -1. */
  indexOf(key: string): number {
    return this.expressions.findIndex((expression) => expression.test(key))
  }
}

/**
 * One SCAN pass over every master (SCAN COUNT 1000, no MATCH) sorting keys by
 * the first of `patterns` they match; keys matching none are dropped at once.
 * Yields per batch the matching keys, grouped by pattern index.
 */
export async function* scanSorted(
  connection: RedisConnection,
  patterns: readonly string[],
): AsyncGenerator<{node: Redis; byPattern: KeyBatch[]}> {
  const sorter = new PatternSorter(patterns)
  for (const node of connection.masters()) {
    for await (const batch of scanNode(node, '*')) {
      const byPattern: KeyBatch[] = patterns.map(() => ({node, keys: []}))
      for (const key of batch.keys) {
        const i = sorter.indexOf(key)
        if (i >= 0) byPattern[i].keys.push(key)
      }
      // A name that is not UTF-8 is sorted by its decoding (the patterns are ASCII), and kept as its bytes.
      for (const name of batch.raw ?? []) {
        const i = sorter.indexOf(name.toString())
        if (i >= 0) (byPattern[i].raw ??= []).push(name)
      }
      yield {node, byPattern}
    }
  }
}

/**
 * The items of several generators as each one yields them, all running side
 * by side (one per master: their servers work in parallel). Ends when all
 * have ended; the first failure is thrown, the others are then left alone.
 */
export async function* mergeConcurrently<T>(sources: AsyncGenerator<T>[]): AsyncGenerator<T> {
  const pull = (i: number) => quiet(sources[i].next().then((result) => ({i, result})))
  const pending = new Map(sources.map((_, i) => [i, pull(i)]))
  while (pending.size > 0) {
    const {i, result} = await Promise.race(pending.values())
    if (result.done) {
      pending.delete(i)
      continue
    }
    pending.set(i, pull(i))
    yield result.value
  }
}
