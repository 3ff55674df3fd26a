import {mkdirSync, readFileSync, renameSync, writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'

import {UsageError} from './errors.js'

/**
 * A named set of connection settings in the config directory. Settings are
 * keyed by the environment variable they stand in for (DATABASE_URL,
 * REDIS_URL), so precedence is simply flag > environment > profile > default.
 */
export interface Profile {
  name: string
  settings: Record<string, string>
  /** Destructive commands then ask the user to type the database name (or the Redis host:port). */
  production: boolean
  description?: string
}

interface ProfileFile {
  profiles: Record<string, Omit<Profile, 'name'>>
}

export class ProfileStore {
  constructor(private readonly configDir: string) {}

  get path(): string {
    return join(this.configDir, 'profiles.json')
  }

  private read(): ProfileFile {
    try {
      return JSON.parse(readFileSync(this.path, 'utf8')) as ProfileFile
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {profiles: {}}
      throw new UsageError(`Cannot read profiles from ${this.path}: ${(error as Error).message}`)
    }
  }

  private write(file: ProfileFile): void {
    mkdirSync(dirname(this.path), {recursive: true})
    const temporary = `${this.path}.${process.pid}.tmp`
    writeFileSync(temporary, JSON.stringify(file, null, 2) + '\n', {mode: 0o600})
    renameSync(temporary, this.path)
  }

  list(): Profile[] {
    return Object.entries(this.read().profiles)
      .map(([name, p]) => ({name, ...p}))
      .sort((a, b) => a.name.localeCompare(b.name))
  }

  get(name: string): Profile {
    const found = this.read().profiles[name]
    if (!found) {
      const known = Object.keys(this.read().profiles)
      throw new UsageError(`No profile named "${name}" in ${this.path}.`, [
        known.length ? `Known profiles: ${known.join(', ')}` : 'Create one with: ops profiles:set NAME --database-url URL',
      ])
    }
    return {name, ...found}
  }

  /** Creates or updates; settings given as undefined are left as they were. */
  set(name: string, update: {settings?: Record<string, string | undefined>; production?: boolean; description?: string}): Profile {
    if (!/^[\w.-]+$/.test(name)) throw new UsageError(`Invalid profile name "${name}": use letters, digits, ".", "_" and "-".`)
    const file = this.read()
    const current = file.profiles[name] ?? {settings: {}, production: false}
    const settings = {...current.settings}
    for (const [key, value] of Object.entries(update.settings ?? {})) if (value !== undefined) settings[key] = value
    file.profiles[name] = {
      settings,
      production: update.production ?? current.production,
      ...((update.description ?? current.description) ? {description: update.description ?? current.description} : {}),
    }
    this.write(file)
    return {name, ...file.profiles[name]}
  }

  remove(name: string): void {
    const file = this.read()
    this.get(name)
    delete file.profiles[name]
    this.write(file)
  }
}

let active: Profile | undefined

/** The profile selected for this run (--profile or OPS_PROFILE), if any. */
export function activeProfile(): Profile | undefined {
  return active
}

export function setActiveProfile(profile: Profile | undefined): void {
  active = profile
}
