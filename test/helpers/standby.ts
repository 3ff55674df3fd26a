/**
 * A real streaming standby of the harness's throwaway PostgreSQL, from local
 * binaries: `pg_basebackup -R` (which writes primary_conninfo and
 * standby.signal) and a second postmaster on a free loopback port. As root,
 * both run as the `postgres` user, as the harness's primary does. Stopped by
 * stopAll() before the primary. Passes on servers.ts's postmaster helpers to
 * the bench (its durable server).
 */
import {ChildProcess, spawn} from 'node:child_process'
import {join} from 'node:path'

import pg from 'pg'

import {
  type LocalPostgres,
  onStopAll,
  postgresServerOnce,
  postgresUser,
  registerExitKill,
  runAsServerUser,
  serverDirectory,
  startPostmaster,
  stopProcess,
  waitFor,
  which,
} from './servers.js'

export type {LocalPostgres}
export {runAsServerUser, serverDirectory, startPostmaster}

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
  // Status every second, so the primary's pg_stat_replication sees replay move (or not) quickly;
  // max_connections as the primary's (a standby needs at least as many).
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

/**
 * A replication client of PostgreSQL's own that is no standby (pg_receivewal, as Barman's streaming archiver runs it, or
 * pg_recvlogical, a logical replication consumer), run as the server's user; stopped by stopAll() if the test does not.
 */
export function startReplicationClient(
  binary: 'pg_receivewal' | 'pg_recvlogical',
  args: string[],
): {child: ChildProcess; stop(): Promise<void>} {
  const path = which(binary)
  if (!path) throw new Error(`${binary} is not on PATH`)
  const user = postgresUser()
  const child = spawn(path, args, {...(user ? {uid: user.uid, gid: user.gid} : {}), stdio: 'ignore'})
  registerExitKill(child)
  const stop = () => stopProcess(child, 'SIGINT')
  onStopAll(stop)
  return {child, stop}
}
