import {Flags} from '@oclif/core'
import {connectionError, endpointOf, maskUrl, OpsError, resolveUrl, ResolvedUrl} from 'ops-cli/base'
import pg from 'pg'

import {DEFAULT_TABLE, parseTableName} from './table-name.js'
import {TaskManagerTable} from './task-manager-table.js'

export const DEFAULT_DATABASE_URL = 'postgres://localhost:5432/postgres'

/** The application_name of each writing command's main connection: what pg_stat_activity shows of a run. */
export const APPLICATION_NAMES = {clear: 'ops taskmanager:clear', restore: 'ops taskmanager:restore'} as const

/** Flags every taskmanager command shares. */
export const databaseFlags = {
  'database-url': Flags.string({
    description: `PostgreSQL URL of the Django database [env: DATABASE_URL] (default: ${DEFAULT_DATABASE_URL})`,
    helpValue: 'URL',
  }),
  table: Flags.string({
    description: 'The TaskManager table, optionally schema-qualified (quoted identifiers allowed).',
    default: DEFAULT_TABLE,
    helpValue: '[SCHEMA.]TABLE',
  }),
}

export function resolveDatabaseUrl(flag: string | undefined): ResolvedUrl {
  return resolveUrl({flag, env: 'DATABASE_URL', fallback: DEFAULT_DATABASE_URL})
}

/** An open connection and the resolved table, with what messages need to name it. */
export interface TaskManagerConnection {
  client: pg.Client
  table: TaskManagerTable
  url: string
  maskedUrl: string
  /** host:port, for messages. */
  endpoint: string
}

/** A connected client (15 s to connect, unless `options` say otherwise); a failed connect is closed and thrown as `failure(error)`. */
export async function connectPostgres(
  url: string,
  applicationName: string,
  failure: (error: unknown) => Error,
  options: Partial<pg.ClientConfig> = {},
): Promise<pg.Client> {
  const client = new pg.Client({connectionString: url, application_name: applicationName, connectionTimeoutMillis: 15_000, ...options})
  // A terminated backend also emits 'error'; the query in flight rejects with it, which is what we report.
  client.on('error', () => {})
  try {
    await client.connect()
  } catch (error) {
    await client.end().catch(() => {})
    throw failure(error)
  }
  return client
}

/**
 * Connects (failing with host and port named, password masked) and resolves the table. The session runs without a
 * statement_timeout: its counts and reports read the whole table (it has no index but the primary key), which on a
 * big one outlasts a role's usual limit (`ALTER ROLE app SET statement_timeout = '30s'`), and a clear must not fail
 * its plan, or its final count after every batch is done, on that. Every batch sets its own (--statement-timeout);
 * Ctrl-C during the plan cancels its count on the server.
 */
export async function openTaskManager(url: string, tableText: string, applicationName: string): Promise<TaskManagerConnection> {
  const tableName = parseTableName(tableText)
  const client = await connectPostgres(url, applicationName, (error) =>
    withUserHint(connectionError('PostgreSQL', url, 5432, error), url, error),
  )
  const endpoint = endpointOf(url, 5432)
  try {
    await client.query('SET statement_timeout = 0')
    const table = await TaskManagerTable.open(client, tableName, endpoint)
    return {client, table, url, maskedUrl: maskUrl(url), endpoint}
  } catch (error) {
    await client.end().catch(() => {})
    throw error
  }
}

/**
 * Refuses a server ops cannot write to, before the plan: a standby (pg_is_in_recovery()) or a read-only session
 * (default_transaction_read_only, e.g. a pooler in front of a replica). A dry run may plan there (say, to spare the
 * primary the counts): it gets the line to show among the plan's details.
 */
export async function refuseReadOnly(connection: TaskManagerConnection, dryRun: boolean, command: string): Promise<string | undefined> {
  const {rows} = await connection.client.query(
    `SELECT pg_is_in_recovery() AS standby, current_setting('transaction_read_only') = 'on' AS read_only`,
  )
  const what = rows[0].standby
    ? 'a standby (pg_is_in_recovery() is true)'
    : rows[0].read_only
      ? 'read-only (default_transaction_read_only is on)'
      : undefined
  if (what === undefined) return undefined
  if (!dryRun)
    throw new OpsError(`${connection.maskedUrl} is ${what}: ${command} can only plan there (--dry-run); nothing was changed.`, {
      exit: 2,
      suggestions: ['Point --database-url (or DATABASE_URL) at the primary'],
    })
  return `Read-only server: ${connection.maskedUrl} is ${what}; these counts are its own, and the real run must go to the primary`
}

/**
 * Stops what `connection` is doing on the server, then closes it (for Ctrl-C during a plan). A closed socket alone
 * would not stop a statement in flight (the backend notices only when it next writes to it): a count of a big
 * table, or one queued behind a migration's lock, would run on. So a second connection of the same role cancels it
 * (pg_cancel_backend) first, and the closed connection starts no statement after it.
 */
export async function cancelAndClose(connection: TaskManagerConnection | undefined, applicationName: string): Promise<void> {
  if (!connection) return
  const pid = (connection.client as unknown as {processID?: number}).processID
  if (pid) {
    const canceller = await connectPostgres(connection.url, applicationName, (error) => error as Error).catch(() => undefined)
    await canceller?.query('SELECT pg_cancel_backend($1)', [pid]).catch(() => {})
    await canceller?.end().catch(() => {})
  }
  await connection.client.end().catch(() => {})
}

/** The user pg logs in as (the URL's, else PGUSER, else USER: node-postgres' defaults), as a sentence. */
function userTried(url: string): string {
  let fromUrl = ''
  try {
    fromUrl = decodeURIComponent(new URL(url).username)
  } catch {
    // An unparseable URL fails elsewhere with its own message.
  }
  if (fromUrl) return `Tried user "${fromUrl}" (from the URL).`
  if (process.env.PGUSER) return `Tried user "${process.env.PGUSER}" (from PGUSER).`
  if (process.env.USER) return `Tried user "${process.env.USER}" (from USER: the URL names none).`
  return 'No user name was tried: the URL names none and neither PGUSER nor USER is set.'
}

/** 28000 (no user, unknown role, refused by pg_hba.conf) and 28P01 (bad password): the server did not accept the user. */
const USER_REJECTED = new Set(['28000', '28P01'])

/** When the server did not accept the user: which user was tried, and how to name another. */
function withUserHint(error: OpsError, url: string, cause: unknown): OpsError {
  if (!USER_REJECTED.has((cause as {code?: string})?.code ?? '')) return error
  return new OpsError(`${error.message}\n${userTried(url)}`, {
    cause,
    suggestions: ['Name the user in the URL: --database-url postgres://USER@host:5432/db', 'or set PGUSER=USER (DATABASE_URL works too)'],
  })
}
