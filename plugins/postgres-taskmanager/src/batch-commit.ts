/**
 * How a clear's batches commit. The single DELETE it replaces is durable once, at its COMMIT; a walk of short
 * transactions that each waited for the disk paid one WAL flush per batch, in series with the work (and every stall of
 * the disk). So by default a batch commits asynchronously (synchronous_commit off, for ops' own transactions only), but
 * the short one that ends a walk commits synchronously, which flushes every batch before it too; where a walk ended
 * otherwise, the run waits, before it reports, until the server has flushed its WAL that far (its WAL writer does within
 * three wal_writer_delays). A crash of the server mid-run can undo only the batches of its last moment, as consistent
 * transactions, and a re-run deletes their rows.
 */
export interface BatchCommit {
  /** Batches commit without waiting for the disk: the run then waits for the WAL flush before it reports. */
  asynchronous: boolean
  /** The synchronous_commit each batch sets for itself; undefined keeps the session's. */
  setting?: 'off' | 'on'
  /** Why, in the plan's words. */
  reason: string
}

export interface CommitSettings {
  /** The session's synchronous_commit. */
  level: string
  /** synchronous_standby_names: where set (and the level is on), every commit also waits for those standbys. */
  synchronousStandbys: string
}

export function chooseBatchCommit(settings: CommitSettings, synchronousFlag: boolean): BatchCommit {
  if (synchronousFlag) return {asynchronous: false, setting: settings.level === 'off' ? 'on' : undefined, reason: '--synchronous-commit'}
  if (settings.level === 'off') return {asynchronous: true, reason: 'synchronous_commit is off for this session'}
  if (settings.level !== 'on') return {asynchronous: false, reason: `synchronous_commit is ${settings.level} for this session, kept`}
  // A synchronous standby paces every commit to itself: the run keeps that pace rather than fill its queue.
  if (settings.synchronousStandbys.trim() !== '')
    return {
      asynchronous: false,
      reason: `synchronous standbys are configured (synchronous_standby_names = '${settings.synchronousStandbys}')`,
    }
  return {asynchronous: true, setting: 'off', reason: "synchronous_commit off in ops' own transactions"}
}

/** Makes this transaction's COMMIT wait for the disk: a short batch's, where batches commit asynchronously (durableWhenShort). */
export const SYNCHRONOUS_COMMIT = "SELECT set_config('synchronous_commit', 'on', true)"

/** The set_config of a batch's synchronous_commit, to append to its other set_configs ('' keeps the session's). */
export const commitSettingSql = (setting?: 'off' | 'on'): string =>
  setting ? `, set_config('synchronous_commit', '${setting}', true)` : ''

/** Whether a batch commits synchronously to end the walk durably: asked to, it picked fewer rows than its limit and deleted some. */
export const endsDurably = (request: {durableWhenShort?: boolean; limit: number}, picked: number, deleted: number): boolean =>
  request.durableWhenShort === true && picked < request.limit && deleted > 0

/** The plan's line about commits. */
export function describeBatchCommit(commit: BatchCommit): string {
  return commit.asynchronous
    ? `Batches commit asynchronously (${commit.reason}); the run waits until the server has flushed them to disk ` +
        'before it reports (--synchronous-commit waits at every batch)'
    : `Every batch waits at its COMMIT until it is durable (${commit.reason})`
}
