import {Flags} from '@oclif/core'
import {connectionError, endpointOf, maskUrl, OpsError, resolveUrl, ResolvedUrl} from 'ops-cli/base'
import pg from 'pg'

import {readWithoutTimeout} from './long-read.js'
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
  // TCP keepalives, as libpq sends by default, every 30 s of silence: a load balancer or NAT that drops connections idle
  // for some minutes (350 s on some clouds) keeps this one through a long look at the prompt or a paused run.
  const client = new pg.Client({
    connectionString: url,
    application_name: applicationName,
    connectionTimeoutMillis: 15_000,
    keepAlive: true,
    keepAliveInitialDelayMillis: 30_000,
    ...options,
  })
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
 * Connects (failing with host and port named, password masked) and resolves the table. It changes no setting of the
 * session: long reads go through readWithoutTimeout(), every batch sets its own limits with SET LOCAL.
 */
export async function openTaskManager(url: string, tableText: string, applicationName: string): Promise<TaskManagerConnection> {
  const tableName = parseTableName(tableText)
  const client = await connectPostgres(url, applicationName, (error) =>
    withUserHint(connectionError('PostgreSQL', url, 5432, error), url, error),
  )
  const endpoint = endpointOf(url, 5432)
  try {
    const table = await readWithoutTimeout(client, () => TaskManagerTable.open(client, tableName, endpoint))
    return {client, table, url, maskedUrl: maskUrl(url), endpoint}
  } catch (error) {
    await client.end().catch(() => {})
    throw error
  }
}

/**
 * Closes a connection that stopped answering without saying goodbye: end() would wait for a silently dropped or hung
 * peer to acknowledge, and keep ops from going on (or from exiting).
 */
export function abandon(client: pg.Client): void {
  client.connection.stream.destroy()
}

/**
 * `connection` if it still answers (a SELECT 1 within 5 s), else a new one to the same table, the old one closed: for
 * a run confirmed after a wait at the prompt, during which a server's idle_session_timeout, a DBA's
 * pg_terminate_backend or a load balancer's idle limit may have closed it (a silently dropped one would hang).
 */
export async function reopenIfClosed(connection: TaskManagerConnection, applicationName: string): Promise<TaskManagerConnection> {
  try {
    await connection.client.query({text: 'SELECT 1', query_timeout: 5000} as pg.QueryConfig)
    return connection
  } catch {
    abandon(connection.client)
    return openTaskManager(connection.url, connection.table.sql, applicationName)
  }
}

/**
 * While a run works, sends `pings` (a SELECT 1 on each of its connections) every half of the server's
 * idle_session_timeout, when it has one: a connection that waits (the main one while workers delete, a worker while
 * its run is paused for a replica or a vacuum, or sleeps between batches) is not closed under it. node-postgres queues
 * a ping sent during a batch behind the batch's statement, inside its transaction, where it does no harm. Returns
 * the function that stops them.
 */
export function keepAwake(pings: (() => Promise<void>)[], idleSessionTimeoutMs: number): () => void {
  if (idleSessionTimeoutMs <= 0) return () => {}
  const timer = setInterval(() => {
    for (const ping of pings) ping().catch(() => {})
  }, idleSessionTimeoutMs / 2)
  return () => clearInterval(timer)
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

/** What node-postgres keeps of a connection's cancel key (BackendKeyData) and where it connected. */
interface CancelKey {
  processID?: number
  secretKey?: number
  host?: string
  port?: number
}

/** The part of pg's protocol Connection a CancelRequest needs (what pg.Client#cancel uses; @types/pg omits it). */
interface CancelConnection {
  readonly stream: {destroy(): void}
  connect(port: number | string, host?: string): void
  cancel(processID: number, secretKey: number): void
  on(event: 'connect' | 'end' | 'error', listener: () => void): void
}

/**
 * Stops what `connection` is doing on the server, then closes it (for Ctrl-C during a plan). A closed socket alone
 * would not stop a statement in flight (the backend notices only when it next writes to it): a count of a big
 * table, or one queued behind a migration's lock, would run on. So it is cancelled first with the protocol's
 * CancelRequest and the connection's own key, as psql's Ctrl-C does: that needs no privilege, and through a pooler
 * (PgBouncer) it reaches the server connection the statement runs on, where the process id the pooler gave the
 * client is not a backend's and pg_cancel_backend() of it could hit another. Waits at most 2 s for the server.
 */
export async function cancelAndClose(connection: TaskManagerConnection | undefined): Promise<void> {
  if (!connection) return
  const {processID, secretKey, host, port} = connection.client as unknown as CancelKey
  if (processID !== undefined && secretKey !== undefined && host && port) {
    const request = new pg.Connection() as unknown as CancelConnection
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, 2000)
      function done() {
        clearTimeout(timer)
        request.stream.destroy()
        resolve()
      }
      // The server reads the request, acts on it and closes the socket without a reply.
      request.on('connect', () => request.cancel(processID, secretKey))
      request.on('end', done)
      request.on('error', done)
      // A host that is a directory is a Unix socket's, as pg itself connects to it.
      if (host.startsWith('/')) request.connect(`${host}/.s.PGSQL.${port}`)
      else request.connect(port, host)
    })
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
