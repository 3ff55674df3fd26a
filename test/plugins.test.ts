/**
 * A team plugin's life, end to end, in throwaway OPS_DATA_DIR / OPS_CONFIG_DIR /
 * OPS_CACHE_DIR: `npm pack` examples/plugin-template, `ops plugins:install` the
 * tarball (npm fetches pg and @oclif/core from the registry; the optional peer
 * ops-cli is never fetched), run its command against a real table, its hooks,
 * uninstall it, then `ops plugins:link` the working copy.
 */
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {existsSync, mkdtempSync, readdirSync, readFileSync, rmSync} from 'node:fs'
import {createRequire} from 'node:module'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import pg from 'pg'

import {ROOT, runOps} from './helpers/cli.js'
import {createWidgets} from '../examples/plugin-template/test/widgets-table.js'
import {freshDatabase} from './helpers/servers.js'

const TEMPLATE = join(ROOT, 'examples', 'plugin-template')
const PLUGIN = '@acme/ops-plugin-widgets'
const npm = join(ROOT, 'node_modules', 'npm', 'bin', 'npm-cli.js')

/** An error message as one line: oclif wraps it behind " ›   ". */
const oneLine = (text: string) => text.replace(/\n\s*›\s*/g, ' ').replace(/\s+/g, ' ')

describe('team plugins: pack, install, run, hooks, uninstall, link', function () {
  this.timeout(180_000)
  const home = mkdtempSync(join(tmpdir(), 'ops-plugins-test-'))
  const dirs = {OPS_DATA_DIR: join(home, 'data'), OPS_CONFIG_DIR: join(home, 'config'), OPS_CACHE_DIR: join(home, 'cache')}
  const ops = (args: string[], env: Record<string, string | undefined> = {}) => runOps(args, {env: {...dirs, ...env}, timeoutMs: 150_000})
  let tarball: string
  let url: string
  let db: pg.Client

  before(async function () {
    // prepack builds dist/ and writes oclif.manifest.json into the tarball.
    execFileSync(process.execPath, [npm, 'pack', '--pack-destination', home], {cwd: TEMPLATE, stdio: 'pipe'})
    tarball = join(home, 'acme-ops-plugin-widgets-0.1.0.tgz')
    const files = execFileSync('tar', ['-tzf', tarball]).toString().split('\n')
    expect(files).to.include.members([
      'package/oclif.manifest.json',
      'package/dist/commands/widgets/clear.js',
      'package/dist/hooks/veto.js',
    ])
    url = await freshDatabase('ops_plugins')
    db = new pg.Client({connectionString: url})
    await db.connect()
  })
  after(async () => {
    await db?.end()
    rmSync(home, {recursive: true, force: true})
  })

  beforeEach(async () => {
    // 300 widgets 30 days old, then 100 of a day.
    await createWidgets(db, 400, (i) => ({ageDays: i <= 300 ? 30 : 1}))
  })
  const remaining = async () => (await db.query('SELECT count(*)::int AS n FROM widgets')).rows[0].n as number
  const clear = (...args: string[]) => ['widgets:clear', '--database-url', url, '--table', 'widgets', '--older-than', '7d', ...args]

  describe('installed from its tarball', () => {
    before(async function () {
      const install = await ops(['plugins:install', `file:${tarball}`])
      expect(install.code, install.stderr).to.equal(0)
      expect(install.stderr).to.contain('installed v0.1.0')
      expect(install.stderr).not.to.contain('may not work as expected')
    })

    it('lands in the data directory with its dependencies, and without a copy of ops', () => {
      const modules = join(dirs.OPS_DATA_DIR, 'node_modules')
      expect(existsSync(join(modules, '@acme', 'ops-plugin-widgets', 'oclif.manifest.json'))).to.equal(true)
      expect(existsSync(join(modules, 'pg', 'package.json'))).to.equal(true)
      // The optional peer is not fetched: the plugin's init hook resolves it to the running ops.
      expect(existsSync(join(modules, 'ops-cli'))).to.equal(false)
      const manifest = JSON.parse(readFileSync(join(dirs.OPS_DATA_DIR, 'package.json'), 'utf8'))
      expect(manifest.oclif.plugins).to.deep.include({name: PLUGIN, type: 'user', url: `file:${tarball}`})
    })

    it('is listed by `ops plugins`, and its topic by `ops --help`', async () => {
      const list = await ops(['plugins'])
      expect(list.stdout).to.contain(`${PLUGIN} 0.1.0`)
      const help = await ops(['--help'])
      expect(help.stdout).to.match(/widgets\s+The acme widgets table in PostgreSQL/)
    })

    it("shows its help with its own flags and the protocol's", async () => {
      const help = await ops(['widgets:clear', '--help'])
      expect(help.code, help.stderr).to.equal(0)
      for (const flag of [
        '--table=TABLE',
        '--older-than=AGE',
        '--batch-size',
        '--dry-run',
        '--force',
        '--show-summary',
        '--json',
        '--profile=NAME',
      ])
        expect(help.stdout).to.contain(flag)
    })

    it('dry-runs without writing, then deletes with --force', async () => {
      const dry = await ops(clear('--dry-run'))
      expect(dry.code, dry.stderr).to.equal(0)
      expect(dry.stdout).to.contain('Found 300 rows of widgets to delete')
      expect(dry.stdout).to.contain('DRY RUN MODE')
      expect(await remaining()).to.equal(400)
      const run = await ops(clear('--force', '--batch-size', '64'))
      expect(run.code, run.stderr).to.equal(0)
      expect(run.stdout).to.contain('Successfully deleted 300 rows of widgets')
      expect(await remaining()).to.equal(100)
    })

    it('lets its ops:plan hook veto a run (exit 1, nothing deleted) and its ops:result hook record both runs', async () => {
      const notify = join(home, 'notify.jsonl')
      const vetoed = await ops(clear('--force'), {OPS_WIDGETS_MAX_ROWS: '299', OPS_WIDGETS_NOTIFY_FILE: notify})
      expect(vetoed.code).to.equal(1)
      expect(oneLine(vetoed.stderr)).to.contain(
        'Vetoed by a plugin hook: acme policy: widgets:clear plans 300 rows of widgets, more than OPS_WIDGETS_MAX_ROWS=299',
      )
      expect(await remaining()).to.equal(400)
      const allowed = await ops(clear('--force', '--json'), {OPS_WIDGETS_MAX_ROWS: '300', OPS_WIDGETS_NOTIFY_FILE: notify})
      expect(allowed.code, allowed.stderr).to.equal(0)
      expect(JSON.parse(allowed.stdout)).to.include({outcome: 'done', done: 300})
      const lines = readFileSync(notify, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
      expect(lines).to.deep.equal([
        {command: 'widgets:clear', outcome: 'vetoed', planned: 300, done: 0},
        {command: 'widgets:clear', outcome: 'done', planned: 300, done: 300},
      ])
    })

    it('goes away with `ops plugins:uninstall`', async () => {
      const uninstall = await ops(['plugins:uninstall', PLUGIN])
      expect(uninstall.code, uninstall.stderr).to.equal(0)
      expect((await ops(['plugins'])).stdout).not.to.contain(PLUGIN)
      expect(existsSync(join(dirs.OPS_DATA_DIR, 'node_modules', '@acme', 'ops-plugin-widgets'))).to.equal(false)
      const gone = await ops(clear('--force'))
      expect(gone.code).to.equal(2)
      expect(gone.stderr).to.contain('widgets:clear is not a ops command')
      expect(await remaining()).to.equal(400)
    })
  })

  describe('linked from a working copy', () => {
    before(async function () {
      // A linked ESM plugin runs its compiled dist/: oclif cannot transpile it on the fly.
      execFileSync(process.execPath, [createRequire(import.meta.url).resolve('typescript/bin/tsc'), '-p', TEMPLATE], {stdio: 'inherit'})
      const link = await ops(['plugins:link', TEMPLATE, '--no-install'])
      expect(link.code, link.stderr).to.equal(0)
    })
    after(async () => ops(['plugins:uninstall', PLUGIN]))

    it('is listed as a link and its command runs from the working copy', async () => {
      expect((await ops(['plugins'])).stdout).to.contain(`${PLUGIN} 0.1.0 (link) ${TEMPLATE}`)
      const run = await ops(clear('--force'))
      expect(run.code, run.stderr).to.equal(0)
      expect(run.stdout).to.contain('Successfully deleted 300 rows of widgets')
      expect(await remaining()).to.equal(100)
    })
  })

  it('leaves no tarball or manifest behind in the working copy', () => {
    expect(readdirSync(TEMPLATE).filter((f) => f.endsWith('.tgz') || f === 'oclif.manifest.json')).to.deep.equal([])
  })
})
