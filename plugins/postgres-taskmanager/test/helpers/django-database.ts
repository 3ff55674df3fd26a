/**
 * A database of its own for one describe block, for the tests that need Django's
 * TaskManager tables: created and connected before the block's tests, closed after them.
 */
import pg from 'pg'

import {freshDatabase} from '../../../../test/helpers/servers.js'
import {createDjangoSchema, dropDjangoSchema} from './django-fixture.js'

export interface DjangoDatabase {
  /** The connection string, for ops and for other processes. */
  url: string
  /** The test's own connection, for setting rows up and checking them. */
  db: pg.Client
  /** Django's tables again, empty, in `schema`. */
  reset(schema?: string): Promise<void>
}

/** Registers the before/after hooks in the calling describe block; url and db are filled in by its before(). */
export function withDjangoDatabase(prefix: string): DjangoDatabase {
  const database = {
    async reset(schema = 'public') {
      await dropDjangoSchema(database.db, schema)
      await createDjangoSchema(database.db, schema)
    },
  } as DjangoDatabase
  before(async () => {
    const url = await freshDatabase(prefix)
    // The harness's server commits asynchronously for speed; production's default here (for sessions that connect after),
    // so that every clear takes its production path: asynchronous batches, one synchronous commit at the end (batch-commit.ts).
    const setup = new pg.Client({connectionString: url})
    await setup.connect()
    await setup.query(`ALTER DATABASE ${new URL(url).pathname.slice(1)} SET synchronous_commit = on`).finally(() => setup.end())
    const db = new pg.Client({connectionString: url})
    await db.connect()
    Object.assign(database, {url, db})
  })
  after(async () => database.db?.end())
  return database
}

/** Ends every backend of `application` in this database, as a DBA's pg_terminate_backend would: a dropped connection. */
export async function terminateBackends(db: pg.Client, application: string): Promise<void> {
  await db.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()', [
    application,
  ])
}

/**
 * Runs `work` with the URL of a login role of this test's own (as an application's role: no superuser, no pg_monitor),
 * allowed to read and write the tables of the public schema; the role is dropped afterwards.
 */
export async function withAppRole<T>(db: pg.Client, url: string, work: (asRole: string, role: string) => Promise<T>): Promise<T> {
  const role = `ops_app_${process.pid}`
  // Not a substring of the role's name: ops masks its connection's password wherever it appears in its output.
  const password = `pw${Date.now()}`
  await db.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`)
  try {
    await db.query(`GRANT USAGE ON SCHEMA public TO ${role}; GRANT ALL ON ALL TABLES IN SCHEMA public TO ${role}`)
    return await work(Object.assign(new URL(url), {username: role, password}).toString(), role)
  } finally {
    await db.query(`DROP OWNED BY ${role}; DROP ROLE ${role}`)
  }
}

/**
 * Runs `work` while another session holds an ACCESS EXCLUSIVE lock on the TaskManager table, as a migration does, and
 * releases it afterwards; `untilGone` then polls (up to 5 s) until `count()` reads 0, and returns its last reading.
 */
export async function duringMigrationLock<T>(
  url: string,
  work: (untilGone: (count: () => Promise<number>) => Promise<number>) => Promise<T>,
): Promise<T> {
  const migration = new pg.Client({connectionString: url})
  await migration.connect()
  const untilGone = async (count: () => Promise<number>) => {
    const deadline = Date.now() + 5000
    let left = await count()
    while (left > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50))
      left = await count()
    }
    return left
  }
  try {
    await migration.query('BEGIN')
    await migration.query('LOCK TABLE task_manager_taskmanager IN ACCESS EXCLUSIVE MODE')
    return await work(untilGone)
  } finally {
    await migration.query('COMMIT')
    await migration.end()
  }
}
