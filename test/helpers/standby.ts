/**
 * A real streaming standby of the harness's throwaway PostgreSQL, from local
 * binaries: `pg_basebackup -R` (which writes primary_conninfo and
 * standby.signal) and a second postmaster on a free loopback port. As root,
 * both run as the `postgres` user, as the harness's primary does. Stopped by
 * stopAll() before the primary. Also the one place that starts a postmaster
 * on a data directory for other helpers (the bench's durable server).
 */
import {execFileSync, spawn} from 'node:child_process'
import {chownSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import pg from 'pg'

import {freePort, onStopAll, postgresServerOnce, postgresUser, registerExitKill, stopProcess, waitFor, which} from './servers.js'

export interface LocalPostgres {
  port: number
  /** The URL of `database` on this server. */
  url(database: string): string
  stop(): Promise<void>
}

/** A temporary directory the server's user owns. */
export function serverDirectory(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  const user = postgresUser()
  if (user) chownSync(dir, user.uid, user.gid)
  return dir
}

/** Runs a binary of PostgreSQL's as the server's user. */
export function runAsServerUser(binary: string, args: string[]): void {
  const user = postgresUser()
  execFileSync(binary, args, {...(user ? {uid: user.uid, gid: user.gid} : {}), stdio: 'pipe'})
}

/** Starts a postmaster on `data` with `settings` (-c name=value) and waits until it accepts connections. */
export async function startPostmaster(dir: string, data: string, settings: Record<string, string>): Promise<LocalPostgres> {
  const postgres = which('postgres')
  if (!postgres) throw new Error('postgres is not on PATH')
  const user = postgresUser()
  const port = await freePort()
  const args = [
    '-D',
    data,
    '-p',
    String(port),
    '-k',
    dir,
    '-c',
    'listen_addresses=127.0.0.1',
    ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
  ]
  const child = spawn(postgres, args, {...(user ? {uid: user.uid, gid: user.gid} : {}), stdio: ['ignore', 'ignore', 'pipe']})
  let log = ''
  child.stderr?.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)))
  registerExitKill(child)
  let stopped = false
  const server: LocalPostgres = {
    port,
    url: (database) => `postgres://postgres@127.0.0.1:${port}/${database}`,
    async stop() {
      if (stopped) return
      stopped = true
      await stopProcess(child, 'SIGINT') // fast shutdown
      rmSync(dir, {recursive: true, force: true})
    },
  }
  onStopAll(() => server.stop())
  await waitFor('local PostgreSQL', async () => {
    if (child.exitCode !== null) throw new Error(`postgres exited: ${log}`)
    const client = new pg.Client({connectionString: server.url('postgres')})
    await client.connect()
    await client.end()
  })
  return server
}

export interface Standby extends LocalPostgres {
  /** Waits until the standby has replayed everything the primary has written so far. */
  caughtUp(primaryUrl: string): Promise<void>
}

/**
 * A hot standby streaming from the harness's primary, or undefined when the
 * primary is not one the harness started from binaries (a URL or a container).
 */
export async function startStandby(): Promise<Standby | undefined> {
  const primary = await postgresServerOnce()
  const basebackup = which('pg_basebackup')
  if (primary.how !== 'binaries' || !basebackup || !which('postgres')) return undefined
  const {port} = new URL(primary.adminUrl)
  const dir = serverDirectory('ops-test-standby-')
  const data = join(dir, 'data')
  runAsServerUser(basebackup, [
    '-h',
    '127.0.0.1',
    '-p',
    port,
    '-U',
    'postgres',
    '-D',
    data,
    '-R',
    '-X',
    'stream',
    '--checkpoint=fast',
    '--no-sync',
  ])
  // Status every second, so the primary's pg_stat_replication sees replay move (or not) quickly; max_connections as the primary's (a standby needs at least as many).
  const server = await startPostmaster(dir, data, {
    hot_standby: 'on',
    wal_receiver_status_interval: '1s',
    fsync: 'off',
    max_connections: '200',
  })
  return {
    ...server,
    async caughtUp(primaryUrl: string) {
      const db = new pg.Client({connectionString: primaryUrl})
      await db.connect()
      const {rows} = await db.query('SELECT pg_current_wal_lsn()::text AS lsn')
      await db.end()
      await waitFor('standby replay', async () => {
        const replica = new pg.Client({connectionString: server.url('postgres')})
        await replica.connect()
        try {
          const {rows: r} = await replica.query('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done', [rows[0].lsn])
          if (!r[0].done) throw new Error('not yet')
        } finally {
          await replica.end()
        }
      })
    },
  }
}
