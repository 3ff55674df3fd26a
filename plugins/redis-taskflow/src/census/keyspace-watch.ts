import {randomUUID} from 'node:crypto'

import type {Redis} from 'ioredis'

/**
 * Event classes a census must hear about for task keys: K = keyspace channel,
 * g = DEL/UNLINK/RENAME/EXPIRE, h = hash writes (HSET...), x = expiry, e = eviction.
 * 'A' is Redis' alias for every class (g$lshzxetd).
 */
const NEEDED = ['K', 'g', 'h', 'x', 'e']
const covers = (flags: string, flag: string) => flags.includes(flag) || (flag !== 'K' && flag !== 'E' && flags.includes('A'))

export type WatchStart = {watch: KeyspaceWatch} | {unavailable: string}

/** What the notification stream had delivered when a marker came through. */
export interface MarkerSeen {
  /** Keys changed between the last takeStale() and the marker. */
  stale: Set<string>
  /** Keys changed between the previous marker and this one. */
  sincePreviousMarker: Set<string>
}

/**
 * Learns which task keys change while a scan runs, through keyspace
 * notifications on a subscriber connection of one node. The notification
 * stream is ordered with the node's commands, so a marker PUBLISHed inside a
 * MULTI tells exactly which changes happened before that instant.
 */
export class KeyspaceWatch {
  /** Every key that changed since the watch started. */
  readonly changed = new Set<string>()
  /** Keys that changed since the last takeStale(). */
  private stale = new Set<string>()
  /** Keys that changed since the last marker was seen. */
  private sinceMarker = new Set<string>()
  private readonly markers = new Map<string, (seen: MarkerSeen) => void>()
  private broken: string | undefined
  readonly channel = `ops:census-marker:${randomUUID()}`

  private constructor(
    private readonly subscriber: Redis,
    private readonly node: Redis,
    /** The notify-keyspace-events value to put back, when the watch changed it. */
    private readonly restore: string | undefined,
    private readonly prefix: string,
  ) {}

  /**
   * Subscribes to `__keyspace@{db}__:{pattern}` on `node`. When the server's
   * notify-keyspace-events lacks what is needed and `configure` is true, sets
   * it for the duration of the watch (stop() puts the old value back).
   */
  static async start(node: Redis, pattern: string, options: {configure: boolean}): Promise<WatchStart> {
    let current: string
    try {
      const reply = (await node.config('GET', 'notify-keyspace-events')) as string[]
      current = reply[1] ?? ''
    } catch (error) {
      return {unavailable: `CONFIG GET notify-keyspace-events is not allowed (${(error as Error).message})`}
    }
    const missing = NEEDED.filter((flag) => !covers(current, flag))
    let restore: string | undefined
    if (missing.length > 0) {
      if (!options.configure) return {unavailable: `keyspace notifications are off (notify-keyspace-events '${current}') and a dry run does not change server settings`}
      try {
        await node.config('SET', 'notify-keyspace-events', current + missing.join(''))
        restore = current
      } catch (error) {
        return {unavailable: `CONFIG SET notify-keyspace-events is not allowed (${(error as Error).message})`}
      }
    }
    const db = node.options.db ?? 0
    const subscriber = node.duplicate()
    const watch = new KeyspaceWatch(subscriber, node, restore, `__keyspace@${db}__:`)
    subscriber.on('error', (error) => (watch.broken ??= `the notification connection failed: ${error.message}`))
    subscriber.on('close', () => (watch.broken ??= 'the notification connection closed'))
    subscriber.on('pmessage', (_pattern: string, channel: string) => watch.record(channel.slice(watch.prefix.length)))
    subscriber.on('message', (channel: string, marker: string) => {
      if (channel !== watch.channel) return
      watch.markers.get(marker)?.({stale: new Set(watch.stale), sincePreviousMarker: watch.sinceMarker})
      watch.markers.delete(marker)
      watch.sinceMarker = new Set()
    })
    try {
      await subscriber.psubscribe(`${watch.prefix}${pattern}`)
      await subscriber.subscribe(watch.channel)
    } catch (error) {
      await watch.stop()
      return {unavailable: `cannot subscribe to keyspace notifications (${(error as Error).message})`}
    }
    return {watch}
  }

  /** Why the watch can no longer be trusted, if it cannot. */
  get failure(): string | undefined {
    return this.broken
  }

  /** The keys changed since the previous call, and forgets them. */
  takeStale(): Set<string> {
    const stale = this.stale
    this.stale = new Set()
    return stale
  }

  /**
   * A marker to PUBLISH on `channel` inside the MULTI that reads an instant;
   * `reached` resolves, when the subscriber sees it, with the keys that changed
   * between the last takeStale() and that instant, and those that changed
   * between the previous marker and this one.
   */
  marker(): {id: string; reached: Promise<MarkerSeen>} {
    const id = randomUUID()
    const reached = new Promise<MarkerSeen>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the notification connection did not deliver the census marker within 10 s')), 10_000)
      this.markers.set(id, (seen) => {
        clearTimeout(timer)
        resolve(seen)
      })
    })
    return {id, reached}
  }

  async stop(): Promise<void> {
    this.subscriber.disconnect()
    if (this.restore !== undefined) await this.node.config('SET', 'notify-keyspace-events', this.restore)
  }

  private record(key: string): void {
    this.changed.add(key)
    this.stale.add(key)
    this.sinceMarker.add(key)
  }
}
