import {Flags, Interfaces} from '@oclif/core'
import {distance} from 'fastest-levenshtein'

/**
 * oclif checks a flag's `options` with `options.includes(input)` before `parse` runs; this
 * list answers that check case-insensitively, so `--status done` passes and `parse` turns
 * it into `DONE`. Help, the manifest and shell completion still see the plain values.
 */
class CaseInsensitiveChoices<T extends string> extends Array<T> {
  override includes(input: unknown): boolean {
    return typeof input === 'string' && this.some((choice) => choice.toLowerCase() === input.toLowerCase())
  }

  canonical(input: string): T {
    return this.find((choice) => choice.toLowerCase() === input.toLowerCase()) ?? (input as T)
  }
}

interface ChoiceFlagOptions<T extends string> {
  choices: readonly T[]
  description: string
  helpValue?: string
}

/**
 * An option flag whose values are typed in any case and come out as written in `choices`
 * (`--status done` -> "DONE"); anything else is oclif's usage error listing the choices.
 */
export function choiceFlag<T extends string>(options: ChoiceFlagOptions<T>) {
  const choices = CaseInsensitiveChoices.from(options.choices) as CaseInsensitiveChoices<T>
  // Built as a string flag: oclif's overloads cannot resolve NotArray<T> for a generic T.
  const flag = Flags.custom<string>({
    description: options.description,
    options: choices,
    helpValue: options.helpValue,
    async parse(input) {
      return choices.canonical(input)
    },
  })()
  return flag as unknown as Interfaces.OptionFlag<T | undefined>
}

/** The known flag nearest to a mistyped one ("--stauts" -> "--status"), if one is close enough to be meant. */
export function nearestFlag(typed: string, known: Iterable<string>): string | undefined {
  const name = typed.replace(/^-+/, '').split('=')[0]
  let best: {name: string; distance: number} | undefined
  for (const candidate of known) {
    const d = distance(name.toLowerCase(), candidate.toLowerCase())
    if (!best || d < best.distance) best = {name: candidate, distance: d}
  }
  // Two edits, or a third of the word for long names: beyond that a guess misleads more than it helps.
  if (!best || best.distance > Math.max(2, Math.floor(name.length / 3))) return undefined
  return `--${best.name}`
}
