import {Command, Errors, Flags} from '@oclif/core'

import {maskSecrets, secretsOf} from './connection.js'
import {ExitCode, exitCodeOf, OpsError} from './errors.js'
import {nearestFlag} from './flags.js'
import {activeProfile, ProfileStore, setActiveProfile} from './profiles.js'

/**
 * The base of every ops command: `--json` (one document on stdout, nothing
 * else there), error shaping with masked secrets, and exit codes 0 / 1 / 2 / 130.
 */
export abstract class OpsCommand extends Command {
  static override enableJsonFlag = true

  static override baseFlags = {
    profile: Flags.string({
      description: 'Named connection settings (see `ops profiles:list`); flags and environment still win.',
      env: 'OPS_PROFILE',
      helpGroup: 'GLOBAL',
      helpValue: 'NAME',
    }),
  }

  /** Selects the profile before `run()` so every URL resolution sees it. */
  override async init(): Promise<void> {
    await super.init()
    const name = profileArgument(this.argv) ?? process.env.OPS_PROFILE
    setActiveProfile(name ? new ProfileStore(this.config.configDir).get(name) : undefined)
    const profile = activeProfile()
    if (profile) for (const value of Object.values(profile.settings)) this.registerSecretsOf(value)
  }

  /** Literal secrets (passwords) that must never reach the terminal. */
  private readonly secrets = new Set<string>()

  /** The store of named connection settings in the config directory. */
  protected get profiles(): ProfileStore {
    return new ProfileStore(this.config.configDir)
  }

  /** Remember a connection URL's password so every message and error masks it. */
  protected registerSecretsOf(url: string): void {
    for (const secret of secretsOf(url)) this.secrets.add(secret)
  }

  protected mask(text: string): string {
    return maskSecrets(text, this.secrets)
  }

  override log(message = '', ...args: unknown[]): void {
    super.log(this.mask(message), ...args)
  }

  override logToStderr(message = '', ...args: unknown[]): void {
    super.logToStderr(this.mask(message), ...args)
  }

  /** Several lines at once, e.g. a summary block. */
  protected logLines(lines: string[]): void {
    for (const line of lines) this.log(line)
  }

  protected override async catch(error: Error & {exitCode?: number}): Promise<unknown> {
    const shaped = this.shape(error)
    process.exitCode = exitCodeOf(shaped)
    return super.catch(shaped)
  }

  protected override toErrorJson(error: unknown): unknown {
    const e = error as OpsError
    return {
      error: {
        name: e.name,
        message: this.mask(e.message),
        exit: exitCodeOf(e),
        ...(e.code ? {code: e.code} : {}),
        ...(e.suggestions?.length ? {suggestions: e.suggestions} : {}),
      },
    }
  }

  /**
   * A mistyped flag gets the nearest flag name and one line pointing at --help, instead
   * of oclif's whole help screen after the error.
   */
  private explainParseError(error: Errors.CLIError & {flags?: string[]; showHelp?: boolean}): void {
    error.showHelp = false
    const help = `See \`${[this.config.bin, this.id].filter(Boolean).join(' ')} --help\` for its flags.`
    const lines = error.message.split('\n').filter((line) => line !== 'See more help with --help')
    // oclif's NonExistentFlagsError, which @oclif/core does not export: its `flags` are the unknown ones.
    if (Array.isArray(error.flags) && error.flags.length > 0 && /^Nonexistent flag/.test(error.message)) {
      const ctor = this.ctor as typeof OpsCommand & {flags?: Record<string, unknown>}
      const known = Object.keys({...ctor.baseFlags, ...ctor.flags, ...(ctor.enableJsonFlag ? {json: true} : {}), help: true})
      const hints = error.flags.map((typed) => [typed, nearestFlag(typed, known)] as const).filter(([, near]) => near)
      lines[0] = `Unknown flag${error.flags.length === 1 ? '' : 's'}: ${error.flags.join(', ')}`
      for (const [typed, near] of hints) lines.push(`Did you mean ${near}${hints.length > 1 ? ` (for ${typed})` : ''}?`)
    }
    error.message = [...lines, help].join('\n')
  }

  /**
   * Parse and usage errors exit 2, user-facing errors keep their code, anything
   * unexpected exits 1 with its message (no stack unless DEBUG is set), masked.
   */
  private shape(error: Error & {code?: string}): Error {
    if (error instanceof Errors.ExitError) return error
    if (error instanceof Errors.CLIError) {
      error.message = this.mask(error.message)
      const parse = (error as {parse?: unknown}).parse !== undefined
      if (parse) {
        if (exitCodeOf(error) === ExitCode.Failure) error.oclif.exit = ExitCode.Usage
        this.explainParseError(error as Errors.CLIError & {flags?: string[]; showHelp?: boolean})
      }
      return error
    }
    const shaped = new OpsError(this.mask(error.message || String(error)), {cause: error})
    if (error.code) shaped.code = error.code
    if (process.env.DEBUG) Object.defineProperty(shaped, 'stack', {value: this.mask(error.stack ?? '')})
    return shaped
  }
}

/** `--profile NAME` or `--profile=NAME` before any `--` (read early, before flags are parsed). */
function profileArgument(argv: string[]): string | undefined {
  for (let i = 0; i < argv.length && argv[i] !== '--'; i++) {
    if (argv[i] === '--profile') return argv[i + 1]
    if (argv[i].startsWith('--profile=')) return argv[i].slice('--profile='.length)
  }
  return undefined
}
