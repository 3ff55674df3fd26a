import {expect} from 'chai'
import type {Plan, PlanHookOptions} from 'ops-cli/base'

import {isUnbounded, vetoReason} from '../src/index.js'

const plan = (count: number, filters: Record<string, unknown>): Plan => ({
  store: 'PostgreSQL',
  target: 'postgres://db/app',
  noun: 'TaskManager records',
  count,
  filters,
})
const options = (p: Plan, extra: Partial<PlanHookOptions> = {}): PlanHookOptions => ({
  command: 'taskmanager:clear',
  plan: p,
  dryRun: false,
  force: true,
  ...extra,
})
const production = {profile: {name: 'prod', production: true}}

describe('the acme veto policy', () => {
  it('calls a plan unbounded when no filter narrows it: --status ALL, nothing given, only the table', () => {
    expect(isUnbounded({status: 'ALL', taskModule: null, taskName: null, olderThan: null, table: 'task_manager_taskmanager'})).to.equal(
      true,
    )
    expect(isUnbounded({status: null, taskModule: null})).to.equal(true)
    expect(isUnbounded({table: 'widgets', olderThanMs: null, createdBefore: null})).to.equal(true)
    expect(isUnbounded({pattern: '*'})).to.equal(true)
    expect(isUnbounded({})).to.equal(true)
  })

  it('calls a plan bounded as soon as one filter narrows it', () => {
    expect(isUnbounded({status: 'DONE', taskModule: null})).to.equal(false)
    expect(isUnbounded({table: 'widgets', olderThanMs: 604_800_000})).to.equal(false)
  })

  it('refuses an unbounded plan on a production profile, and lets it run elsewhere', () => {
    const all = plan(10, {status: 'ALL'})
    expect(vetoReason(options(all, production), {})).to.match(/every one of the TaskManager records on production profile "prod"/)
    expect(vetoReason(options(all, {profile: {name: 'staging', production: false}}), {})).to.equal(undefined)
    expect(vetoReason(options(all), {})).to.equal(undefined)
    expect(vetoReason(options(plan(10, {status: 'DONE'}), production), {})).to.equal(undefined)
  })

  it('refuses more rows than OPS_WIDGETS_MAX_ROWS, and exactly that many is fine', () => {
    expect(vetoReason(options(plan(1001, {status: 'DONE'})), {OPS_WIDGETS_MAX_ROWS: '1000'})).to.match(
      /plans 1,001 TaskManager records, more than OPS_WIDGETS_MAX_ROWS=1,000/,
    )
    expect(vetoReason(options(plan(1000, {status: 'DONE'})), {OPS_WIDGETS_MAX_ROWS: '1000'})).to.equal(undefined)
    expect(vetoReason(options(plan(1, {})), {OPS_WIDGETS_MAX_ROWS: 'many'})).to.match(/must be a whole number/)
  })
})
