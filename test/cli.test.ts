/** The host as a user first meets it: the binary, its topics, core plugins and exit codes. */
import {expect} from 'chai'

import {parseJsonOutput, runOps} from './helpers/cli.js'

describe('the ops host', () => {
  it('lists both first-party topics and the core plugins in its help', async () => {
    const result = await runOps(['--help'])
    expect(result.code).to.equal(0)
    expect(result.stdout).to.match(/taskmanager\s+Django TaskManager table/)
    expect(result.stdout).to.match(/taskflow\s+AsyncTaskFlow task store/)
    for (const command of ['plugins', 'autocomplete', 'audit', 'profiles']) expect(result.stdout).to.contain(command)
  })

  it('uses ":" between topic and command', async () => {
    const result = await runOps(['taskmanager', '--help'])
    expect(result.stdout).to.contain('taskmanager:clear')
    expect(result.stdout).to.contain('taskmanager:summary')
    expect(result.stdout).to.contain('taskmanager:stuck')
  })

  it('also accepts words for topics: "ops plugins install", "ops taskmanager summary"', async () => {
    const install = await runOps(['plugins', 'install', '--help'])
    expect(install.code).to.equal(0)
    expect(install.stdout).to.contain('Installs a plugin into ops')
    const summary = await runOps(['taskmanager', 'summary', '--help'])
    expect(summary.code).to.equal(0)
    expect(summary.stdout).to.contain('taskmanager:summary')
  })

  it('prints its version', async () => {
    const result = await runOps(['--version'])
    expect(result.code).to.equal(0)
    expect(result.stdout).to.match(/^ops-cli\/\d+\.\d+\.\d+ /)
  })

  it('exits 2 for an unknown command, an unknown flag and a bad flag value', async () => {
    expect((await runOps(['no-such-command'])).code).to.equal(2)
    expect((await runOps(['audit', '--no-such-flag'])).code).to.equal(2)
    const bad = await runOps(['taskmanager:clear', '--status', 'FINISHED', '--dry-run'])
    expect(bad.code).to.equal(2)
    expect(bad.stderr).to.contain('PENDING, DONE, CANCELLED, REVERSED, PAUSED, ABORTED, ERROR, SCHEDULED, ALL')
  })

  it('reports a usage error as one JSON document with --json', async () => {
    const result = await runOps(['audit', '--limit', '0', '--json'])
    expect(result.code).to.equal(2)
    expect(parseJsonOutput<{error: {exit: number}}>(result).error.exit).to.equal(2)
  })
})
