/**
 * A real PgBouncer in transaction pooling mode in front of the harness's PostgreSQL, from the local binary (Debian's
 * pgbouncer package), on a free loopback port, as production puts one in front of a Django database. It logs in to
 * the server as the harness's admin user whatever user a client names (auth_type any). Stopped by stopAll().
 */
import {spawn} from 'node:child_process'
import {existsSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import pg from 'pg'

import {needPackage} from './requirements.js'
import {
  freePort,
  onStopAll,
  postgresServerOnce,
  postgresUser,
  registerExitKill,
  serverDirectory,
  stopProcess,
  waitFor,
  which,
} from './servers.js'

export interface PgBouncer {
  /** The URL of `database` through the pooler. */
  url(database: string): string
  stop(): Promise<void>
}

/** Where Debian installs it: /usr/sbin, which a user's PATH may not have. */
export const pgbouncerBinary = (): string | undefined =>
  which('pgbouncer') ?? (existsSync('/usr/sbin/pgbouncer') ? '/usr/sbin/pgbouncer' : undefined)

/**
 * `poolSize` server connections per database; `connectQuery` runs on each new server connection before any client
 * gets it (as an installation's defaults would).
 */
export async function startPgBouncer(options: {poolSize: number; connectQuery?: string}): Promise<PgBouncer> {
  needPackage('pgbouncer')
  const server = new URL((await postgresServerOnce()).adminUrl)
  const dir = serverDirectory('ops-test-pgbouncer-')
  const port = await freePort()
  const target = [
    `host=${server.hostname}`,
    `port=${server.port || '5432'}`,
    `user=${decodeURIComponent(server.username) || 'postgres'}`,
    ...(server.password ? [`password=${decodeURIComponent(server.password)}`] : []),
    ...(options.connectQuery ? [`connect_query='${options.connectQuery}'`] : []),
  ].join(' ')
  const config = join(dir, 'pgbouncer.ini')
  writeFileSync(
    config,
    [
      '[databases]',
      `* = ${target}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = any',
      'pool_mode = transaction',
      `default_pool_size = ${options.poolSize}`,
      'max_client_conn = 100',
      // node-postgres sends it at start-up; PgBouncer would refuse an unknown start-up parameter.
      'ignore_startup_parameters = extra_float_digits',
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      '',
    ].join('\n'),
  )
  const user = postgresUser()
  const child = spawn(pgbouncerBinary()!, [config], {...(user ? {uid: user.uid, gid: user.gid} : {}), stdio: 'ignore'})
  registerExitKill(child)
  const stop = () => stopProcess(child, 'SIGINT')
  onStopAll(stop)
  const url = (database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`
  await waitFor('PgBouncer', async () => {
    if (child.exitCode !== null) throw new Error(`pgbouncer exited with ${child.exitCode}`)
    const client = new pg.Client({connectionString: url('postgres')})
    await client.connect()
    await client.end()
  })
  return {url, stop}
}
