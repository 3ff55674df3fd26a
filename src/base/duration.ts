import {Flags} from '@oclif/core'
import ms from 'ms'

import {UsageError} from './errors.js'

/**
 * "30d", "12h", "90m", "500ms", "1.5h", "2 weeks" -> milliseconds, by `ms` (the parser
 * oclif's and Salesforce's duration flags are built on). A bare number is refused: "30"
 * could mean seconds, minutes or days, and a destructive filter must not guess.
 */
export function parseDuration(text: string, name = 'duration'): number {
  const trimmed = text.trim()
  const value = /^\d+(\.\d+)?$/.test(trimmed) ? undefined : ms(trimmed as ms.StringValue)
  if (value === undefined || !Number.isFinite(value) || value < 0) {
    throw new UsageError(`Invalid ${name} "${text}": use a number and a unit, e.g. 500ms, 30s, 90m, 12h, 30d, 2w.`)
  }
  return value
}

const UNITS: [number, string][] = [
  [604_800_000, 'week'],
  [86_400_000, 'day'],
  [3_600_000, 'hour'],
  [60_000, 'minute'],
  [1000, 'second'],
]

/**
 * A duration the user gave, in words, for plans and --json: 2592000000 -> "30 days",
 * 5400000 -> "90 minutes" (the largest unit that divides it exactly). Elapsed times
 * and ETAs are format.ts's duration().
 */
export function describeDuration(ms: number): string {
  const [unit, name] = UNITS.find(([u]) => ms % u === 0 && ms >= u) ?? [1, 'millisecond']
  const n = ms / unit
  return `${n} ${name}${n === 1 ? '' : 's'}`
}

interface DurationFlagOptions {
  description: string
  /** As a user types it ("30m"); shown in --help as is. */
  default?: string
  min?: string
  max?: string
  required?: boolean
  hidden?: boolean
  helpValue?: string
}

/**
 * The one duration flag of every ops command and team plugin: its value is milliseconds,
 * and a bad value is a usage error (exit 2) naming the flag.
 */
export function durationFlag(options: DurationFlagOptions) {
  const min = options.min === undefined ? undefined : parseDuration(options.min)
  const max = options.max === undefined ? undefined : parseDuration(options.max)
  return Flags.custom<number>({
    description: options.description,
    helpValue: options.helpValue ?? 'DURATION',
    required: options.required,
    hidden: options.hidden,
    default: options.default === undefined ? undefined : parseDuration(options.default),
    defaultHelp: options.default === undefined ? undefined : async () => options.default,
    async parse(input, _context, flag) {
      const value = parseDuration(input, `--${flag.name}`)
      if (min !== undefined && value < min) throw new UsageError(`--${flag.name} must be at least ${options.min}, got "${input}".`)
      if (max !== undefined && value > max) throw new UsageError(`--${flag.name} must be at most ${options.max}, got "${input}".`)
      return value
    },
  })()
}
