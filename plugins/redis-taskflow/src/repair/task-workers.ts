import type {Redis} from 'ioredis'

import type {RedisConnection} from '../connection.js'
import type {TaskStore} from './stuck-task.js'

/**
 * Connections fixing tasks side by side on a single node: each fix is a few
 * round trips under WATCH of its own task hash. (Not for fixes that WATCH a
 * shared key such as a queue: the workers would abort each other's EXEC.)
 */
export const FIX_WORKERS = 8

/**
 * Applies `fix` to every item, `workers` at a time, each worker on a
 * connection of its own (WATCH belongs to a connection: two fixes sharing one
 * would watch each other's keys). On a cluster, one at a time through the
 * cluster connection, which routes each key to its master. Stops taking items
 * once `signal` aborts; fixes in flight run to their end, so none is left half
 * done. Yields the number fixed so far, about ten times a second.
 */
export async function* fixAll<T>(
  connection: RedisConnection,
  items: readonly T[],
  fix: (store: TaskStore, item: T) => Promise<boolean>,
  signal: AbortSignal,
  workers = FIX_WORKERS,
): AsyncGenerator<number> {
  let next = 0
  let fixed = 0
  const work = async (store: TaskStore) => {
    while (next < items.length && !signal.aborted) {
      const item = items[next++]
      if (await fix(store, item)) fixed++
    }
  }
  const own: Redis[] = []
  let finished = false
  const all = (async () => {
    try {
      if (connection.isCluster || items.length < 2 || workers < 2) return await work(connection)
      const node = connection.masters()[0]
      for (let i = 0; i < Math.min(workers, items.length); i++) own.push(node.duplicate())
      await Promise.all(own.map((store) => work(store)))
    } finally {
      finished = true
      for (const store of own) store.disconnect()
    }
  })()
  all.catch(() => {}) // awaited below
  while (!finished) {
    await Promise.race([all, new Promise((resolve) => setTimeout(resolve, 100))])
    yield fixed
  }
  await all
  yield fixed
}
