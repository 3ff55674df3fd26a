import {appendFileSync, existsSync, mkdirSync, readFileSync} from 'node:fs'
import {hostname, userInfo} from 'node:os'
import {join} from 'node:path'

/** One line of the audit log: every destructive run that is not a dry-run. */
export interface AuditEntry {
  time: string
  user: string
  host: string
  command: string
  /** The masked connection target (never a password). */
  connection: string | null
  profile: string | null
  filters: Record<string, unknown>
  planned: number | null
  done: number
  /** The work's own time, without the time spent at the prompt. */
  durationMs: number
  /** How long the user took to answer the prompt, when there was one. */
  promptMs?: number
  /**
   * refused: nobody could confirm (no TTY without --force, a wrong --confirm), or --force
   * met a plan that needs a person; nothing was changed. incomplete: the steps ran to
   * their end but left work (rows that kept changing); exit 1.
   */
  outcome: 'done' | 'interrupted' | 'failed' | 'cancelled' | 'nothing-to-do' | 'vetoed' | 'refused' | 'incomplete'
  error?: string
}

export class AuditLog {
  constructor(private readonly dataDir: string) {}

  get path(): string {
    return join(this.dataDir, 'audit.log')
  }

  /** Appends one JSON line; a line under PIPE_BUF is written atomically by O_APPEND. */
  append(entry: Omit<AuditEntry, 'time' | 'user' | 'host'>): AuditEntry {
    const full: AuditEntry = {time: new Date().toISOString(), user: currentUser(), host: hostname(), ...entry}
    mkdirSync(this.dataDir, {recursive: true})
    appendFileSync(this.path, JSON.stringify(full) + '\n', {mode: 0o600})
    return full
  }

  /** The newest `limit` entries, oldest first. */
  recent(limit: number): AuditEntry[] {
    if (!existsSync(this.path)) return []
    const lines = readFileSync(this.path, 'utf8').split('\n').filter(Boolean)
    return lines.slice(-limit).flatMap((line) => {
      try {
        return [JSON.parse(line) as AuditEntry]
      } catch {
        return [] // a torn line from a crashed writer is skipped, not fatal
      }
    })
  }
}

function currentUser(): string {
  try {
    return userInfo().username
  } catch {
    return process.env.USER ?? 'unknown'
  }
}
