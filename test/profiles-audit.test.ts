/** Profiles (flag > environment > profile > default, production confirmation) and the audit log. */
import {expect} from 'chai'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import pg from 'pg'

import {OPS_HOME, parseJsonOutput, ROOT, runOps, runOpsInTty} from './helpers/cli.js'
import {createWidgets} from '../examples/plugin-template/test/widgets-table.js'
import {freshDatabase} from './helpers/servers.js'

const fixture = {entry: join(ROOT, 'test', 'fixtures', 'protocol-cli.ts')}

describe('profiles and the audit log', function () {
  let url: string
  let dbName: string
  let db: pg.Client

  before(async () => {
    url = await freshDatabase('ops_profiles')
    dbName = new URL(url).pathname.slice(1)
    db = new pg.Client({connectionString: url})
    await db.connect()
    expect((await runOps(['profiles:set', 'staging', '--database-url', url, '--description', 'test staging'])).code).to.equal(0)
    expect((await runOps(['profiles:set', 'prod', '--database-url', url, '--production'])).code).to.equal(0)
  })
  after(async () => db?.end())

  beforeEach(async () => {
    await createWidgets(db, 300)
  })
  const remaining = async () => (await db.query('SELECT count(*)::int AS n FROM widgets')).rows[0].n as number

  it('lists profiles with passwords masked, as a table and as JSON', async () => {
    await runOps(['profiles:set', 'secretive', '--database-url', 'postgres://app:topsecret@db.example:5432/app'])
    const text = await runOps(['profiles:list'])
    expect(text.stdout).to.match(/prod\s+yes/)
    expect(text.stdout).to.contain('postgres://app:****@db.example:5432/app')
    expect(text.stdout).not.to.contain('topsecret')
    const json = parseJsonOutput<{profiles: {name: string; production: boolean}[]}>(await runOps(['profiles:list', '--json']))
    expect(json.profiles.map((p) => p.name)).to.include.members(['prod', 'secretive', 'staging'])
    await runOps(['profiles:remove', 'secretive'])
    expect((await runOps(['profiles:list'])).stdout).not.to.contain('secretive')
  })

  it('connects through --profile when no flag or environment variable is given', async () => {
    const result = await runOps(['widgets:clear', '--profile', 'staging', '--force'], fixture)
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stdout).to.contain('Successfully deleted 300 widgets')
    expect(await remaining()).to.equal(0)
  })

  it('lets the environment win over the profile', async () => {
    const result = await runOps(['widgets:clear', '--profile', 'staging', '--force'], {
      ...fixture,
      env: {DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nowhere'},
    })
    expect(result.code).to.equal(1)
    expect(result.stderr).to.contain('127.0.0.1:1')
    expect(await remaining()).to.equal(300)
  })

  it('rejects an unknown profile with exit 2 and names the known ones', async () => {
    const result = await runOps(['widgets:clear', '--profile', 'nope', '--force'], fixture)
    expect(result.code).to.equal(2)
    expect(result.stderr).to.contain('No profile named "nope"')
    expect(result.stderr).to.contain('prod')
  })

  it('on a production profile, --force alone is not enough', async () => {
    const result = await runOps(['widgets:clear', '--profile', 'prod', '--force'], fixture)
    expect(result.code).to.equal(2)
    expect(result.stderr).to.contain(`--confirm ${dbName}`)
    expect(await remaining()).to.equal(300)
  })

  it('on a production profile, a wrong --confirm changes nothing and the right one proceeds', async () => {
    const wrong = await runOps(['widgets:clear', '--profile', 'prod', '--confirm', 'other_db'], fixture)
    expect(wrong.code).to.equal(2)
    expect(wrong.stderr).to.contain('does not match')
    expect(await remaining()).to.equal(300)
    const right = await runOps(['widgets:clear', '--profile', 'prod', '--confirm', dbName], fixture)
    expect(right.code, right.stderr).to.equal(0)
    expect(await remaining()).to.equal(0)
  })

  it('on a production profile, asks the user to type the database name: "yes" is not enough', async () => {
    const prompt = `To proceed, type "${dbName}"`
    const yes = await runOpsInTty(['widgets:clear', '--profile', 'prod', '--force'], 'yes', {...fixture, prompt, timeoutMs: 30_000})
    expect(yes.stdout).to.contain('WARNING: Destructive action on production profile "prod"')
    expect(yes.stdout).to.contain('Operation cancelled')
    expect(await remaining()).to.equal(300)
    const typed = await runOpsInTty(['widgets:clear', '--profile', 'prod'], dbName, {...fixture, prompt, timeoutMs: 30_000})
    expect(typed.stdout).to.contain('Successfully deleted 300 widgets')
    expect(await remaining()).to.equal(0)
  })

  it('appends one audit line per destructive run that is not a dry-run, and ops audit shows it', async () => {
    const auditPath = join(OPS_HOME, 'data', 'audit.log')
    const linesBefore = readLines(auditPath).length
    await runOps(['widgets:clear', '--database-url', url, '--dry-run'], fixture)
    expect(readLines(auditPath).length).to.equal(linesBefore)
    const run = await runOps(['widgets:clear', '--database-url', url.replace('postgres@', 'postgres:pw123456@'), '--force'], fixture)
    expect(run.code, run.stderr).to.equal(0)
    const lines = readLines(auditPath)
    expect(lines.length).to.equal(linesBefore + 1)
    const entry = JSON.parse(lines.at(-1)!)
    expect(entry).to.include({outcome: 'done', planned: 300, done: 300})
    expect(entry.connection).to.contain(':****@')
    expect(lines.at(-1)).not.to.contain('pw123456')
    expect(entry).to.have.keys([
      'time',
      'user',
      'host',
      'command',
      'connection',
      'profile',
      'filters',
      'planned',
      'done',
      'durationMs',
      'outcome',
    ])

    const failed = await runOps(['widgets:clear', '--database-url', 'postgres://postgres@127.0.0.1:1/x', '--force'], fixture)
    expect(failed.code).to.equal(1)
    expect(JSON.parse(readLines(auditPath).at(-1)!)).to.include({outcome: 'failed', planned: null})

    const shown = await runOps(['audit', '--limit', '2'])
    expect(shown.code).to.equal(0)
    expect(shown.stdout).to.match(/done\s+300\s+300/)
    expect(shown.stdout).to.contain('failed')
    const json = parseJsonOutput<{entries: {outcome: string}[]}>(await runOps(['audit', '--limit', '2', '--json']))
    expect(json.entries.map((e) => e.outcome)).to.deep.equal(['done', 'failed'])
  })
})

function readLines(path: string): string[] {
  try {
    return readFileSync(path, 'utf8').split('\n').filter(Boolean)
  } catch {
    return []
  }
}
