import {isIP} from 'node:net'
import {Flags} from '@oclif/core'
import calculateSlot from 'cluster-key-slot'
import {Cluster, Redis, RedisOptions} from 'ioredis'
import {connectionError, maskUrl, resolveUrl, ResolvedUrl} from 'ops-cli/base'

import {markClusterNodes} from './read/scan.js'

export const DEFAULT_REDIS_URL = 'redis://localhost:6379/0'

/** Flags every taskflow command shares. */
export const redisFlags = {
  'redis-url': Flags.string({
    description: `Redis URL (redis:// or rediss://, ACL user and password allowed) [env: REDIS_URL] (default: ${DEFAULT_REDIS_URL})`,
    helpValue: 'URL',
  }),
  cluster: Flags.boolean({
    description: 'Treat the URL as one node of a Redis Cluster, the others found from it (detected automatically when omitted).',
    allowNo: true,
  }),
}

/** A connected store: a single node or a cluster, with its masked URL for messages. */
export interface RedisConnection {
  client: Redis | Cluster
  /** One client per master: SCAN and pipelines run per node. */
  masters(): Redis[]
  isCluster: boolean
  url: string
  maskedUrl: string
  resolved: ResolvedUrl
  close(): Promise<void>
}

export function resolveRedisUrl(flag: string | undefined, profile?: string): ResolvedUrl {
  return resolveUrl({flag, env: 'REDIS_URL', profile, fallback: DEFAULT_REDIS_URL})
}

function optionsOf(url: string): {host: string; port: number; options: RedisOptions} {
  const parsed = new URL(url)
  const options: RedisOptions = {
    username: parsed.username ? decodeURIComponent(parsed.username) : undefined,
    password: parsed.password ? decodeURIComponent(parsed.password) : undefined,
    db: parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : 0,
    // SNI takes a host name only (RFC 6066); for an IP address the certificate's IP SAN is checked without it.
    tls: parsed.protocol === 'rediss:' ? (isIP(parsed.hostname) ? {} : {servername: parsed.hostname}) : undefined,
    lazyConnect: true,
    connectTimeout: 5000,
    // Fail fast and clearly instead of retrying forever against a dead server.
    maxRetriesPerRequest: 1,
    retryStrategy: () => null,
    enableOfflineQueue: true,
  }
  return {host: parsed.hostname || 'localhost', port: Number(parsed.port || 6379), options}
}

/**
 * Connects to a single node, then switches to a Cluster client when the
 * server says cluster_enabled:1 (or when `cluster` is forced).
 */
export async function connectRedis(resolved: ResolvedUrl, cluster?: boolean): Promise<RedisConnection> {
  const {url} = resolved
  let host: string, port: number, options: RedisOptions
  try {
    ;({host, port, options} = optionsOf(url))
  } catch (error) {
    throw connectionError('Redis', url, 6379, error)
  }
  const single = new Redis(port, host, options)
  // ioredis rejects connect() with a bare "Connection is closed" after a refused TLS handshake or
  // AUTH; the error event carries the reason (certificate, WRONGPASS), so keep it for the message.
  let reason: unknown
  single.on('error', (error) => (reason ??= error))
  try {
    await single.connect().catch((error) => {
      throw reason ?? error
    })
    const clusterEnabled = cluster ?? /cluster_enabled:1/.test(await single.info('cluster'))
    if (!clusterEnabled) {
      return {
        client: single,
        masters: () => [single],
        isCluster: false,
        url,
        maskedUrl: maskUrl(url),
        resolved,
        close: async () => {
          single.disconnect()
        },
      }
    }
    single.disconnect()
    const {db: _db, ...nodeOptions} = options
    const client = new Cluster([{host, port}], {
      redisOptions: {...nodeOptions, lazyConnect: false},
      lazyConnect: true,
      enableOfflineQueue: true,
      clusterRetryStrategy: () => null,
      ...(options.tls ? {dnsLookup: (address, callback) => callback(null, address)} : {}),
    })
    client.on('error', () => {})
    await client.connect()
    await client.ping()
    return {
      client,
      masters: () => markClusterNodes(client.nodes('master')),
      isCluster: true,
      url,
      maskedUrl: maskUrl(url),
      resolved,
      close: async () => {
        client.disconnect()
      },
    }
  } catch (error) {
    single.disconnect()
    throw connectionError('Redis', url, 6379, error)
  }
}

/**
 * The master that holds `key`: WATCH, the reads and the MULTI/EXEC of a
 * per-key transaction must go through this one connection. On a single node
 * that is the node itself.
 */
export function masterOf(connection: RedisConnection, key: string): Redis {
  if (!connection.isCluster) return connection.masters()[0]
  const cluster = connection.client as Cluster
  const nodeKey = cluster.slots[calculateSlot(key)]?.[0]
  const master = connection.masters().find((node) => `${node.options.host}:${node.options.port}` === nodeKey)
  if (!master)
    throw new Error(
      `No master of the cluster serves the slot of ${key} (${nodeKey ?? 'slot not mapped'}); retry once the cluster is stable.`,
    )
  return master
}

/** The Redis a command's flags name: --redis-url (else REDIS_URL, else the default) and --cluster. */
export function redisTarget(flags: {'redis-url'?: string; cluster?: boolean}): {resolved: ResolvedUrl; cluster?: boolean} {
  return {resolved: resolveRedisUrl(flags['redis-url']), cluster: flags.cluster}
}
