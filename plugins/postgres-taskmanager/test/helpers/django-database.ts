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
