/**
 * How a clear's batches commit. The single DELETE it replaces is durable once, at its COMMIT; a walk of short
 * transactions that each waited for the disk paid one WAL flush per batch, in series with the work (and every stall of
 * the disk). So by default a batch commits asynchronously (synchronous_commit off, for ops' own transactions only) and
 * the walk ends with one synchronous commit, before anything is reported: a crash of the server mid-run can undo only
 * the batches of its last moment, as consistent transactions, and a re-run deletes their rows.
 */
export interface BatchCommit {
  asynchronous: boolean
  /** Why, in the plan's words. */
  reason: string
}

export interface CommitSettings {
  /** The session's synchronous_commit. */
  level: string
  /** synchronous_standby_names: where set (and the level is on), every commit also waits for those standbys. */
  synchronousStandbys: string
  /** The durable end writes a temporary table's catalog rows (TaskManagerTable.makeDurable()). */
  mayCreateTemporaryTables: boolean
}

export function chooseBatchCommit(settings: CommitSettings, synchronousFlag: boolean): BatchCommit {
  if (synchronousFlag) return {asynchronous: false, reason: '--synchronous-commit'}
  if (settings.level !== 'on') return {asynchronous: false, reason: `synchronous_commit is ${settings.level} for this session, kept`}
  // A synchronous standby paces every commit to itself: the run keeps that pace rather than fill its queue.
  if (settings.synchronousStandbys.trim() !== '')
    return {
      asynchronous: false,
      reason: `synchronous standbys are configured (synchronous_standby_names = '${settings.synchronousStandbys}')`,
    }
  if (!settings.mayCreateTemporaryTables)
    return {asynchronous: false, reason: 'this role may not create temporary tables, which the durable end of the run needs'}
  return {asynchronous: true, reason: "synchronous_commit off in ops' own transactions"}
}

/** The plan's line about commits. */
export function describeBatchCommit(commit: BatchCommit): string {
  return commit.asynchronous
    ? `Batches commit asynchronously (${commit.reason}); one synchronous commit at the end makes them all durable ` +
        'before anything is reported (--synchronous-commit waits at every batch)'
    : `Every batch waits at its COMMIT until it is durable (${commit.reason})`
}
