/**
 * The test harness: where the tests get their servers. Servers are found in this order:
 *   1. OPS_TEST_DATABASE_URL / OPS_TEST_REDIS_URL, if set;
 *   2. throwaway servers started from local binaries (initdb/postgres,
 *      redis-server) in a temporary directory on free loopback ports;
 *   3. testcontainers, when a container runtime answers;
 *   4. else a failure naming these three ways.
 * Tests only ever touch databases and keys they created: every PostgreSQL test
 * database is created here and dropped at the end, and a Redis given by URL
 * must be empty.
 */
import {ChildProcess, execFileSync, spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {Redis} from 'ioredis'
import pg from 'pg'

const HOW =
  'Set OPS_TEST_DATABASE_URL / OPS_TEST_REDIS_URL, install PostgreSQL (initdb, postgres) and redis-server on PATH ' +
  '(e.g. apt-get install postgresql redis-server), or start a container runtime (Docker) for testcontainers.'

type Stop = () => Promise<void>

/**
 * The harness's state, shared by every copy of this module in the process: a plugin's tests may import the harness
 * by its file URL (examples/plugin-template/test/support.ts), which can load a second copy beside the one the root
 * hooks stop. Two copies would start a second server that no stopAll() stops nor removes.
 */
const state = ((globalThis as Record<symbol, unknown>)[Symbol.for('ops.test.harness')] ??= {
  stops: [],
  children: new Set(),
  exitHooked: false,
  postgresServer: undefined,
}) as {stops: Stop[]; children: Set<ChildProcess>; exitHooked: boolean; postgresServer?: Promise<PostgresServer>}
const {stops, children} = state

/** Runs `stop` in stopAll(), before what was registered earlier. */
export function onStop(stop: Stop): void {
  stops.push(stop)
}

/** Stops every server and drops every database this process created. Idempotent. */
export async function stopAll(): Promise<void> {
  while (stops.length > 0) {
    const stop = stops.pop()!
    await stop().catch((error: unknown) => console.error(`harness cleanup: ${(error as Error).message}`))
  }
}

/** Registers a cleanup of a helper built on this harness (a standby, a bench server); run by stopAll(), last registered first. */
export function onStopAll(stop: Stop): void {
  stops.push(stop)
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const {port} = server.address() as {port: number}
      server.close(() => resolve(port))
    })
  })
}

export function which(binary: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), ...pgBinDirs()]
  for (const dir of dirs) {
    const candidate = join(dir, binary)
    if (dir && existsSync(candidate)) return candidate
  }
  return undefined
}

function pgBinDirs(): string[] {
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return []
  try {
    return execFileSync('ls', ['-1', root])
      .toString()
      .trim()
      .split('\n')
      .sort()
      .reverse()
      .map((v) => join(root, v, 'bin'))
  } catch {
    return []
  }
}

export async function waitFor(what: string, probe: () => Promise<void>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      await probe()
      return
    } catch (error) {
      last = error
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  throw new Error(`${what} did not become ready in ${timeoutMs} ms: ${(last as Error)?.message}`)
}

export function stopProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve()
    })
    child.kill(signal)
  })
}

export function registerExitKill(child: ChildProcess): void {
  // Never leave servers running, even when mocha is killed: one exit listener for them all.
  if (!state.exitHooked) process.once('exit', () => children.forEach((c) => c.kill('SIGKILL')))
  state.exitHooked = true
  children.add(child)
  child.once('exit', () => children.delete(child))
}

/* ------------------------------------------------------------------ PostgreSQL */

export interface PostgresServer {
  /** URL of the maintenance database; used only to create and drop test databases. */
  adminUrl: string
  how: 'env' | 'binaries' | 'container'
}

export function postgresServerOnce(): Promise<PostgresServer> {
  state.postgresServer ??= startPostgres()
  return state.postgresServer
}

async function startPostgres(): Promise<PostgresServer> {
  if (process.env.OPS_TEST_DATABASE_URL) return {adminUrl: process.env.OPS_TEST_DATABASE_URL, how: 'env'}
  const initdb = which('initdb')
  const postgres = which('postgres')
  if (initdb && postgres) return startPostgresFromBinaries(initdb)
  const container = await startPostgresContainer()
  if (container) return container
  throw new Error(`No PostgreSQL for the tests. ${HOW}`)
}

/** PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user. */
export function postgresUser(): {uid: number; gid: number} | undefined {
  if (process.getuid?.() !== 0) return undefined
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'))
  if (!line) throw new Error('Running as root and there is no postgres user to run the throwaway PostgreSQL server as.')
  const [, , uid, gid] = line.split(':')
  return {uid: Number(uid), gid: Number(gid)}
}

export interface LocalPostgres {
  port: number
  /** The URL of `database` on this server. */
  url(database: string): string
  /**
   * Stops it as a crash of the server would (SIGQUIT, an immediate shutdown: no WAL flushed, no checkpoint), then starts
   * it again on the same data: its recovery replays only the WAL that had reached the disk.
   */
  crashAndRestart(): Promise<void>
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
  let log = ''
  const start = async () => {
    const started = spawn(postgres, args, {...(user ? {uid: user.uid, gid: user.gid} : {}), stdio: ['ignore', 'ignore', 'pipe']})
    started.stderr?.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)))
    registerExitKill(started)
    await waitFor('local PostgreSQL', async () => {
      if (started.exitCode !== null) throw new Error(`postgres exited: ${log}`)
      const client = new pg.Client({connectionString: server.url('postgres')})
      await client.connect()
      await client.end()
    })
    return started
  }
  let child: ChildProcess | undefined
  let stopped = false
  const server: LocalPostgres = {
    port,
    url: (database) => `postgres://postgres@127.0.0.1:${port}/${database}`,
    async crashAndRestart() {
      await stopProcess(child!, 'SIGQUIT')
      child = await start()
    },
    async stop() {
      if (stopped) return
      stopped = true
      if (child) await stopProcess(child, 'SIGINT') // fast shutdown
      rmSync(dir, {recursive: true, force: true})
    },
  }
  onStopAll(() => server.stop())
  child = await start()
  return server
}

async function startPostgresFromBinaries(initdb: string): Promise<PostgresServer> {
  const dir = serverDirectory('ops-test-pg-')
  const data = join(dir, 'data')
  runAsServerUser(initdb, ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'])
  // wal_level logical: production.test.ts connects a logical replication consumer (pg_recvlogical).
  const server = await startPostmaster(dir, data, {
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    max_connections: '200',
    wal_level: 'logical',
  })
  return {adminUrl: server.url('postgres'), how: 'binaries'}
}

async function containerRuntimeAnswers(): Promise<boolean> {
  try {
    const {getContainerRuntimeClient} = await import('testcontainers')
    await getContainerRuntimeClient()
    return true
  } catch {
    return false
  }
}

async function startPostgresContainer(): Promise<PostgresServer | undefined> {
  if (!(await containerRuntimeAnswers())) return undefined
  const {GenericContainer, Wait} = await import('testcontainers')
  const container = await new GenericContainer('postgres:15')
    .withEnvironment({POSTGRES_HOST_AUTH_METHOD: 'trust'})
    .withExposedPorts(5432)
    .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
    .start()
  stops.push(async () => {
    await container.stop()
  })
  return {adminUrl: `postgres://postgres@${container.getHost()}:${container.getMappedPort(5432)}/postgres`, how: 'container'}
}

/** A new, empty database of its own for one test file; dropped by stopAll(). */
export async function freshDatabase(prefix = 'ops_test'): Promise<string> {
  const server = await postgresServerOnce()
  const name = `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`
  const admin = new pg.Client({connectionString: server.adminUrl})
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE ${name}`)
  } finally {
    await admin.end()
  }
  stops.push(async () => {
    const client = new pg.Client({connectionString: server.adminUrl})
    await client.connect()
    try {
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    } finally {
      await client.end()
    }
  })
  const url = new URL(server.adminUrl)
  url.pathname = `/${name}`
  return url.toString()
}

/* ----------------------------------------------------------------------- Redis */

export interface RedisServer {
  url: string
  host: string
  port: number
  how: 'env' | 'binaries' | 'container'
}

/**
 * A Redis of its own for one test file: a new redis-server per call from
 * binaries, or the (empty, checked) database of OPS_TEST_REDIS_URL, flushed by
 * stopAll() since everything in it was created by the tests.
 */
export async function freshRedis(): Promise<RedisServer> {
  const fromEnv = process.env.OPS_TEST_REDIS_URL
  if (fromEnv) {
    const client = new Redis(fromEnv, {lazyConnect: true})
    await client.connect()
    const size = await client.dbsize()
    await client.quit()
    if (size > 0) throw new Error(`OPS_TEST_REDIS_URL's database holds ${size} keys; the tests use only an empty database.`)
    stops.push(async () => {
      const c = new Redis(fromEnv)
      await c.flushdb()
      await c.quit()
    })
    const u = new URL(fromEnv)
    return {url: fromEnv, host: u.hostname, port: Number(u.port || 6379), how: 'env'}
  }
  const binary = which('redis-server')
  if (binary) return startRedisFromBinary(binary)
  const container = await startRedisContainer()
  if (container) return container
  throw new Error(`No Redis for the tests. ${HOW}`)
}

/** A redis-server from `binary` on `port` (default: any free one), stopped by stopAll(). */
export async function startRedisFromBinary(binary: string, extra: string[] = [], dir?: string, port?: number): Promise<RedisServer> {
  const workdir = dir ?? mkdtempSync(join(tmpdir(), 'ops-test-redis-'))
  port ??= await freePort()
  const child = spawn(
    binary,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', workdir, ...extra],
    {stdio: ['ignore', 'pipe', 'pipe']},
  )
  let log = ''
  child.stdout?.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)))
  registerExitKill(child)
  stops.push(async () => {
    await stopProcess(child)
    if (!dir) rmSync(workdir, {recursive: true, force: true})
  })
  const url = `redis://127.0.0.1:${port}/0`
  await waitFor('throwaway Redis', async () => {
    if (child.exitCode !== null) throw new Error(`redis-server exited: ${log}`)
    const client = new Redis(url, {lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null})
    client.on('error', () => {}) // refused until the server listens; the probe's await reports it
    try {
      await client.connect()
      await client.ping()
    } finally {
      client.disconnect()
    }
  })
  return {url, host: '127.0.0.1', port, how: 'binaries'}
}

async function startRedisContainer(): Promise<RedisServer | undefined> {
  if (!(await containerRuntimeAnswers())) return undefined
  const {GenericContainer, Wait} = await import('testcontainers')
  const container = await new GenericContainer('redis:7')
    .withExposedPorts(6379)
    .withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/))
    .start()
  stops.push(async () => {
    await container.stop()
  })
  const host = container.getHost()
  const port = container.getMappedPort(6379)
  return {url: `redis://${host}:${port}/0`, host, port, how: 'container'}
}

export interface TlsRedisServer extends RedisServer {
  /** rediss:// URL of the same server's TLS port (its certificate names 127.0.0.1). */
  tlsUrl: string
  /** The CA that signed the server's certificate: give it to clients as NODE_EXTRA_CA_CERTS. */
  caFile: string
}

/**
 * A throwaway redis-server with a TLS port next to its plain one (the plain one
 * is for the tests' fixtures), with a certificate made here by openssl for
 * 127.0.0.1. Undefined when openssl or a TLS-capable redis-server is missing.
 */
export async function freshRedisWithTls(): Promise<TlsRedisServer | undefined> {
  const binary = which('redis-server')
  if (!binary || !which('openssl')) return undefined
  const dir = mkdtempSync(join(tmpdir(), 'ops-test-redis-tls-'))
  const openssl = (...args: string[]) => execFileSync('openssl', args, {cwd: dir, stdio: 'ignore'})
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=ops test CA')
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1')
  writeFileSync(join(dir, 'san.cnf'), 'subjectAltName=IP:127.0.0.1\n')
  openssl(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.pem',
    '-days',
    '2',
    '-extfile',
    'san.cnf',
  )
  const tlsPort = await freePort()
  const file = (name: string) => join(dir, name)
  const tls = [
    '--tls-port',
    String(tlsPort),
    '--tls-cert-file',
    file('server.pem'),
    '--tls-key-file',
    file('server.key'),
    '--tls-ca-cert-file',
    file('ca.pem'),
    '--tls-auth-clients',
    'no',
  ]
  try {
    const server = await startRedisFromBinary(binary, tls, dir)
    stops.push(async () => rmSync(dir, {recursive: true, force: true}))
    return {...server, tlsUrl: `rediss://127.0.0.1:${tlsPort}/0`, caFile: join(dir, 'ca.pem')}
  } catch {
    rmSync(dir, {recursive: true, force: true})
    return undefined // a redis-server built without TLS refuses --tls-port
  }
}
