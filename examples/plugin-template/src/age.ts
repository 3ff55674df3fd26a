import {UsageError} from 'ops-cli/base'

const UNIT_MS = {m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000} as const

/** `--older-than 7d` -> the cutoff instant, fixed once so the plan and the batches agree. */
export function cutoffOf(olderThan: string, now = new Date()): Date {
  const match = /^(\d+)([mhdw])$/.exec(olderThan.trim())
  if (!match) throw new UsageError(`Invalid --older-than "${olderThan}": use a number and a unit, e.g. 90m, 12h, 7d, 2w.`)
  const [, amount, unit] = match
  return new Date(now.getTime() - Number(amount) * UNIT_MS[unit as keyof typeof UNIT_MS])
}
