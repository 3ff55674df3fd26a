import {Flags} from '@oclif/core'
import {connectionError, endpointOf, maskUrl, resolveUrl, ResolvedUrl} from 'ops-cli/base'
import pg from 'pg'

import {DEFAULT_TABLE, parseTableName} from './table-name.js'
import {TaskManagerTable} from './task-manager-table.js'

export const DEFAULT_DATABASE_URL = 'postgres://localhost:5432/postgres'

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

/** Connects (failing with host and port named, password masked) and resolves the table. */
export async function openTaskManager(url: string, tableText: string, applicationName: string): Promise<TaskManagerConnection> {
  const tableName = parseTableName(tableText)
  const client = new pg.Client({connectionString: url, application_name: applicationName, connectionTimeoutMillis: 15_000})
  // A terminated backend also emits 'error'; the query in flight rejects with it, which is what we report.
  client.on('error', () => {})
  try {
    await client.connect()
  } catch (error) {
    await client.end().catch(() => {})
    throw connectionError('PostgreSQL', url, 5432, error)
  }
  const endpoint = endpointOf(url, 5432)
  try {
    const table = await TaskManagerTable.open(client, tableName, endpoint)
    return {client, table, url, maskedUrl: maskUrl(url), endpoint}
  } catch (error) {
    await client.end().catch(() => {})
    throw error
  }
}
