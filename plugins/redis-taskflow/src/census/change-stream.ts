import {randomUUID} from 'node:crypto'

import type {Redis} from 'ioredis'

/** The channel Redis redirects client-tracking invalidations to (RESP2). */
const INVALIDATE_CHANNEL = '__redis__:invalidate'

export type ChangeStreamStart = {stream: ChangeStream} | {unavailable: string}

/** What arrived on the stream between two takes, in the server's order: changed keys and markers. */
type Entry = {keys: string[]} | {marker: string}

/** How the change stream saw the moments around one instant. */
export interface InstantWindow {
  /** Keys changed after the take, reported before the instant's marker: changed before the instant. */
  beforeInstant: Set<string>
  /** Keys of the first report of each prefix after the instant's marker: changed in the server's event-loop turn of the instant, before or after it. */
  instantTurn: Set<string>
  /** Every key reported between the instant's marker and the closing marker. */
  afterInstant: Set<string>
}

/**
 * Learns which keys with the given prefixes change, from client-side-caching
 * invalidations (CLIENT TRACKING ON BCAST PREFIX ... REDIRECT to this stream's
 * own connection). No server setting is changed: the tracking belongs to the
 * connection and ends with it, also when ops is killed. Redis reports every
 * write, deletion, expiry and eviction of a tracked key, and a flush as "all
 * keys". BCAST reports are sent once per event-loop turn, after the turn's
 * commands, while a PUBLISH reaches the stream at once: so a marker published
 * inside an instant's script orders reports by turn, not by command, and the
 * first report after it may hold changes from just before the instant.
 */
export class ChangeStream {
  private log: Entry[] = []
  private readonly waiting = new Map<string, () => void>()
  private broken: string | undefined
  readonly channel = `ops:census-marker:${randomUUID()}`

  private constructor(
    private readonly connection: Redis,
    private readonly prefixes: readonly string[],
  ) {}

  /** Opens the stream on `node` (a connection of its own); `unavailable` says why not (Redis < 6, an ACL without CLIENT). */
  static async open(node: Redis, prefixes: readonly string[]): Promise<ChangeStreamStart> {
    const connection = node.duplicate()
    const stream = new ChangeStream(connection, prefixes)
    connection.on('error', (error: Error) => (stream.broken ??= `the change-stream connection failed: ${error.message}`))
    connection.on('close', () => (stream.broken ??= 'the change-stream connection closed'))
    try {
      const id = String(await connection.client('ID'))
      await connection.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', id, 'BCAST', ...prefixes.flatMap((p) => ['PREFIX', p]))
      connection.on('messageBuffer', (channel: Buffer, message: Buffer | Buffer[] | null) => stream.receive(channel.toString(), message))
      await connection.subscribe(INVALIDATE_CHANNEL, stream.channel)
    } catch (error) {
      connection.disconnect()
      return {unavailable: `the server does not offer client tracking to this user (${(error as Error).message})`}
    }
    return {stream}
  }

  /** Why the stream can no longer be trusted, if it cannot. */
  get failure(): string | undefined {
    return this.broken
  }

  /** The keys with `prefix` reported since the previous take; forgets what it held. */
  take(prefix = this.prefixes[0]): Set<string> {
    const keys = new Set<string>()
    for (const entry of this.log) if ('keys' in entry) for (const key of entry.keys) if (key.startsWith(prefix)) keys.add(key)
    this.log = []
    return keys
  }

  /** A marker id to PUBLISH on `channel`; resolves once the stream has seen it. */
  marker(): {id: string; reached: Promise<void>} {
    const id = randomUUID()
    const reached = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the change stream did not deliver the census marker within 10 s')), 10_000)
      this.waiting.set(id, () => {
        clearTimeout(timer)
        resolve()
      })
    })
    reached.catch(() => {})
    return {id, reached}
  }

  /** The keys (any tracked prefix) around an instant marked `instant`, up to the `closing` marker, both already seen. */
  window(instant: string, closing: string): InstantWindow {
    const at = this.log.findIndex((e) => 'marker' in e && e.marker === instant)
    const end = this.log.findIndex((e) => 'marker' in e && e.marker === closing)
    const keysOf = (entries: Entry[]) => new Set(entries.flatMap((e) => ('keys' in e ? e.keys : [])))
    const after = this.log.slice(at + 1, end)
    // One report per prefix and turn, all of a turn's reports in a row: the instant's turn is the first report of each prefix.
    const firstReports = this.prefixes.flatMap((prefix) => after.find((e) => 'keys' in e && e.keys[0]?.startsWith(prefix)) ?? [])
    return {beforeInstant: keysOf(this.log.slice(0, at)), instantTurn: keysOf(firstReports), afterInstant: keysOf(after)}
  }

  close(): void {
    this.connection.disconnect()
  }

  private receive(channel: string, message: Buffer | Buffer[] | null): void {
    if (channel === this.channel) {
      const id = String(message)
      this.log.push({marker: id})
      this.waiting.get(id)?.()
      this.waiting.delete(id)
      return
    }
    if (channel !== INVALIDATE_CHANNEL) return
    // A null report means every key: FLUSHDB, FLUSHALL or SWAPDB ran.
    if (message === null) this.broken ??= 'the database was flushed while ops counted'
    else this.log.push({keys: (Array.isArray(message) ? message : [message]).map((key) => key.toString())})
  }
}
