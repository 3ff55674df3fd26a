/**
 * A throwaway three-master Redis Cluster from local binaries (redis-server,
 * redis-cli), or OPS_TEST_REDIS_CLUSTER_URL (a seed node of an empty cluster).
 * A cluster node also listens on its port + 10000 (the cluster bus), so the
 * ports are picked at most 55535, each with its bus port free too.
 */
import {execFileSync} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import {createServer} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {Redis} from 'ioredis'

import {onStop, RedisServer, startRedisFromBinary, waitFor, which} from './servers.js'
import {packageMissing} from './requirements.js'

/** The cluster bus listens on the node's port plus this. */
const BUS_OFFSET = 10_000
const HIGHEST_PORT = 65_535 - BUS_OFFSET

export interface RedisCluster {
  /** Seed nodes, e.g. for `--redis-url redis://127.0.0.1:PORT --cluster`. */
  nodes: {host: string; port: number}[]
  url: string
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.unref()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/** A free port at most 55535 whose cluster-bus port is free as well. */
export async function freeClusterPort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * (HIGHEST_PORT - 20_000))
    if ((await canListen(port)) && (await canListen(port + BUS_OFFSET))) return port
  }
  throw new Error('No free port pair (port, port + 10000) below 55535 for a cluster node.')
}

export async function freshRedisCluster(): Promise<RedisCluster> {
  const fromEnv = process.env.OPS_TEST_REDIS_CLUSTER_URL
  if (fromEnv) {
    const u = new URL(fromEnv)
    return {nodes: [{host: u.hostname, port: Number(u.port || 6379)}], url: fromEnv}
  }
  const binary = which('redis-server')
  const cli = which('redis-cli')
  // A container stands in for one Redis server, not for a cluster: these need the local binaries.
  if (!binary) throw packageMissing('redis-server', 'a throwaway Redis Cluster; or set OPS_TEST_REDIS_CLUSTER_URL')
  if (!cli) throw packageMissing('redis-tools', 'redis-cli, which joins the throwaway Redis Cluster; or set OPS_TEST_REDIS_CLUSTER_URL')
  const dir = mkdtempSync(join(tmpdir(), 'ops-test-cluster-'))
  onStop(async () => rmSync(dir, {recursive: true, force: true}))
  const nodes: RedisServer[] = []
  for (let i = 0; i < 3; i++) {
    const extra = ['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${i}.conf`, '--cluster-node-timeout', '5000']
    nodes.push(await startRedisFromBinary(binary, extra, dir, await freeClusterPort()))
  }
  execFileSync(cli, ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], {
    stdio: 'pipe',
  })
  await waitFor('Redis Cluster', async () => {
    for (const node of nodes) {
      const client = new Redis(node.port, '127.0.0.1', {lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null})
      client.on('error', () => {})
      try {
        await client.connect()
        const info = await client.cluster('INFO')
        if (!String(info).includes('cluster_state:ok')) throw new Error('cluster_state is not ok yet')
      } finally {
        client.disconnect()
      }
    }
  })
  return {nodes: nodes.map((n) => ({host: n.host, port: n.port})), url: `redis://127.0.0.1:${nodes[0].port}`}
}
