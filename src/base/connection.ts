import {OpsError} from './errors.js'
import {activeProfile} from './profiles.js'

/** Where a connection setting came from, for messages and the audit trail. */
export type SettingSource = 'flag' | 'environment' | 'profile' | 'default'

export interface ResolvedUrl {
  url: string
  source: SettingSource
}

/**
 * Connection settings: flag > environment > profile > default, so one run can override a profile.
 * Empty strings count as unset so `DATABASE_URL= ops ...` falls through.
 */
export function resolveUrl(options: {flag?: string; env: string; profile?: string; fallback: string}): ResolvedUrl {
  const {flag, env, fallback} = options
  const fromEnv = process.env[env]
  // A profile's settings are keyed by the variable they stand in for (DATABASE_URL, REDIS_URL).
  const profile = options.profile ?? activeProfile()?.settings[env]
  if (flag) return {url: flag, source: 'flag'}
  if (fromEnv) return {url: fromEnv, source: 'environment'}
  if (profile) return {url: profile, source: 'profile'}
  return {url: fallback, source: 'default'}
}

const MASK = '****'

/** `postgres://u:secret@h/db` -> `postgres://u:****@h/db`; also masks `password=` query parameters. */
export function maskUrl(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password) parsed.password = MASK
    for (const key of [...parsed.searchParams.keys()]) {
      if (/pass|secret|token/i.test(key)) parsed.searchParams.set(key, MASK)
    }
    return parsed.toString()
  } catch {
    return maskSecrets(url)
  }
}

const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/[^:/?#\s@]*:)([^@\s/]+)@/gi

/** Masks URL passwords inside any text, plus every literal secret given. */
export function maskSecrets(text: string, secrets: Iterable<string> = []): string {
  let masked = text.replace(URL_CREDENTIALS, `$1${MASK}@`)
  for (const secret of secrets) {
    if (secret.length >= 3) masked = masked.split(secret).join(MASK)
  }
  return masked
}

/** The secrets a URL carries (password, raw and percent-decoded), for masking. */
export function secretsOf(url: string): string[] {
  try {
    const parsed = new URL(url)
    const found = [parsed.password, decodeURIComponent(parsed.password)]
    for (const [key, value] of parsed.searchParams) if (/pass|secret|token/i.test(key)) found.push(value)
    return found.filter((s) => s.length > 0)
  } catch {
    return []
  }
}

/** host:port of a URL, for "could not connect to ..." messages. */
export function endpointOf(url: string, defaultPort: number): string {
  try {
    const parsed = new URL(url)
    return `${parsed.hostname || 'localhost'}:${parsed.port || defaultPort}`
  } catch {
    return '(unparseable URL)'
  }
}

/** A connection failure that names the store, host and port, never the password. */
export function connectionError(store: string, url: string, defaultPort: number, cause: unknown): OpsError {
  const reason = cause instanceof Error ? cause.message || cause.name : String(cause)
  const detail =
    (cause as {code?: string})?.code && !reason.includes((cause as {code: string}).code)
      ? `${(cause as {code: string}).code}: ${reason}`
      : reason
  return new OpsError(
    maskSecrets(`Could not connect to ${store} at ${endpointOf(url, defaultPort)} (${maskUrl(url)}): ${detail}`, secretsOf(url)),
    {cause},
  )
}
