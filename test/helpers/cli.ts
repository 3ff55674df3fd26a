/** Runs the real `ops` binary (or a fixture CLI) in a child process, as a user would. */
import {ChildProcess, execFile, spawn, spawnSync} from 'node:child_process'
import {existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {needPackage} from './requirements.js'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const OPS_BIN = join(ROOT, 'bin', 'run.js')
/** The Node.js that runs the CLI under test: OPS_TEST_NODE checks other majors (22, 24). */
export const NODE = process.env.OPS_TEST_NODE || process.execPath

export interface RunResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export interface RunOptions {
  env?: Record<string, string | undefined>
  /** Written to stdin, then stdin is closed. Without it stdin is closed at once (no TTY). */
  input?: string
  timeoutMs?: number
  /** Run another entry point than bin/run.js (a fixture CLI run through tsx). */
  entry?: string
}

/**
 * The CLI's data, config and cache directories for this test run: the audit
 * log, profiles and installed plugins never touch the user's own.
 */
export const OPS_HOME = mkdtempSync(join(tmpdir(), 'ops-test-home-'))
process.once('exit', () => rmSync(OPS_HOME, {recursive: true, force: true}))
const isolated = {
  OPS_DATA_DIR: join(OPS_HOME, 'data'),
  OPS_CONFIG_DIR: join(OPS_HOME, 'config'),
  OPS_CACHE_DIR: join(OPS_HOME, 'cache'),
}

/** A path for a file a test writes (an --archive file, say), in a directory of its own that goes with OPS_HOME at exit. */
export function scratchFile(name: string): string {
  return join(mkdtempSync(join(OPS_HOME, 'scratch-')), name)
}

export function childEnv(extra: RunOptions['env'] = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {...process.env, ...isolated, NO_COLOR: '1', FORCE_COLOR: '0', OPS_PROFILE: undefined, ...extra}
  for (const key of ['DATABASE_URL', 'REDIS_URL']) if (!(key in extra)) delete env[key]
  for (const [key, value] of Object.entries(extra)) if (value === undefined) delete env[key]
  return env
}

function nodeArgs(entry?: string): string[] {
  return entry ? ['--import', 'tsx', entry] : [OPS_BIN]
}

/** Starts ops without waiting; for signal tests. */
export function spawnOps(args: string[], options: RunOptions = {}): ChildProcess {
  return spawn(NODE, [...nodeArgs(options.entry), ...args], {cwd: ROOT, env: childEnv(options.env), stdio: ['pipe', 'pipe', 'pipe']})
}

/** Collects a child's output until it exits. */
export function collect(child: ChildProcess, timeoutMs = 120_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    let stdout = ''
    let stderr = ''
    child.stdout?.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`timed out after ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`))
    }, timeoutMs)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({code, signal, stdout, stderr})
    })
  })
}

/**
 * Runs ops (stdin closed) and kills it with `signal` once `due()` holds, checked every 20 ms; resolves when it has exited.
 * Fails, naming `awaited`, if ops exits first or `due()` never holds within `timeoutMs`.
 */
export async function runOpsKilledWhen(
  args: string[],
  due: () => Promise<boolean>,
  signal: NodeJS.Signals = 'SIGKILL',
  awaited = `the moment to send ${signal}`,
  timeoutMs = 60_000,
): Promise<RunResult> {
  const child = spawnOps(args)
  child.stdin?.end()
  const done = collect(child)
  try {
    await waitUntil(due, awaited, done, timeoutMs)
  } catch (error) {
    child.kill('SIGKILL')
    await done.catch(() => undefined)
    throw error
  }
  child.kill(signal)
  return done
}

/**
 * Polls `due()` every 20 ms until it holds, racing `run` (a running child's result) and a deadline:
 * a child that exited early or a condition that never comes fails with a message naming `awaited`.
 */
export async function waitUntil(due: () => Promise<boolean>, awaited: string, run: Promise<RunResult>, timeoutMs = 60_000): Promise<void> {
  let ended: string | undefined
  run.then(
    (r) => (ended = `exited (code ${r.code}, signal ${r.signal}) before ${awaited}; stderr:\n${r.stderr.slice(-2000)}`),
    (error: Error) => (ended = `failed before ${awaited}: ${error.message}`),
  )
  const deadline = Date.now() + timeoutMs
  while (!(await due())) {
    if (ended) throw new Error(`ops ${ended}`)
    if (Date.now() > deadline) throw new Error(`gave up after ${timeoutMs} ms waiting for ${awaited}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** Runs ops to completion with stdin closed (or fed `input`): never a TTY. */
export async function runOps(args: string[], options: RunOptions = {}): Promise<RunResult> {
  const child = spawnOps(args, options)
  child.stdin?.end(options.input ?? '')
  return collect(child, options.timeoutMs)
}

/** Waits until the child's stdout (or stderr) contains `text`. */
export function waitForOutput(child: ChildProcess, text: string | RegExp, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = ''
    const timer = setTimeout(() => reject(new Error(`never printed ${text}; got:\n${seen}`)), timeoutMs)
    const onData = (c: Buffer) => {
      seen += c.toString()
      if (typeof text === 'string' ? seen.includes(text) : text.test(seen)) {
        clearTimeout(timer)
        child.stdout?.off('data', onData)
        child.stderr?.off('data', onData)
        resolve(seen)
      }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
  })
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

/**
 * Runs ops on a real pseudo-terminal (util-linux `script`), answers the first
 * prompt (by default the "(yes/no)" one) with `answer` (once `beforeAnswer`, if given,
 * is done: what happens while a person reads the prompt), and returns the transcript.
 */
export async function runOpsInTty(
  args: string[],
  answer: string,
  options: RunOptions & {prompt?: string | RegExp; beforeAnswer?: () => Promise<void>} = {},
): Promise<RunResult> {
  needPackage('bsdutils')
  const command = [NODE, ...nodeArgs(options.entry), ...args].map(shellQuote).join(' ')
  const child = spawn('script', ['-qefc', command, '/dev/null'], {
    cwd: ROOT,
    env: {...childEnv(options.env), CI: undefined, TERM: 'xterm'},
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  const done = collect(child, options.timeoutMs)
  await waitForOutput(child, options.prompt ?? '(yes/no)')
  await options.beforeAnswer?.()
  child.stdin?.write(`${answer}\r`)
  const result = await done
  child.stdin?.end()
  return result
}

/** An error or warning as one line: oclif wraps long ones and starts every continuation line with "›". */
export const flat = (text: string): string => text.replace(/\s*\n\s*›\s*/g, ' ')

/** Parses the single JSON document a --json run must print on stdout. */
export function parseJsonOutput<T = Record<string, unknown>>(result: RunResult): T {
  try {
    return JSON.parse(result.stdout) as T
  } catch (error) {
    throw new Error(`stdout is not exactly one JSON document (${(error as Error).message}):\n${result.stdout}\nstderr: ${result.stderr}`)
  }
}

/** What ops prints on stderr for a mistyped flag: the nearest flag, and one line pointing at the command's --help. */
export function mistypedFlagLines(typed: string, nearest: string, command: string): string[] {
  return [` ›   Error: Unknown flag: ${typed}`, ` ›   Did you mean ${nearest}?`, ` ›   See \`ops ${command} --help\` for its flags.`]
}

/**
 * ops running in a real terminal of `width` x `height` (a detached tmux session): what
 * the test reads is the screen a person sees once the redraws are over, not a transcript.
 */
export class Screen {
  /** Terminals not closed yet: a test that timed out must not leave its tmux server behind. */
  private static readonly open = new Set<Screen>()
  /** One exit listener for every screen of the process (one per screen would pass Node's limit of ten). */
  private static exitHooked = false
  private readonly socket: string
  private readonly session = 'ops'

  private constructor(private readonly dir: string) {
    this.socket = join(dir, 'tmux.sock')
  }

  static async start(args: string[], options: RunOptions & {width?: number; height?: number} = {}): Promise<Screen> {
    needPackage('tmux')
    const screen = new Screen(mkdtempSync(join(tmpdir(), 'ops-screen-')))
    if (!Screen.exitHooked) process.once('exit', () => Screen.open.forEach((s) => s.closeNow()))
    Screen.exitHooked = true
    Screen.open.add(screen)
    const config = join(screen.dir, 'tmux.conf')
    // The pane stays after ops exits so its last screen can be read; no status bar takes a line.
    writeFileSync(config, 'set -g remain-on-exit on\nset -g status off\nset -g history-limit 5000\n')
    const env = Object.entries(childEnv({...options.env, CI: undefined, TERM: undefined}) as Record<string, string | undefined>)
      .filter((e): e is [string, string] => e[1] !== undefined)
      .map(([k, v]) => shellQuote(`${k}=${v}`))
    // The shell outlives Ctrl-C (a trap with a command is not inherited) to write down ops' exit code.
    const ops = `env -i ${env.join(' ')} TERM=tmux-256color ${[NODE, ...nodeArgs(options.entry), ...args].map(shellQuote).join(' ')}`
    const command = `trap true INT; cd ${shellQuote(ROOT)} && ${ops}; echo $? > ${shellQuote(join(screen.dir, 'exit-code'))}`
    await screen.tmux([
      '-f',
      config,
      'new-session',
      '-d',
      '-s',
      screen.session,
      '-x',
      String(options.width ?? 120),
      '-y',
      String(options.height ?? 35),
      command,
    ])
    return screen
  }

  private tmux(args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile('tmux', ['-S', this.socket, ...args], (error, stdout, stderr) =>
        error ? reject(new Error(`tmux ${args[0]}: ${stderr || error.message}`)) : resolve(stdout),
      )
    })
  }

  /** The visible screen, trailing blanks trimmed (tmux's own "Pane is dead" line left out). */
  async text(): Promise<string> {
    const raw = await this.tmux(['capture-pane', '-p', '-S', '-', '-t', this.session])
    return raw
      .split('\n')
      .filter((line) => !line.startsWith('Pane is dead'))
      .map((line) => line.trimEnd())
      .join('\n')
      .trimEnd()
  }

  /** Waits until the screen shows `text`; returns the screen. */
  async waitFor(text: string | RegExp, timeoutMs = 60_000): Promise<string> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const screen = await this.text()
      if (typeof text === 'string' ? screen.includes(text) : text.test(screen)) return screen
      if (Date.now() > deadline) throw new Error(`the screen never showed ${text}; it shows:\n${screen}`)
      await new Promise((r) => setTimeout(r, 50))
    }
  }

  /** Types `text` and Enter, as a person answering a prompt. */
  async answer(text: string): Promise<void> {
    if (text) await this.tmux(['send-keys', '-t', this.session, '-l', text])
    await this.tmux(['send-keys', '-t', this.session, 'Enter'])
  }

  /** Presses Ctrl-C: the terminal sends SIGINT to ops. */
  async interrupt(): Promise<void> {
    await this.tmux(['send-keys', '-t', this.session, 'C-c'])
  }

  /** Waits for ops to exit; returns its exit code and final screen, and closes the terminal. */
  async exit(timeoutMs = 120_000): Promise<{code: number; screen: string}> {
    const deadline = Date.now() + timeoutMs
    try {
      for (;;) {
        const dead = (await this.tmux(['display-message', '-p', '-t', this.session, '#{pane_dead}'])).trim()
        if (dead === '1') {
          const code = existsSync(join(this.dir, 'exit-code')) ? Number(readFileSync(join(this.dir, 'exit-code'), 'utf8')) : NaN
          return {code, screen: await this.text()}
        }
        if (Date.now() > deadline) throw new Error(`ops did not exit within ${timeoutMs} ms; the screen shows:\n${await this.text()}`)
        await new Promise((r) => setTimeout(r, 50))
      }
    } finally {
      await this.close()
    }
  }

  async close(): Promise<void> {
    await this.tmux(['kill-server']).catch(() => {})
    rmSync(this.dir, {recursive: true, force: true})
    Screen.open.delete(this)
  }

  private closeNow(): void {
    spawnSync('tmux', ['-S', this.socket, 'kill-server'], {stdio: 'ignore'})
    rmSync(this.dir, {recursive: true, force: true})
  }
}
