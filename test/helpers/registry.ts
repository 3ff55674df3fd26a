/**
 * A private npm registry for the tests (verdaccio, in a throwaway directory on a
 * free loopback port), the npm client that publishes to it, and a user's shell
 * in which ops is installed from it: a HOME of its own with the company's
 * .npmrc, a global prefix on PATH, and nothing of this repository in sight.
 */
import {ChildProcess, execFile, spawn} from 'node:child_process'
import {appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {createServer, type IncomingMessage} from 'node:http'
import {createRequire} from 'node:module'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import type {Duplex} from 'node:stream'
import {promisify} from 'node:util'

import {collect, ROOT, RunResult, waitForOutput} from './cli.js'
import {freePort} from './servers.js'

const run = promisify(execFile)
const require = createRequire(import.meta.url)
/** The npm the tests drive (the one @oclif/plugin-plugins installs plugins with). */
export const NPM = join(dirname(require.resolve('npm/package.json')), 'bin', 'npm-cli.js')
const VERDACCIO = join(dirname(require.resolve('verdaccio/package.json')), 'bin', 'verdaccio')

/** Runs the tests' npm with `env` as its whole environment; rejects with npm's output on failure (or after 8 minutes). */
export async function npm(args: string[], options: {cwd?: string; env: NodeJS.ProcessEnv}): Promise<string> {
  try {
    const {stdout} = await run(process.execPath, [NPM, ...args], {
      cwd: options.cwd ?? tmpdir(),
      env: options.env,
      maxBuffer: 64 << 20,
      timeout: 480_000,
    })
    return stdout
  } catch (error) {
    const {stdout, stderr} = error as {stdout?: string; stderr?: string}
    throw new Error(`npm ${args.join(' ')} failed:\n${stdout ?? ''}\n${stderr ?? ''}`)
  }
}

/**
 * Why the build is older than the sources, or undefined when it is fresh: the
 * packages are packed from dist/ and the manifests, which mocha alone does not
 * rebuild (`npm test` does). `tsc -b --dry` answers for the TypeScript; each
 * oclif.manifest.json must be newer than its package's compiled commands.
 */
export async function staleBuild(): Promise<string | undefined> {
  const tsc = join(dirname(require.resolve('typescript/package.json')), 'bin', 'tsc')
  const packages = ['.', 'plugins/postgres-taskmanager', 'plugins/redis-taskflow']
  const {stdout} = await run(process.execPath, [tsc, '-b', 'tsconfig.json', ...packages.slice(1), '--dry'], {cwd: ROOT})
  const stale = [...stdout.matchAll(/A non-dry build would build project '([^']+)'/g)].map((match) => match[1])
  for (const dir of packages) {
    const manifest = join(ROOT, dir, 'oclif.manifest.json')
    const commands = join(ROOT, dir, 'dist', 'commands')
    const compiled = existsSync(commands)
      ? readdirSync(commands, {recursive: true}).map((file) => statSync(join(commands, String(file))).mtimeMs)
      : []
    if (!existsSync(manifest) || statSync(manifest).mtimeMs < Math.max(0, ...compiled)) stale.push(manifest)
  }
  return stale.length > 0
    ? `the build is older than the sources (${stale.join(', ')}): run \`npm run build\` first (npm test does)`
    : undefined
}

export interface Registry {
  /** http://127.0.0.1:PORT/ */
  url: string
  /** A publisher's token (JWT: verifying it costs nothing, unlike a password per request). */
  token: string
  /** The .npmrc line that authenticates to this registry. */
  authLine: string
  stop(): Promise<void>
}

/**
 * Starts verdaccio. ops-cli, @ops-cli/* and @team/* live only here (never
 * proxied); every other package is proxied from the registry this machine's
 * npm uses, as a company registry mirrors npm. @team/* needs a login to read.
 */
export async function startRegistry(): Promise<Registry> {
  const dir = mkdtempSync(join(tmpdir(), 'ops-test-registry-'))
  const port = await freePort()
  const url = `http://127.0.0.1:${port}/`
  const own = {access: '$all', publish: '$authenticated'}
  const config = {
    storage: join(dir, 'storage'),
    auth: {htpasswd: {file: join(dir, 'htpasswd'), max_users: 10}},
    uplinks: {npmjs: {url: await upstreamRegistry(), timeout: '60s'}},
    packages: {
      'ops-cli': own,
      '@ops-cli/*': own,
      '@team/*': {access: '$authenticated', publish: '$authenticated'},
      '**': {access: '$all', proxy: 'npmjs'},
    },
    security: {api: {jwt: {sign: {expiresIn: '1d'}}}},
    web: {enable: false},
    middlewares: {audit: {enabled: false}},
    log: {type: 'stdout', format: 'json', level: 'error'},
  }
  // JSON is YAML: verdaccio reads it as its config.yaml.
  writeFileSync(join(dir, 'config.yaml'), JSON.stringify(config, null, 2))
  const child = spawn(process.execPath, [VERDACCIO, '--config', join(dir, 'config.yaml'), '--listen', `127.0.0.1:${port}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let log = ''
  const keep = (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000))
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  const killOnExit = () => child.kill('SIGKILL')
  process.once('exit', killOnExit)
  const stop = async () => {
    process.off('exit', killOnExit)
    await stopChild(child)
    rmSync(dir, {recursive: true, force: true})
  }
  try {
    await waitUntilUp(url, child, () => log)
    const token = await addUser(url)
    return {url, token, authLine: `//127.0.0.1:${port}/:_authToken=${token}`, stop}
  } catch (error) {
    await stop()
    throw error
  }
}

/** The registry the tests' own npm would use (an npm_config_registry in the environment wins). */
async function upstreamRegistry(): Promise<string> {
  const {stdout} = await run(process.execPath, [NPM, 'config', 'get', 'registry'], {cwd: ROOT})
  return stdout.trim()
}

async function waitUntilUp(url: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 60_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`verdaccio exited with ${child.exitCode}: ${log()}`)
    const ok = await fetch(new URL('-/ping', url)).then(
      (r) => r.ok,
      () => false,
    )
    if (ok) return
    if (Date.now() > deadline) throw new Error(`verdaccio did not answer on ${url} within 60 s: ${log()}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

/** Creates the publisher's account (npm adduser's request) and returns its token. */
async function addUser(url: string): Promise<string> {
  const response = await fetch(new URL('-/user/org.couchdb.user:publisher', url), {
    method: 'PUT',
    headers: {'content-type': 'application/json'},
    body: JSON.stringify({name: 'publisher', password: 'throwaway-publisher-password'}),
  })
  const body = (await response.json()) as {token?: string; error?: string}
  if (!body.token) throw new Error(`verdaccio refused the publisher account: ${body.error ?? response.status}`)
  return body.token
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 5000)
    child.once('exit', () => {
      clearTimeout(force)
      resolve()
    })
    child.kill('SIGTERM')
  })
}

/**
 * Everything a user's npm or ops asks of a host other than this machine: an
 * HTTP(S) proxy on loopback that answers 502 at once and records the target,
 * so a stray request to registry.npmjs.org fails fast (instead of waiting on
 * a network that may not be there) and a test can assert there was none.
 */
export interface OutsideWorld {
  /** http://127.0.0.1:PORT */
  proxyUrl: string
  /** host:port or URL of every request that tried to leave the machine. */
  requests: string[]
  stop(): Promise<void>
}

export async function watchOutsideWorld(): Promise<OutsideWorld> {
  const requests: string[] = []
  const server = createServer((request, response) => {
    requests.push(request.url ?? '')
    response.writeHead(502).end()
  })
  server.on('connect', (request: IncomingMessage, socket: Duplex) => {
    requests.push(request.url ?? '')
    socket.end('HTTP/1.1 502 Bad Gateway\r\n\r\n')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address() as AddressInfo
  return {
    proxyUrl: `http://127.0.0.1:${port}`,
    requests,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

/**
 * A user's machine: a HOME with its own .npmrc, a global npm prefix whose bin/
 * comes first on PATH (then only node's directory and the system's), ops'
 * data, config and cache directories inside HOME, and none of the npm_*
 * variables `npm test` sets, nor NODE_PATH or NODE_OPTIONS (either could let
 * ops find this repository's modules). Everything but loopback goes through
 * `outsideProxy`. npm's download cache is the machine's, so packages already
 * fetched once are not fetched again.
 */
export class UserMachine {
  readonly home = mkdtempSync(join(tmpdir(), 'ops-test-user-'))
  readonly prefix = join(this.home, 'global')
  readonly env: NodeJS.ProcessEnv

  constructor(npmCache: string, outsideProxy: string) {
    mkdirSync(this.prefix)
    const env: NodeJS.ProcessEnv = {}
    for (const [key, value] of Object.entries(process.env))
      if (!/^(npm_|INIT_CWD$|OPS_|NODE_PATH$|NODE_OPTIONS$|(https?|no|all)_proxy$)/i.test(key)) env[key] = value
    this.env = {
      ...env,
      HOME: this.home,
      PATH: [join(this.prefix, 'bin'), dirname(process.execPath), '/usr/local/bin', '/usr/bin', '/bin'].join(':'),
      HTTP_PROXY: outsideProxy,
      HTTPS_PROXY: outsideProxy,
      NO_PROXY: '127.0.0.1,localhost',
      npm_config_cache: npmCache,
      OPS_DATA_DIR: join(this.home, 'data'),
      OPS_CONFIG_DIR: join(this.home, 'config'),
      OPS_CACHE_DIR: join(this.home, 'cache'),
      NO_COLOR: '1',
      FORCE_COLOR: '0',
    }
  }

  /** Adds lines to ~/.npmrc, the file a company hands its developers. */
  npmrc(lines: string[]): void {
    appendFileSync(join(this.home, '.npmrc'), `${lines.join('\n')}\n`)
  }

  /** Runs a command of this machine's PATH (ops, once installed) from HOME, stdin closed. */
  async run(command: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<RunResult> {
    const child = spawn(command, args, {cwd: this.home, env: {...this.env, ...extraEnv}, stdio: ['pipe', 'pipe', 'pipe']})
    child.stdin?.end()
    return collect(child, 300_000)
  }

  /** Runs a command on a pseudo-terminal (util-linux `script`), answers the first `prompt` with `answer`. */
  async runInTty(commandLine: string, prompt: string | RegExp, answer: string): Promise<RunResult> {
    const child = spawn('script', ['-qefc', commandLine, '/dev/null'], {
      cwd: this.home,
      env: {...this.env, CI: undefined, TERM: 'xterm'},
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    const done = collect(child, 60_000)
    await waitForOutput(child, prompt)
    child.stdin?.write(answer)
    const result = await done
    child.stdin?.end()
    return result
  }

  remove(): void {
    rmSync(this.home, {recursive: true, force: true})
  }
}

/**
 * An unpacked copy of a package tarball with its name, version or peers
 * changed, ready for `npm publish <dir>`: the team's own release of the
 * template, or a newer release of a package. The oclif manifest inside is
 * updated to match, as `oclif manifest` would write it.
 */
export async function repackaged(
  tarball: string,
  workDir: string,
  change: {name?: string; version?: string; peerDependencies?: Record<string, string>},
): Promise<string> {
  const dir = mkdtempSync(join(workDir, 'package-'))
  await run('tar', ['-xzf', tarball, '-C', dir])
  const root = join(dir, 'package')
  const edit = (file: string, apply: (json: Record<string, unknown>) => void) => {
    const json = JSON.parse(readFileSync(join(root, file), 'utf8'))
    apply(json)
    writeFileSync(join(root, file), JSON.stringify(json, null, 2))
  }
  edit('package.json', (pjson) => Object.assign(pjson, change))
  edit('oclif.manifest.json', (manifest) => {
    if (change.version) manifest.version = change.version
    if (change.name)
      for (const command of Object.values(manifest.commands as Record<string, {pluginName?: string}>)) command.pluginName = change.name
  })
  return root
}
