import {duration} from 'ops-cli/base'

import type {PrimaryHealth, ReplicaLag, ReplicaProbe} from './server-health.js'
import type {TableName} from './table-name.js'

export interface ThrottleOptions {
  primary: PrimaryHealth
  table: TableName
  /** --max-replica-lag in ms; undefined: replicas are not watched. */
  maxReplicaLagMs?: number
  replicas: ReplicaProbe[]
  pauseOnAutovacuum: boolean
  /** How often a paused run looks again. */
  pollMs?: number
  /** A clear result is trusted this long, so N workers do not ask N times per batch. */
  freshMs?: number
}

/** 850ms, 2.5s, 12s, then the base's 4m 05s: short enough for a progress line. */
export function lagText(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`
  if (ms < 10_000) return `${(ms / 1000).toFixed(1).replace(/\.0$/, '')}s`
  if (ms < 60_000) return `${Math.round(ms / 1000)}s`
  return duration(ms)
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, {once: true})
    function done() {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
  })

/**
 * Holds every worker between batches while a replica lags more than allowed
 * or a vacuum works on the table (pt-archiver's --max-lag, GitLab's batched
 * migration health checks), and lets them go by itself once that is over.
 */
export class Throttle {
  /** Wall-clock time the run spent paused (counted once, whatever the number of workers). */
  pausedMs = 0
  private pausedSince?: number
  private checked?: {at: number; reason: string | undefined}
  private inFlight?: Promise<string | undefined>
  /** Per replica: the replay position last seen and since when it has not moved while behind. */
  private readonly stalls = new Map<string, {lsn: string | null; since: number}>()

  constructor(private readonly options: ThrottleOptions) {}

  get active(): boolean {
    return this.options.maxReplicaLagMs !== undefined || this.options.pauseOnAutovacuum
  }

  /** Resolves when no reason to pause is left, the signal aborts or the deadline passes; returns the total paused time. */
  async wait(signal: AbortSignal, deadline: number | undefined, onPause: (note: string) => void): Promise<number> {
    const poll = this.options.pollMs ?? 1000
    for (;;) {
      const reason = await this.reason(this.pausedSince !== undefined)
      const now = Date.now()
      if (reason === undefined) {
        if (this.pausedSince !== undefined) this.pausedMs += now - this.pausedSince
        this.pausedSince = undefined
        return this.pausedMs
      }
      this.pausedSince ??= now
      onPause(`paused: ${reason}`)
      if (signal.aborted || (deadline !== undefined && now >= deadline)) return this.pausedMs + (now - this.pausedSince)
      await sleep(deadline === undefined ? poll : Math.max(0, Math.min(poll, deadline - now)), signal)
    }
  }

  /** The first reason to pause now ("replica lag 12s > 5s"), or undefined. */
  private async reason(fresh: boolean): Promise<string | undefined> {
    const freshMs = this.options.freshMs ?? 500
    if (!fresh && this.checked && Date.now() - this.checked.at < freshMs) return this.checked.reason
    this.inFlight ??= this.measure().finally(() => (this.inFlight = undefined))
    const reason = await this.inFlight
    this.checked = {at: Date.now(), reason}
    return reason
  }

  private async measure(): Promise<string | undefined> {
    const {maxReplicaLagMs, pauseOnAutovacuum, primary, replicas, table} = this.options
    if (maxReplicaLagMs !== undefined) {
      // Only standbys: a logical consumer or a WAL archiver is no replica whose reads go stale (UNWATCHED says why).
      const onPrimary = (await primary.replicaLags()).filter((l) => l.kind === 'standby')
      const lags = [...onPrimary, ...(await Promise.all(replicas.map((r) => r.lag())))]
      const lost = lags.find((l) => l.unmeasurable !== undefined)
      if (lost) return `replica ${lost.name} cannot be measured (${lost.unmeasurable}): waiting for it`
      const worst = lags.map((l) => ({name: l.name, ms: this.effectiveLag(l)})).sort((a, b) => b.ms - a.ms)[0]
      if (worst && worst.ms > maxReplicaLagMs) return `replica lag ${lagText(worst.ms)} > ${lagText(maxReplicaLagMs)} (${worst.name})`
    }
    if (pauseOnAutovacuum) {
      const vacuum = await primary.vacuumOn(table)
      if (vacuum) return `${vacuum} on ${table.schema}.${table.name}`
    }
    return undefined
  }

  /**
   * The reported lag, or, for a replica that is behind and whose replay position
   * has not moved since we first saw it so (paused or stuck replay, when
   * PostgreSQL's own figure stays at its last value), how long that has lasted.
   */
  private effectiveLag(lag: ReplicaLag): number {
    const now = Date.now()
    if (!lag.behind) {
      this.stalls.delete(lag.name)
      return 0
    }
    const seen = this.stalls.get(lag.name)
    if (!seen || seen.lsn !== lag.replayLsn) this.stalls.set(lag.name, {lsn: lag.replayLsn, since: now})
    const stalledMs = now - (this.stalls.get(lag.name)?.since ?? now)
    return Math.max(lag.lagMs ?? 0, stalledMs)
  }
}
