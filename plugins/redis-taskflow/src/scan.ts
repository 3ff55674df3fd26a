import calculateSlot from 'cluster-key-slot'
import type {Redis} from 'ioredis'

import type {RedisConnection} from './connection.js'

/** SCAN COUNT: the seeds used the default (10), which costs a round trip per ten keys. */
export const SCAN_COUNT = 1000

/** Keys per multi-key UNLINK: large enough to amortise the round trip, small enough to never block. */
export const UNLINK_CHUNK = 1000

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
  options: {count?: number} = {},
): AsyncGenerator<KeyBatch> {
  for (const node of connection.masters()) yield* scanNode(node, pattern, options)
}

/** The SCAN loop of one node; the next SCAN is already on the wire while the caller works on a batch. */
export async function* scanNode(node: Redis, pattern: string, options: {count?: number} = {}): AsyncGenerator<KeyBatch> {
  const count = Math.max(options.count ?? SCAN_COUNT, 10)
  const scan = (cursor: string) => node.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', count) as Promise<[string, string[]]>
  let pending = scan('0')
  for (;;) {
    const [next, keys] = await pending
    if (next !== '0') pending = scan(next)
    if (keys.length > 0) yield {node, keys}
    if (next === '0') return
  }
}

/** Number of keys matching `pattern` on every master (a full scan, nothing held). */
export async function countKeys(connection: RedisConnection, pattern: string, options: {count?: number} = {}): Promise<number> {
  let total = 0
  for await (const batch of scanKeys(connection, pattern, options)) total += batch.keys.length
  return total
}

/**
 * Keys grouped by hash slot, in chunks of at most `chunk`: the unit a cluster
 * node accepts in one multi-key command. A single node takes any grouping, so
 * there `isCluster = false` gives plain chunks.
 */
export function slotGroups(keys: string[], isCluster: boolean, chunk = UNLINK_CHUNK): string[][] {
  if (!isCluster) {
    const groups: string[][] = []
    for (let i = 0; i < keys.length; i += chunk) groups.push(keys.slice(i, i + chunk))
    return groups
  }
  const bySlot = new Map<number, string[]>()
  for (const key of keys) {
    const slot = calculateSlot(key)
    const group = bySlot.get(slot)
    if (group) group.push(key)
    else bySlot.set(slot, [key])
  }
  return [...bySlot.values()].flatMap((group) => slotGroups(group, false, chunk))
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
 * UNLINK the keys of one batch through their node in one pipeline of multi-key
 * UNLINKs (grouped by hash slot on a cluster node); returns how many existed.
 * UNLINK frees the memory in a background thread, so a big value never blocks.
 * `cluster` defaults to whether the node came from a cluster connection.
 */
export async function unlinkBatch(batch: KeyBatch, cluster?: boolean): Promise<number> {
  const groups = slotGroups(batch.keys, cluster ?? isClusterNode(batch.node))
  if (groups.length === 1) return Number(await batch.node.unlink(...groups[0]))
  const pipeline = batch.node.pipeline()
  for (const group of groups) pipeline.unlink(...group)
  return sumReplies(await pipeline.exec())
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

/** Sum of integer replies of a pipeline; throws the first error. */
export function sumReplies(replies: [Error | null, unknown][] | null): number {
  let total = 0
  for (const [error, reply] of replies ?? []) {
    if (error) throw error
    total += Number(reply)
  }
  return total
}

/**
 * Scans `pattern` on every master and unlinks what it finds, batch by batch,
 * with at most `inFlight` UNLINK pipelines outstanding per node so the next
 * SCAN overlaps the deletes. Stops between batches when `signal` aborts.
 * Yields the cumulative number of keys removed.
 */
export async function* scanAndUnlink(
  connection: RedisConnection,
  pattern: string,
  options: {signal?: AbortSignal; count?: number; inFlight?: number} = {},
): AsyncGenerator<number> {
  const inFlight = options.inFlight ?? 4
  let removed = 0
  for (const node of connection.masters()) {
    const pending: Promise<number>[] = []
    for await (const batch of scanNode(node, pattern, options)) {
      if (options.signal?.aborted) break
      pending.push(quiet(unlinkBatch(batch)))
      if (pending.length >= inFlight) {
        removed += await pending.shift()!
        yield removed
      }
    }
    while (pending.length > 0) {
      removed += await pending.shift()!
      yield removed
    }
    if (options.signal?.aborted) return
  }
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
      const body = pattern.replace(/[.+^${}()|]/g, '\\$&').replace(/\*/g, '[\\s\\S]*').replace(/\?/g, '[\\s\\S]')
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
export async function* scanSorted(connection: RedisConnection, patterns: readonly string[]): AsyncGenerator<{node: Redis; byPattern: string[][]}> {
  const sorter = new PatternSorter(patterns)
  for (const node of connection.masters()) {
    for await (const batch of scanNode(node, '*')) {
      const byPattern: string[][] = patterns.map(() => [])
      for (const key of batch.keys) {
        const i = sorter.indexOf(key)
        if (i >= 0) byPattern[i].push(key)
      }
      yield {node, byPattern}
    }
  }
}

/** Key names the plan keeps for the execute step, at most this many bytes of them. */
export const HELD_KEY_BYTES = 64 * 1024 * 1024

/**
 * The keys a plan counted, kept (up to `maxBytes` of names, packed one string
 * per batch) so the delete need not scan the whole keyspace a second time —
 * SCAN is most of the cost. Past the cap it only counts; the delete then
 * unlinks what it holds and scans again for the rest.
 */
export class MatchedKeys {
  count = 0
  /** True when more keys matched than were kept. */
  overflowed = false
  private bytes = 0
  private readonly batches: {node: Redis; packed: string}[] = []

  constructor(
    readonly pattern: string,
    private readonly maxBytes = HELD_KEY_BYTES,
  ) {}

  /** Scans `pattern` on every master, counting and keeping keys. */
  static async collect(connection: RedisConnection, pattern: string, options: {maxBytes?: number; count?: number} = {}): Promise<MatchedKeys> {
    const matched = new MatchedKeys(pattern, options.maxBytes)
    for await (const batch of scanKeys(connection, pattern, options)) matched.add(batch)
    return matched
  }

  add(batch: KeyBatch): void {
    this.count += batch.keys.length
    if (this.overflowed) return
    // Keys never contain '\n' in this keyspace (uuids); one string per batch is ~1 byte per character.
    const packed = batch.keys.join('\n')
    if (this.bytes + packed.length > this.maxBytes || batch.keys.some((k) => k.includes('\n'))) {
      this.overflowed = true
      return
    }
    this.bytes += packed.length
    this.batches.push({node: batch.node, packed})
  }

  /** The kept keys, batch by batch. */
  *held(): Generator<KeyBatch> {
    for (const {node, packed} of this.batches) yield {node, keys: packed.split('\n')}
  }

  /**
   * UNLINKs the kept keys (four pipelines in flight), then, if the plan kept
   * only part, scans again for the rest. Stops between batches on `signal`.
   * Yields the cumulative number removed.
   */
  async *unlink(connection: RedisConnection, options: {signal?: AbortSignal; inFlight?: number} = {}): AsyncGenerator<number> {
    const inFlight = options.inFlight ?? 4
    const pending: Promise<number>[] = []
    let removed = 0
    for (const batch of this.held()) {
      if (options.signal?.aborted) break
      pending.push(quiet(unlinkBatch(batch)))
      if (pending.length >= inFlight) {
        removed += await pending.shift()!
        yield removed
      }
    }
    while (pending.length > 0) {
      removed += await pending.shift()!
      yield removed
    }
    if (!this.overflowed || options.signal?.aborted) return
    for await (const more of scanAndUnlink(connection, this.pattern, options)) yield removed + more
  }
}
