/**
 * What the plugin's tests need: the real `ops` (the ops-cli devDependency) with
 * this working copy linked into a throwaway data directory, and a throwaway
 * PostgreSQL database.
 */
import {execFileSync, spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {existsSync, mkdtempSync, rmSync} from 'node:fs'
import {createRequire} from 'node:module'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'

import pg from 'pg'

const require = createRequire(import.meta.url)
export const PLUGIN_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
export const HOST_ROOT = dirname(require.resolve('ops-cli/package.json'))
const HOST_BIN = join(HOST_ROOT, 'bin', 'run.js')

/** `tsc -p .`: a linked ESM plugin runs its compiled dist/ (oclif cannot transpile it on the fly). */
export function buildPlugin(): void {
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', PLUGIN_ROOT], {stdio: 'inherit'})
}

export interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/** An error message as one line: oclif wraps it to the terminal width behind " ›   ". */
export function oneLine(text: string): string {
  return text.replace(/\n\s*›\s*/g, ' ').replace(/\s+/g, ' ')
}

/** `ops` with its own data, config and cache directories, as a user on a fresh machine. */
export class Ops {
  readonly home = mkdtempSync(join(tmpdir(), 'ops-widgets-test-'))
  readonly env: NodeJS.ProcessEnv = {
    OPS_DATA_DIR: join(this.home, 'data'),
    OPS_CONFIG_DIR: join(this.home, 'config'),
    OPS_CACHE_DIR: join(this.home, 'cache'),
  }

  /** Removes the data, config and cache directories (links and installs included). */
  dispose(): void {
    rmSync(this.home, {recursive: true, force: true})
  }

  /** Runs `ops ARGS` with stdin closed (never a TTY). */
  run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
    const childEnv: NodeJS.ProcessEnv = {...process.env, ...this.env, NO_COLOR: '1', CI: '1', ...env}
    for (const key of ['DATABASE_URL', 'OPS_PROFILE', 'OPS_WIDGETS_MAX_ROWS', 'OPS_WIDGETS_NOTIFY_FILE'])
      if (!(key in env)) delete childEnv[key]
    const child = spawn(process.execPath, [HOST_BIN, ...args], {env: childEnv, stdio: ['pipe', 'pipe', 'pipe']})
    child.stdin.end()
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    return new Promise((resolve, reject) => {
      child.on('error', reject)
      child.on('close', (code) => resolve({code, stdout, stderr}))
    })
  }
}

type FreshDatabase = (prefix?: string) => Promise<string>

/**
 * A new database for one test file. Inside the ops repository the host's test
 * harness provides it (throwaway server from local binaries, or a container);
 * in a team's own repository, point OPS_TEST_DATABASE_URL at a server the
 * tests may create databases on (e.g. a CI service container).
 */
export async function freshDatabase(prefix: string): Promise<{url: string; drop(): Promise<void>}> {
  const harness = join(HOST_ROOT, 'test', 'helpers', 'servers.ts')
  if (!process.env.OPS_TEST_DATABASE_URL && existsSync(harness)) {
    const {freshDatabase: fromHarness} = (await import(pathToFileURL(harness).href)) as {freshDatabase: FreshDatabase}
    // The harness drops its databases when the whole mocha run ends.
    return {url: await fromHarness(prefix), drop: async () => {}}
  }
  const server = process.env.OPS_TEST_DATABASE_URL
  if (!server) throw new Error('Set OPS_TEST_DATABASE_URL to a PostgreSQL server the tests may create databases on.')
  const name = `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`
  const admin = async (sql: string) => {
    const client = new pg.Client({connectionString: server})
    await client.connect()
    await client.query(sql).finally(() => client.end())
  }
  await admin(`CREATE DATABASE ${name}`)
  const url = new URL(server)
  url.pathname = `/${name}`
  return {url: url.toString(), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)}
}
