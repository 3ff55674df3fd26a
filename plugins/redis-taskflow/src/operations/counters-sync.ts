import {count, Plan, Progress, Step} from 'ops-cli/base'

import {oddKeyLines} from '../census/census.js'
import {measureStates} from '../census/instant.js'
import {applyChanges, changeTable, CounterChange, counterChanges, signed} from '../repair/counters.js'
import {TaskFlowOperation} from './taskflow-operation.js'

/** How counters:sync and counters:init word their messages. */
export interface CountersWording {
  analyzing: string
  noun: string
}

/** A progress line on stderr at most this often while the plan's scan runs. */
const PROGRESS_EVERY_MS = 2000

/** counters:sync and counters:init: measure states and counters at one instant, then INCRBY the differences. */
export class CountersSyncOperation extends TaskFlowOperation<{
  wording: CountersWording
  quiet: boolean
  dryRun: boolean
  allowInexact: boolean
}> {
  private changes: CounterChange[] = []

  async plan(): Promise<Plan> {
    const {wording} = this.options
    this.output.log(wording.analyzing)
    const started = Date.now()
    let shown = started
    const onProgress = (scanned: number) => {
      if (this.options.quiet || Date.now() - shown < PROGRESS_EVERY_MS) return
      shown = Date.now()
      this.output.progress(`   ... ${count(scanned)} task keys read (${count(Math.round(scanned / ((shown - started) / 1000)))}/s)`)
    }
    const measure = await measureStates(this.redis, {onProgress, writeFence: !this.options.dryRun})
    const {census} = measure
    this.changes = counterChanges(census, measure.counters)
    const off = this.changes.filter((c) => c.change !== 0)
    const settings = measure.serverSettingsChanged.length
      ? measure.serverSettingsChanged.join(', ')
      : "none (changed keys are learnt from client tracking on ops' own connection, which ends with it)"
    return {
      store: 'Redis',
      target: this.redis.maskedUrl,
      noun: wording.noun,
      count: off.length,
      filters: {},
      verb: {present: 'fix', past: 'fixed'},
      details: [
        '',
        'Analysis Results:',
        `   Total tasks found: ${count(census.tasks)}`,
        ...(census.unknownState ? [`   Tasks without a valid state: ${count(census.unknownState)} (see taskflow:defective:delete)`] : []),
        ...oddKeyLines(census).map((l) => `   ${l}`),
        `   ${measure.note}`,
        `   Server settings changed: ${settings}`,
        '',
        'Counter Values:',
        ...changeTable(this.changes).map((l) => `   ${l}`),
        '',
      ],
      ...(measure.exact || this.options.allowInexact
        ? {}
        : {
            warnings: [`${measure.note} Applying these changes may leave counters off by that much.`],
            forceRefusal:
              `Not applied: the measure is not exact (${off.length} ${wording.noun}, each figure may be off by up to ` +
              `${Number.isFinite(measure.offBy) ? count(measure.offBy) : 'an unknown amount'}). ` +
              'Run again (traffic may be calmer), or pass --allow-inexact with --force to apply it anyway.',
          }),
      messages: {
        nothing: `All counters match the ${count(census.tasks)} task states: nothing to fix.`,
        dryRun: 'DRY RUN MODE - No counters will be changed',
        success: `Fixed ${off.length} ${wording.noun}:\n${off.map((c) => `   - ${c.state}: ${signed(c.change)}`).join('\n')}`,
      },
      data: {
        tasks: census.tasks,
        unknownState: census.unknownState,
        notHashes: census.notHashes,
        badNames: census.badNames,
        exact: measure.exact,
        offBy: measure.offBy,
        note: measure.note,
        changedDuringScan: measure.changedDuringScan,
        serverSettingsChanged: measure.serverSettingsChanged,
        changes: this.changes,
      },
    }
  }

  steps(): Step[] {
    return [{title: 'Applying counter changes with INCRBY', run: () => this.apply()}]
  }

  private async *apply(): AsyncGenerator<Progress> {
    yield {done: await applyChanges(this.redis, this.changes)}
  }
}
