import calculateSlot from 'cluster-key-slot'
import type {Redis} from 'ioredis'

import type {RedisConnection} from '../connection.js'
import {isClusterNode, KeyBatch, quiet, scanKeys, scanNode, sizeOf} from '../read/scan.js'

/** Keys per multi-key UNLINK: large enough to amortise the round trip, small enough to never block. */
export const UNLINK_CHUNK = 1000

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

/**
 * UNLINK the keys of one batch through their node in one pipeline of multi-key
 * UNLINKs (grouped by hash slot on a cluster node); returns how many existed.
 * UNLINK frees the memory in a background thread, so a big value never blocks.
 * `cluster` defaults to whether the node came from a cluster connection.
 */
export async function unlinkBatch(batch: KeyBatch, cluster?: boolean): Promise<number> {
  const isCluster = cluster ?? isClusterNode(batch.node)
  const groups: (string | Buffer)[][] = slotGroups(batch.keys, isCluster)
  // Names that are not UTF-8 go as their bytes: all in one UNLINK on a single node, one each on a cluster (one slot per command).
  if (batch.raw?.length) groups.push(...(isCluster ? batch.raw.map((name) => [name]) : [batch.raw]))
  if (groups.length === 0) return 0
  if (groups.length === 1) return Number(await batch.node.unlink(...groups[0]))
  const pipeline = batch.node.pipeline()
  for (const group of groups) pipeline.unlink(...group)
  return sumReplies(await pipeline.exec())
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
  let removed = 0
  for (const node of connection.masters()) {
    let fromNode = 0
    for await (const count of unlinkInFlight(scanNode(node, pattern, options), options)) {
      fromNode = count
      yield removed + fromNode
    }
    removed += fromNode
    if (options.signal?.aborted) return
  }
}

/**
 * UNLINKs `batches` with at most `inFlight` (default 4) pipelines outstanding,
 * so reading the next batch overlaps the deletes; stops between batches when
 * `signal` aborts. Yields the cumulative number of keys removed.
 */
async function* unlinkInFlight(
  batches: Iterable<KeyBatch> | AsyncIterable<KeyBatch>,
  options: {signal?: AbortSignal; inFlight?: number},
): AsyncGenerator<number> {
  const inFlight = options.inFlight ?? 4
  const pending: Promise<number>[] = []
  let removed = 0
  for await (const batch of batches) {
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
  private readonly batches: {node: Redis; packed: string; raw?: Buffer[]}[] = []

  constructor(
    readonly pattern: string,
    private readonly maxBytes = HELD_KEY_BYTES,
  ) {}

  /** Scans `pattern` on every master, counting and keeping keys. */
  static async collect(
    connection: RedisConnection,
    pattern: string,
    options: {maxBytes?: number; count?: number} = {},
  ): Promise<MatchedKeys> {
    const matched = new MatchedKeys(pattern, options.maxBytes)
    for await (const batch of scanKeys(connection, pattern, options)) matched.add(batch)
    return matched
  }

  add(batch: KeyBatch): void {
    this.count += sizeOf(batch)
    if (this.overflowed) return
    // Keys never contain '\n' in this keyspace (uuids); one string per batch is ~1 byte per character.
    const packed = batch.keys.join('\n')
    if (this.bytes + packed.length > this.maxBytes || batch.keys.some((k) => k.includes('\n'))) {
      this.overflowed = true
      return
    }
    this.bytes += packed.length
    this.batches.push({node: batch.node, packed, ...(batch.raw ? {raw: batch.raw} : {})})
  }

  /** The kept keys, batch by batch. */
  *held(): Generator<KeyBatch> {
    for (const {node, packed, raw} of this.batches) yield {node, keys: packed ? packed.split('\n') : [], ...(raw ? {raw} : {})}
  }

  /**
   * UNLINKs the kept keys (four pipelines in flight), then, if the plan kept
   * only part, scans again for the rest. Stops between batches on `signal`.
   * Yields the cumulative number removed.
   */
  async *unlink(connection: RedisConnection, options: {signal?: AbortSignal; inFlight?: number} = {}): AsyncGenerator<number> {
    let removed = 0
    for await (const count of unlinkInFlight(this.held(), options)) {
      removed = count
      yield removed
    }
    if (!this.overflowed || options.signal?.aborted) return
    for await (const more of scanAndUnlink(connection, this.pattern, options)) yield removed + more
  }
}
