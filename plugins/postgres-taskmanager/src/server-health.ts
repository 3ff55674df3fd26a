import {connectionError, maskUrl, OpsError, plural} from 'ops-cli/base'
import pg from 'pg'

import {abandon, connectPostgres} from './connection.js'
import {qualified, quoteIdent, TableName} from './table-name.js'

/**
 * What a walsender on the primary feeds (pg_stat_replication lists them all): a standby that replays the WAL, a logical
 * replication consumer (Debezium, a subscription: its position is what it has acknowledged, which a consumer with
 * nothing to do for its tables may leave behind for ever), or a client that receives WAL and replays none
 * (pg_receivewal, such as Barman's streaming archiver, and pg_basebackup: no replay position at all).
 */
export type WalReceiverKind = 'standby' | 'logical' | 'wal-only'

/** Why --max-replica-lag does not wait for a kind of receiver, as the plan says it. */
export const UNWATCHED: Record<Exclude<WalReceiverKind, 'standby'>, string> = {
  logical: 'a logical replication consumer: its position is what it acknowledged',
  'wal-only': 'receives WAL and replays none, as pg_receivewal and pg_basebackup do',
}

/** How far one replica is behind, as measured on the primary or on the replica itself. */
export interface ReplicaLag {
  /** application_name or client address on the primary; the masked URL for a --replica-url. */
  name: string
  /** On the primary, what the walsender feeds (a --replica-url is always a standby). */
  kind: WalReceiverKind
  /** The replica has not replayed everything the primary sent it. */
  behind: boolean
  /** Milliseconds of lag as PostgreSQL reports it; null when it reports none. */
  lagMs: number | null
  /** The replayed position, to tell a stalled replica from one that is catching up. */
  replayLsn: string | null
  /** Why the replica cannot be measured now (lost connection, timeout, promoted): the run waits for it. */
  unmeasurable?: string
}

/** The SQL that watches the primary's replicas and vacuum on the table (read-only, catalog views only). */
export class PrimaryHealth {
  constructor(private readonly client: pg.Client) {}

  /**
   * pg_stat_replication shows a standby's positions, and pg_stat_progress_vacuum the table a vacuum works on, only to
   * roles with the privileges of pg_read_all_stats (pg_monitor has them) or the role that runs it. To any other role each
   * standby is a row of NULLs, which would read as a replica that never replays, and autovacuum (run by the bootstrap
   * superuser) works on no table it can see, so the run would never pause for it. Refuses such a role for the flags
   * that need them, naming the grant that fixes it.
   */
  async assertCanWatch(watch: {replicaLag: boolean; vacuum: boolean}): Promise<void> {
    if (!watch.replicaLag && !watch.vacuum) return
    const {rows} = await this.client.query(
      `SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS ok, current_user AS role,
              (SELECT count(*) FROM pg_stat_replication)::int AS standbys`,
    )
    const {ok, role, standbys} = rows[0]
    if (ok) return
    const hidden: string[] = []
    if (watch.replicaLag)
      hidden.push(
        `--max-replica-lag reads the replicas' replay positions from pg_stat_replication, which role ${role} is not allowed to see ` +
          `(it sees ${plural(standbys, 'standby')} there, with every position hidden)`,
      )
    if (watch.vacuum)
      hidden.push(
        `--pause-on-autovacuum reads from pg_stat_progress_vacuum which table a vacuum works on, which role ${role} is not allowed ` +
          'to see for autovacuum (it runs as another role: the run would never pause)',
      )
    throw new OpsError(`${hidden.join('; and ')}: nothing was deleted.`, {
      exit: 2,
      suggestions: [`GRANT pg_monitor TO ${quoteIdent(role)}; (or pg_read_all_stats), or run ops as a role that has it`],
    })
  }

  /**
   * pg_stat_replication: one row per walsender; replay_lag is the last delay the client reported. A logical one holds a
   * logical slot; one that receives WAL without replaying it reports a written position and no replayed one (a base
   * backup's own walsender, in state "backup", reports none).
   */
  async replicaLags(): Promise<ReplicaLag[]> {
    const {rows} = await this.client.query(
      `SELECT coalesce(nullif(r.application_name, ''), r.client_addr::text, r.pid::text) AS name,
              CASE WHEN EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.active_pid = r.pid AND s.slot_type = 'logical')
                     THEN 'logical'
                   WHEN r.state = 'backup' OR (r.replay_lsn IS NULL AND r.write_lsn IS NOT NULL) THEN 'wal-only'
                   ELSE 'standby' END AS kind,
              r.replay_lsn IS NULL OR r.replay_lsn < pg_current_wal_lsn() AS behind,
              extract(epoch FROM r.replay_lag) * 1000 AS lag_ms, r.replay_lsn::text AS replay_lsn
         FROM pg_stat_replication r ORDER BY r.pid`,
    )
    return rows.map((r) => ({
      name: r.name,
      kind: r.kind,
      behind: r.behind,
      lagMs: r.lag_ms === null ? null : Number(r.lag_ms),
      replayLsn: r.replay_lsn,
    }))
  }

  /** A VACUUM or autovacuum working on the table now (pg_stat_progress_vacuum), e.g. "autovacuum worker". */
  async vacuumOn(table: TableName): Promise<string | undefined> {
    const {rows} = await this.client.query(
      `SELECT coalesce(a.backend_type, 'VACUUM') AS who, v.phase FROM pg_stat_progress_vacuum v
         LEFT JOIN pg_stat_activity a ON a.pid = v.pid WHERE v.relid = $1::regclass LIMIT 1`,
      [qualified(table)],
    )
    if (rows.length === 0) return undefined
    return `${rows[0].who === 'autovacuum worker' ? 'autovacuum' : 'VACUUM'} (${rows[0].phase})`
  }
}

/** How long a replica may take to connect or answer before it counts as unreachable (a hung or partitioned host). */
const REPLICA_TIMEOUT_MS = 5000

/**
 * A --replica-url: lag measured on the standby itself, from what it received and what it replayed. A replica lost
 * during the run (restarted, partitioned, promoted) is not an error: its lag() says it cannot be measured, which
 * pauses the run, and the next lag() connects again.
 */
export class ReplicaProbe {
  private constructor(
    private readonly url: string,
    private readonly applicationName: string,
    private client: pg.Client | undefined,
    readonly name: string,
  ) {}

  /** The first connection, before the plan: a replica that cannot be reached or is no standby fails the run there. */
  static async connect(url: string, applicationName: string): Promise<ReplicaProbe> {
    return new ReplicaProbe(url, applicationName, await ReplicaProbe.open(url, applicationName), maskUrl(url))
  }

  private static async open(url: string, applicationName: string): Promise<pg.Client> {
    const client = await connectPostgres(url, applicationName, (error) => connectionError('PostgreSQL replica', url, 5432, error), {
      connectionTimeoutMillis: REPLICA_TIMEOUT_MS,
      query_timeout: REPLICA_TIMEOUT_MS,
    })
    const {rows} = await client.query('SELECT pg_is_in_recovery() AS standby')
    if (!rows[0].standby) {
      await client.end().catch(() => {})
      throw new OpsError(`--replica-url ${maskUrl(url)} is not a standby (pg_is_in_recovery() is false).`, {exit: 2})
    }
    return client
  }

  /** Caught up when everything received is replayed; otherwise the age of the last replayed commit. */
  async lag(): Promise<ReplicaLag> {
    try {
      this.client ??= await ReplicaProbe.open(this.url, this.applicationName)
      const {rows} = await this.client.query(
        `SELECT coalesce(pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn(), false) AS behind,
                extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000 AS lag_ms,
                pg_last_wal_replay_lsn()::text AS replay_lsn`,
      )
      const r = rows[0]
      const lagMs = r.behind && r.lag_ms !== null ? Number(r.lag_ms) : null
      return {name: this.name, kind: 'standby', behind: r.behind, lagMs, replayLsn: r.replay_lsn}
    } catch (error) {
      // Dropped, timed out or no longer a standby: measured again, on a new connection, at the next look.
      if (this.client) abandon(this.client)
      this.client = undefined
      // The name says which replica: of a failed connect, the driver's own words ("connect ECONNREFUSED ...") are enough.
      const cause = (error as {cause?: unknown}).cause ?? error
      const message = cause instanceof Error ? cause.message : String(cause)
      const reason = /is not a standby/.test(message) ? 'no longer a standby: promoted?' : message.split('\n')[0]
      return {name: this.name, kind: 'standby', behind: true, lagMs: null, replayLsn: null, unmeasurable: reason}
    }
  }

  async close(): Promise<void> {
    await this.client?.end().catch(() => {})
  }
}
