import type Enquirer from 'enquirer'

import {UsageError} from './errors.js'

/** Answers that mean yes; anything else, including an empty line, means no. */
const YES = /^(y|yes)$/i

/**
 * Refuses at once when nobody can answer: a prompt on a closed or piped stdin
 * would hang a cron job or CI run forever.
 */
export function assertCanPrompt(
  what: string,
  input: NodeJS.ReadStream = process.stdin,
  suggestions = ['Re-run with --force to proceed without a prompt'],
): void {
  if (!input.isTTY) {
    throw new UsageError(`Refusing to ${what} without confirmation: standard input is not a terminal, so nobody can answer the prompt.`, [
      ...suggestions,
      'Run with --dry-run to see what would happen',
    ])
  }
}

/**
 * Asks "(yes/no)" and resolves true only for yes / y. Default is no; Ctrl-C or
 * Escape at the prompt also means no.
 */
export async function confirm(question: string, output: NodeJS.WriteStream = process.stdout): Promise<boolean> {
  const enquirer = await loadEnquirer()
  try {
    const answer = await enquirer.prompt<{answer: string}>({
      type: 'input',
      name: 'answer',
      message: `${question} (yes/no)`,
      initial: 'no',
      stdout: output,
    } as Parameters<typeof Enquirer.prompt>[0])
    return YES.test(answer.answer.trim())
  } catch {
    return false
  }
}

/** Asks the user to type `name` exactly; anything else (or Ctrl-C) means no. */
export async function confirmByName(message: string, name: string, output: NodeJS.WriteStream = process.stdout): Promise<boolean> {
  const enquirer = await loadEnquirer()
  try {
    const answer = await enquirer.prompt<{answer: string}>({type: 'input', name: 'answer', message, stdout: output} as Parameters<
      typeof Enquirer.prompt
    >[0])
    return answer.answer.trim() === name
  } catch {
    return false
  }
}

/** enquirer is loaded only when a prompt is shown: a --force or --json run does not pay for it at start-up. */
async function loadEnquirer(): Promise<typeof Enquirer> {
  return (await import('enquirer')).default
}
