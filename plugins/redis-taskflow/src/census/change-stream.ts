import {randomUUID} from 'node:crypto'

import type {Redis} from 'ioredis'

/** The channel Redis redirects client-tracking invalidations to (RESP2). */
const INVALIDATE_CHANNEL = '__redis__:invalidate'

/**
 * The start of the fence prefix: its '~' sorts after every letter, so in a
 * turn the fence's report comes after the one of the tracked `task:` prefix.
 */
const FENCE_PREFIX_START = '~ops:census-fence:'

export type ChangeStreamStart = {stream: ChangeStream} | {unavailable: string}

/** What arrived on the stream, in the server's order: changed keys, a marker, or the fence of an instant's turn. */
type Entry = {keys: string[]} | {marker: string} | {fence: true}

/** How the change stream saw one instant. */
export interface InstantWindow {
  /** Keys changed after the take, reported before the instant's marker: changed before the instant. */
  beforeInstant: Set<string>
  /** Keys changed in the server's event-loop turn of the instant, before or after it: the order inside a turn is not reported. */
  instantTurn: Set<string>
  /** Where the instant's turn ends in the stream (for `reportedSince`). */
  end: number
}

/**
 * Learns which keys with the given prefixes change, from client-side-caching
 * invalidations (CLIENT TRACKING ON BCAST PREFIX ... REDIRECT to this stream's
 * own connection). No server setting is changed: the tracking belongs to the
 * connection and ends with it, also when ops is killed. Redis reports every
 * write, deletion, expiry and eviction of a tracked key, and a flush as "all
 * keys".
 *
 * BCAST reports are sent once per event-loop turn, after the turn's commands,
 * one report per prefix in the prefixes' byte order, while a PUBLISH reaches
 * the stream at once. So a marker published inside an instant's script is
 * followed by the reports of the script's own turn; the script then writes
 * and deletes a fence key under a prefix that sorts last, and the fence's
 * report closes that turn exactly. Where the server refuses the fence write
 * (ACL, out of memory) the turn's end is not known: a closing marker published
 * after the script bounds it, and the first report of each prefix after the
 * instant's marker counts as the instant's turn.
 */
export class ChangeStream {
  /** Entries from `base` on; earlier ones are forgotten. */
  private log: Entry[] = []
  private base = 0
  private takenAt = 0
  private waiters: {from: number; test: (entry: Entry) => boolean; resolve: () => void}[] = []
  private broken: string | undefined
  readonly channel = `ops:census-marker:${randomUUID()}`
  /** Keys under this prefix are the fence: tracked, written and deleted only by ops' instant script. */
  readonly fencePrefix = `${FENCE_PREFIX_START}${randomUUID()}:`

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
      const tracked = [...prefixes, stream.fencePrefix].flatMap((p) => ['PREFIX', p])
      await connection.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', id, 'BCAST', ...tracked)
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

  /** The keys with `prefix` reported since the previous take. */
  take(prefix = this.prefixes[0]): Set<string> {
    const keys = this.keysIn(this.takenAt, this.end, prefix)
    this.takenAt = this.end
    return keys
  }

  /** A marker id to PUBLISH on `channel`. */
  marker(): string {
    return randomUUID()
  }

  /** Resolves once the stream has seen `marker`, and, when `fenced`, the fence report after it. */
  async reached(marker: string, fenced: boolean): Promise<void> {
    await this.until(0, (e) => 'marker' in e && e.marker === marker, `the census marker`)
    if (fenced) await this.until(this.indexOf(marker), (e) => 'fence' in e, `the report of the census fence`)
  }

  /**
   * The instant marked `marker`, already reached: what changed between the
   * take before it and the marker, and in its turn (up to the fence, or when
   * not `fenced` the first report of each prefix before `closing`).
   */
  window(marker: string, fenced: boolean, closing?: string): InstantWindow {
    const at = this.indexOf(marker)
    const beforeInstant = this.keysIn(Math.min(this.takenAt, at), at)
    if (fenced) {
      const end = this.findFrom(at, (e) => 'fence' in e)
      return {beforeInstant, instantTurn: this.keysIn(at + 1, end), end}
    }
    const end = closing === undefined ? this.end : this.indexOf(closing)
    const after = this.log.slice(at + 1 - this.base, end - this.base)
    // One report per prefix and turn, all of a turn's reports in a row: the instant's turn is at most the first report of each prefix.
    const first = this.prefixes.flatMap((p) => after.find((e) => 'keys' in e && e.keys[0]?.startsWith(p)) ?? [])
    return {beforeInstant, instantTurn: new Set(first.flatMap((e) => ('keys' in e ? e.keys : []))), end}
  }

  /** Keys reported after `marker` up to position `end` (a window's end). */
  reportedSince(marker: string, end: number): Set<string> {
    return this.keysIn(this.indexOf(marker) + 1, end)
  }

  /** Forgets what was reported before `marker` and already taken (entries no later question reaches back to). */
  forgetBefore(marker: string): void {
    const at = Math.min(this.indexOf(marker), this.takenAt)
    this.log = this.log.slice(at - this.base)
    this.base = at
  }

  close(): void {
    this.connection.disconnect()
  }

  private get end(): number {
    return this.base + this.log.length
  }

  private indexOf(marker: string): number {
    const i = this.log.findIndex((e) => 'marker' in e && e.marker === marker)
    if (i < 0) throw new Error(`the census marker ${marker} is not in the change stream`)
    return this.base + i
  }

  private findFrom(from: number, test: (entry: Entry) => boolean): number {
    for (let i = Math.max(from, this.base); i < this.end; i++) if (test(this.log[i - this.base])) return i
    return this.end
  }

  private keysIn(from: number, to: number, prefix = ''): Set<string> {
    const keys = new Set<string>()
    for (let i = Math.max(from, this.base); i < to; i++) {
      const entry = this.log[i - this.base]
      if ('keys' in entry) for (const key of entry.keys) if (key.startsWith(prefix)) keys.add(key)
    }
    return keys
  }

  private until(from: number, test: (entry: Entry) => boolean, what: string): Promise<void> {
    if (this.findFrom(from, test) < this.end) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter)
        reject(new Error(`the change stream did not deliver ${what} within 10 s`))
      }, 10_000)
      const waiter = {
        from,
        test,
        resolve: () => {
          clearTimeout(timer)
          resolve()
        },
      }
      this.waiters.push(waiter)
    })
  }

  private receive(channel: string, message: Buffer | Buffer[] | null): void {
    let entry: Entry
    if (channel === this.channel) entry = {marker: String(message)}
    else if (channel !== INVALIDATE_CHANNEL) return
    // A null report means every key: FLUSHDB, FLUSHALL or SWAPDB ran.
    else if (message === null) {
      this.broken ??= 'the database was flushed while ops counted'
      return
    } else {
      const keys = (Array.isArray(message) ? message : [message]).map((key) => key.toString())
      entry = keys[0]?.startsWith(this.fencePrefix) ? {fence: true} : {keys}
    }
    this.log.push(entry)
    const ready = this.waiters.filter((w) => this.end - 1 >= w.from && w.test(entry))
    this.waiters = this.waiters.filter((w) => !ready.includes(w))
    for (const waiter of ready) waiter.resolve()
  }
}
