import {count, duration, plural} from './format.js'

/** One progress event of a long step: `done` is cumulative. */
export interface Progress {
  done: number
  /** Set when the total is learned or changes during the run. */
  total?: number
  /** The batch just committed, drawn as "batch 3 (10,990 rows, 239 ms)". */
  batch?: {number: number; size: number; ms: number; unit?: string}
  /** Free text after the counter, e.g. "last id 1200000". */
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

/**
 * A line that says what a long wait before the steps is (the plan's count can read a whole table, or wait on a lock),
 * with the seconds it has taken so far, erased when `stop` is called. Only on a terminal (mode `tty`): plain lines and
 * --json runs print nothing for it.
 */
export function waitingLine(text: string, mode: RenderMode, stream: NodeJS.WriteStream = process.stdout): () => void {
  if (mode !== 'tty') return () => {}
  const started = Date.now()
  // One screen line, or the carriage return that redraws it would leave the wrapped part behind.
  const room = Math.max(10, (stream.columns || 80) - 10)
  const shown = text.length > room ? `${text.slice(0, room - 1)}…` : text
  const draw = () => {
    const seconds = Math.floor((Date.now() - started) / 1000)
    stream.write(`\r\u001B[2K${ICON.started} ${shown}${seconds > 0 ? ` · ${seconds}s` : ''}`)
  }
  draw()
  const timer = setInterval(draw, 1000).unref()
  return () => {
    clearInterval(timer)
    stream.write('\r\u001B[2K')
  }
}

/** "batch 3 (10,990 rows, 239 ms)": which batch, how many it held, how long its transaction took. */
export function describeBatch(batch: NonNullable<Progress['batch']>): string {
  const unit = batch.unit ?? 'rows'
  return `batch ${count(batch.number)} (${plural(batch.size, unit.replace(/s$/, ''), unit)}, ${count(Math.round(batch.ms))} ms)`
}

/** Counter, rate and ETA for one step. */
export class RateMeter {
  private readonly started = Date.now()

  constructor(private total?: number) {}

  private counter(progress: Progress): {text: string; elapsed: number; rate: number} {
    if (progress.total !== undefined) this.total = progress.total
    const elapsed = Date.now() - this.started
    const rate = elapsed > 0 ? (progress.done * 1000) / elapsed : 0
    let text = this.total === undefined ? count(progress.done) : `${count(progress.done)} / ${count(this.total)}`
    if (this.total) text += ` (${Math.min(100, (progress.done * 100) / this.total).toFixed(1)}%)`
    return {text, elapsed, rate}
  }

  /** The live line: counter · rate · ETA · elapsed · the last batch · note. */
  describe(progress: Progress): string {
    const {text, elapsed, rate} = this.counter(progress)
    const parts = [text, `${count(Math.round(rate))}/s`]
    if (this.total !== undefined && rate > 0 && progress.done < this.total) {
      const etaMs = ((this.total - progress.done) * 1000) / rate
      // Under a second is "<1s": "ETA 0ms" reads as finished while work is still left.
      parts.push(`ETA ${etaMs < 1000 ? '<1s' : duration(etaMs)}`)
    }
    parts.push(`elapsed ${duration(elapsed)}`)
    if (progress.batch) parts.push(describeBatch(progress.batch))
    if (progress.note) parts.push(progress.note)
    return parts.join(' · ')
  }

  /** The finished line: what was done, in how long, at what average rate; no ETA, nothing is left to wait for. */
  finished(progress: Progress, stopped: boolean): string {
    const {text, elapsed, rate} = this.counter(progress)
    const head = stopped ? `stopped at ${text} after ${duration(elapsed)}` : `${text} in ${duration(elapsed)}`
    return `${head} · ${count(Math.round(rate))}/s`
  }
}

/** How a step ended, as the screen draws it. */
type StepEnd = 'done' | 'stopped' | 'not-started'

const ICON: Record<StepEnd | 'failed' | 'started' | 'output', string> = {
  started: '❯',
  output: '›',
  done: '✔',
  stopped: '■',
  'not-started': '■',
  failed: '✖',
}

/**
 * Runs the steps in order and returns what each did, even when a step fails (the
 * error is rethrown with `results` attached). On a TTY listr2 draws them live; an
 * interrupted step is drawn stopped (■), not done (✔), and the steps after it are
 * not started. Without a TTY the same lines are printed plainly, throttled so a
 * million-row run prints a line a second, not a line a batch.
 */
export async function runSteps(
  steps: Step[],
  options: {mode: RenderMode; signal: AbortSignal; stream?: NodeJS.WritableStream},
): Promise<StepResult[]> {
  const {signal, mode} = options
  const stream = options.stream ?? process.stdout
  const results: StepResult[] = steps.map((s) => ({title: s.title, done: 0, durationMs: 0, completed: false}))
  const interval = mode === 'lines' ? 1000 : 100

  /** Runs one step, showing its live line through `show`; returns how it ended and its final line. */
  const runOne = async (i: number, show: (text: string) => void): Promise<{end: StepEnd; line: string}> => {
    const step = steps[i]
    if (signal.aborted) return {end: 'not-started', line: `${step.title}: not started (interrupted)`}
    const meter = new RateMeter(step.total)
    const started = Date.now()
    let shown = 0
    let last: Progress = {done: 0}
    for await (const progress of step.run(signal)) {
      last = progress
      results[i].done = progress.done
      results[i].durationMs = Date.now() - started
      if (Date.now() - shown >= interval) {
        shown = Date.now()
        show(meter.describe(progress))
      }
    }
    results[i].durationMs = Date.now() - started
    results[i].completed = !signal.aborted
    const stopped = signal.aborted
    return {end: stopped ? 'stopped' : 'done', line: `${step.title}: ${meter.finished(last, stopped)}${stopped ? ' (interrupted)' : ''}`}
  }

  try {
    if (mode === 'tty') await runWithListr(steps, runOne)
    else {
      const print = mode === 'lines' ? (line: string) => stream.write(`${line}\n`) : () => {}
      for (let i = 0; i < steps.length; i++) {
        if (!signal.aborted) print(`${ICON.started} ${steps[i].title}`)
        try {
          const {end, line} = await runOne(i, (text) => print(`${ICON.output} ${text}`))
          print(`${ICON[end]} ${line}`)
        } catch (error) {
          print(`${ICON.failed} ${steps[i].title}: failed after ${count(results[i].done)} (${(error as Error).message})`)
          throw error
        }
      }
    }
  } catch (error) {
    Object.assign(error as object, {results})
    throw error
  }
  return results
}

async function runWithListr(
  steps: Step[],
  runOne: (i: number, show: (text: string) => void) => Promise<{end: StepEnd; line: string}>,
): Promise<void> {
  // Loaded only to draw on a terminal: plain lines and --json runs do not pay for it at start-up.
  const {Listr, ListrDefaultRendererLogLevels} = await import('listr2')
  const listr = new Listr(
    steps.map((step, i) => ({
      title: step.title,
      task: async (_ctx: unknown, task: {output: string; title: string; skip(message?: string): void}) => {
        const {end, line} = await runOne(i, (text) => (task.output = text))
        task.title = line
        // listr2 has no "stopped" state: a skipped task, drawn with the stop icon and its own line, is the nearest.
        if (end !== 'done') task.skip(line)
      },
    })),
    {
      renderer: 'default',
      rendererOptions: {
        suffixSkips: false,
        showSkipMessage: true,
        collapseSkips: true,
        icon: {[ListrDefaultRendererLogLevels.SKIPPED_WITH_COLLAPSE]: ICON.stopped},
      },
      fallbackRenderer: 'simple',
      exitOnError: true,
      concurrent: false,
      // The base command owns SIGINT/SIGTERM: listr2's own handler would exit mid-batch.
      registerSignalListeners: false,
      collectErrors: false,
    },
  )
  await listr.run()
}
