import {Listr} from 'listr2'

import {count, duration} from './format.js'

/** One progress event of a long step: `done` is cumulative. */
export interface Progress {
  done: number
  /** Set when the total is learned or changes during the run. */
  total?: number
  /** Free text appended to the counter, e.g. "batch 12, last id 1200000". */
  note?: string
}

/** A unit of long work: an async generator of progress that stops when `signal` aborts. */
export interface Step {
  title: string
  total?: number
  run(signal: AbortSignal): AsyncIterable<Progress>
}

export interface StepResult {
  title: string
  done: number
  durationMs: number
  completed: boolean
}

/** tty: listr2's live renderer; lines: plain lines (not a TTY, or CI set); silent: --json. */
export type RenderMode = 'tty' | 'lines' | 'silent'

export function renderModeFor(options: {json: boolean; stream?: NodeJS.WriteStream}): RenderMode {
  if (options.json) return 'silent'
  const stream = options.stream ?? process.stdout
  if (!stream.isTTY || process.env.CI) return 'lines'
  return 'tty'
}

/** Counter, rate and ETA for one step. */
export class RateMeter {
  private readonly started = Date.now()

  constructor(private total?: number) {}

  describe(progress: Progress): string {
    if (progress.total !== undefined) this.total = progress.total
    const elapsed = Date.now() - this.started
    const rate = elapsed > 0 ? (progress.done * 1000) / elapsed : 0
    const parts = [this.total === undefined ? count(progress.done) : `${count(progress.done)} / ${count(this.total)}`]
    if (this.total) parts[0] += ` (${Math.min(100, (progress.done * 100) / this.total).toFixed(1)}%)`
    parts.push(`${count(Math.round(rate))}/s`)
    if (this.total !== undefined && rate > 0) parts.push(`ETA ${duration(((this.total - progress.done) * 1000) / rate)}`)
    parts.push(`elapsed ${duration(elapsed)}`)
    if (progress.note) parts.push(progress.note)
    return parts.join(' · ')
  }
}

/**
 * Runs the steps in order through listr2 and returns what each did, even when a
 * step fails (the error is rethrown with `results` attached).
 */
export async function runSteps(steps: Step[], options: {mode: RenderMode; signal: AbortSignal}): Promise<StepResult[]> {
  const results: StepResult[] = steps.map((s) => ({title: s.title, done: 0, durationMs: 0, completed: false}))
  // Plain lines are throttled so a million-row run prints a line a second, not a line a batch.
  const interval = options.mode === 'lines' ? 1000 : 100
  const listr = new Listr(
    steps.map((step, i) => ({
      title: step.title,
      task: async (_ctx: unknown, task: {output: string; title: string}) => {
        const meter = new RateMeter(step.total)
        const started = Date.now()
        let shown = 0
        let last: Progress = {done: 0}
        for await (const progress of step.run(options.signal)) {
          last = progress
          results[i].done = progress.done
          results[i].durationMs = Date.now() - started
          if (Date.now() - shown >= interval) {
            shown = Date.now()
            task.output = meter.describe(progress)
          }
        }
        results[i].durationMs = Date.now() - started
        results[i].completed = !options.signal.aborted
        const suffix = options.signal.aborted ? ' (interrupted)' : ''
        task.title = `${step.title}: ${meter.describe(last)}${suffix}`
      },
    })),
    {
      renderer: options.mode === 'tty' ? 'default' : options.mode === 'lines' ? 'simple' : 'silent',
      fallbackRenderer: 'simple',
      exitOnError: true,
      concurrent: false,
      // The base command owns SIGINT/SIGTERM: listr2's own handler would exit mid-batch.
      registerSignalListeners: false,
      collectErrors: false,
    },
  )
  try {
    await listr.run()
  } catch (error) {
    Object.assign(error as object, {results})
    throw error
  }
  return results
}
