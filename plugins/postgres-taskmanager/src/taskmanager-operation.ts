import {OpsError} from 'ops-cli/base'
import type {DestructiveOperation, Plan, Step, Summary} from 'ops-cli/base'

import {APPLICATION_NAMES, cancelAndClose, openTaskManager, refuseReadOnly, reopenIfClosed, TaskManagerConnection} from './connection.js'
import {readWithoutTimeout} from './long-read.js'
import {summaryLines} from './summary-format.js'

/** lock_not_available: a lock waited for longer than lock_timeout. */
const LOCK_NOT_AVAILABLE = '55P03'

/** What a writing taskmanager command needs to open its main connection. */
export interface TaskManagerTarget {
  url: string
  table: string
  /** --dry-run: the plan may then be made on a read-only server (a standby). */
  dryRun?: boolean
}

/**
 * What clear and restore do alike with their main connection: open it (a read-only server refused but for a dry run),
 * read the plan in one read-only transaction without the role's statement_timeout, cancel that read on Ctrl-C, open
 * the connection again if it was closed while the prompt waited, and print the seed's summaries.
 */
export abstract class TaskManagerOperation<P extends Plan> implements DestructiveOperation<P> {
  protected connection?: TaskManagerConnection
  /** The plan's line about a read-only server, for a dry run there. */
  protected readOnly?: string

  protected constructor(
    private readonly main: TaskManagerTarget,
    private readonly command: keyof typeof APPLICATION_NAMES,
  ) {}

  abstract connect(): Promise<void>
  /** The plan's reads, run by plan() inside readWithoutTimeout(). */
  protected abstract readPlan(): Promise<P>
  abstract steps(plan: P): Step[]
  abstract disconnect(): Promise<void>

  /** The main connection, its application_name the command's (APPLICATION_NAMES). */
  protected get applicationName(): string {
    return APPLICATION_NAMES[this.command]
  }

  protected get db(): TaskManagerConnection {
    if (!this.connection) throw new Error('not connected')
    return this.connection
  }

  /** Opens the main connection; a standby or read-only session is refused unless this is a dry run. */
  protected async openConnection(): Promise<TaskManagerConnection> {
    this.connection = await openTaskManager(this.main.url, this.main.table, this.applicationName)
    this.readOnly = await refuseReadOnly(this.connection, this.main.dryRun ?? false, `taskmanager:${this.command}`)
    return this.connection
  }

  /** Every read of the plan in one read-only transaction, without the role's statement_timeout. */
  async plan(): Promise<P> {
    try {
      return await readWithoutTimeout(this.db.client, () => this.readPlan())
    } catch (error) {
      // The role's lock_timeout is a DBA's guard, kept: the plan says who holds the table instead of PostgreSQL's bare message.
      if ((error as {code?: string}).code !== LOCK_NOT_AVAILABLE) throw error
      const holders = await this.db.table.lockHolders().catch(() => [])
      const who = holders.map((h) => `pid ${h.pid} (${h.application}: ${h.query})`).join('; ')
      throw new OpsError(
        `${this.db.table.displayName} is locked by another session${who ? `: ${who}` : ''}. The plan waited as long as ` +
          `this role's lock_timeout allows (${(error as Error).message}). Nothing was changed. Run again once the lock is released.`,
        {cause: error},
      )
    }
  }

  /** Ctrl-C during the plan: the read in flight is cancelled on the server, and nothing else starts. */
  async cancelPlan(): Promise<void> {
    await cancelAndClose(this.connection)
  }

  /** Confirmed: the main connection is checked, and opened again (with what holds it, reopened()) if it was closed. */
  async resume(): Promise<void> {
    const before = this.db
    this.connection = await reopenIfClosed(before, this.applicationName)
    if (this.connection !== before) await this.reopened(this.connection)
  }

  /** After resume() opened a new main connection: whatever held the old one is made again on `connection`. */
  protected async reopened(_connection: TaskManagerConnection): Promise<void> {}

  async summary(): Promise<Summary> {
    const {statuses, modules} = await this.db.table.summaries()
    return {lines: summaryLines(statuses, modules), data: {statuses, modules}}
  }
}
