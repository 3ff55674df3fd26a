/**
 * ops installed the way users install it: the host and both first-party plugins
 * published from the build `npm test` just made to a private registry
 * (verdaccio, mirroring npm for everything else), `npm install -g ops-cli` into
 * a prefix of its own, run from a HOME with no trace of this repository; then a
 * team plugin published under the company's scope and installed by name, with
 * the registry taken from ~/.npmrc as a company sets it. One registry for the
 * whole file; everything it starts or writes is removed afterwards.
 */
import {expect} from 'chai'
import {existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Redis} from 'ioredis'
import pg from 'pg'

import {createWidgets} from '../examples/plugin-template/test/widgets-table.js'
import {createDjangoSchema, insertTasks, taskRow} from '../plugins/postgres-taskmanager/test/helpers/django-fixture.js'
import {writeTasks} from '../plugins/redis-taskflow/test/fixtures.js'
import {ROOT} from './helpers/cli.js'
import {npm, OutsideWorld, Registry, repackaged, staleBuild, startRegistry, UserMachine, watchOutsideWorld} from './helpers/registry.js'
import {freshDatabase, freshRedis} from './helpers/servers.js'

const TEAM_PLUGIN = '@team/ops-plugin-widgets'

/** An error message as one line: oclif wraps it behind " ›   ". */
const oneLine = (text: string) => text.replace(/\n\s*›\s*/g, ' ').replace(/\s+/g, ' ')

describe('installed from a registry: `npm install -g ops-cli`, team plugins by name', function () {
  this.timeout(600_000)
  const work = mkdtempSync(join(tmpdir(), 'ops-test-publish-'))
  let registry: Registry
  let outside: OutsideWorld
  let user: UserMachine
  let publisherEnv: NodeJS.ProcessEnv
  const tarballs: Record<string, string> = {}
  let databaseUrl: string
  let db: pg.Client
  let redisUrl: string
  let template: string

  /** Publishes a tarball or an unpacked package directory as the maintainers do. */
  const publish = (what: string, ...flags: string[]) =>
    npm(['publish', what, '--registry', registry.url, '--ignore-scripts', ...flags], {env: publisherEnv})
  const ops = (args: string[], env: NodeJS.ProcessEnv = {}) => user.run('ops', args, env)

  before(async function () {
    const stale = await staleBuild()
    if (stale) throw new Error(`Not publishing a stale build: ${stale}`)
    registry = await startRegistry()
    publisherEnv = {...process.env, NPM_CONFIG_USERCONFIG: join(work, 'publisher.npmrc')}
    writeFileSync(join(work, 'publisher.npmrc'), `${registry.authLine}\n`)
    const packed = JSON.parse(
      await npm(['pack', '--workspaces', '--include-workspace-root', '--pack-destination', work, '--json'], {cwd: ROOT, env: process.env}),
    ) as {name: string; filename: string}[]
    for (const {name, filename} of packed) tarballs[name] = join(work, filename)
    expect(Object.keys(tarballs)).to.have.members(['ops-cli', '@ops-cli/plugin-postgres-taskmanager', '@ops-cli/plugin-redis-taskflow'])
    await Promise.all(Object.values(tarballs).map((tarball) => publish(tarball)))

    outside = await watchOutsideWorld()
    user = new UserMachine((await npm(['config', 'get', 'cache'], {env: process.env})).trim(), outside.proxyUrl)
    // A company's ~/.npmrc: its registry (which mirrors npm) for everything, from the first npm or ops run on.
    user.npmrc([`registry=${registry.url}`])
    // The global install is most of this hook's time: the team plugin is built and the stores filled meanwhile.
    await Promise.all([
      npm(['install', '--global', '--prefix', user.prefix, 'ops-cli', '--no-audit', '--no-fund'], {env: user.env}),
      packTemplate(),
      fillStores(),
    ])
  })

  /** The template, packed (its prepack builds it and writes its manifest): the team's plugin. */
  async function packTemplate() {
    const dir = join(ROOT, 'examples', 'plugin-template')
    await npm(['pack', '--pack-destination', work], {cwd: dir, env: process.env})
    const {name, version} = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
    template = join(work, `${name.replace('@', '').replace('/', '-')}-${version}.tgz`)
  }

  async function fillStores() {
    databaseUrl = await freshDatabase('ops_registry')
    db = new pg.Client({connectionString: databaseUrl})
    await db.connect()
    await createDjangoSchema(db)
    await insertTasks(db, [
      ...Array.from({length: 5}, () => taskRow({status: 'SCHEDULED'})),
      ...Array.from({length: 3}, () => taskRow({status: 'DONE'})),
    ])
    redisUrl = (await freshRedis()).url
    const redis = new Redis(redisUrl)
    await writeTasks(redis, 30, (i) => ({state: ['COMPLETED', 'PENDING', 'ACTIVE'][i % 3]}))
    redis.disconnect()
  }

  after(async function () {
    await db?.end()
    await registry?.stop()
    await outside?.stop()
    user?.remove()
    rmSync(work, {recursive: true, force: true})
  })

  /** Where each plugin ops loaded lives, core and installed, with symlinks resolved. */
  const pluginRoots = async () => {
    const list = await ops(['plugins', '--core', '--json'])
    expect(list.code, list.stderr).to.equal(0)
    return Object.fromEntries((JSON.parse(list.stdout) as {name: string; root: string}[]).map((p) => [p.name, realpathSync(p.root)]))
  }
  const repository = realpathSync(ROOT)

  const rowCount = async () => (await db.query('SELECT count(*)::int AS n FROM task_manager_taskmanager')).rows[0].n as number

  describe('the host, installed globally', () => {
    it('puts `ops` on the PATH from the prefix, with the plugins inside it and one copy of ops-cli', async () => {
      const installed = join(user.prefix, 'lib', 'node_modules', 'ops-cli')
      expect(realpathSync(join(user.prefix, 'bin', 'ops'))).to.equal(join(installed, 'bin', 'run.js'))
      for (const plugin of ['plugin-postgres-taskmanager', 'plugin-redis-taskflow']) {
        expect(existsSync(join(installed, 'node_modules', '@ops-cli', plugin, 'oclif.manifest.json')), plugin).to.equal(true)
      }
      // The plugins' peer on ops-cli is the host itself, not a second copy of the base.
      expect(existsSync(join(installed, 'node_modules', 'ops-cli'))).to.equal(false)
      const ls = await npm(['ls', '--global', '--prefix', user.prefix, '--all', '--json'], {env: user.env})
      expect(JSON.parse(ls).problems ?? []).to.deep.equal([])
      const version = await ops(['--version'])
      expect(version.stdout).to.match(/^ops-cli\/0\.1\.0 /)
      // Every plugin ops loads is the installed copy: none comes from this repository.
      const roots = await pluginRoots()
      expect(Object.keys(roots)).to.include.members(['ops-cli', '@ops-cli/plugin-postgres-taskmanager', '@ops-cli/plugin-redis-taskflow'])
      for (const [name, root] of Object.entries(roots)) {
        expect(root.startsWith(realpathSync(user.prefix) + '/'), `${name} at ${root}`).to.equal(true)
        expect(root.startsWith(repository + '/'), `${name} at ${root}`).to.equal(false)
      }
    })

    it('`ops --help` lists both first-party topics and the core plugins', async () => {
      const help = await ops(['--help'])
      expect(help.code, help.stderr).to.equal(0)
      expect(help.stdout).to.match(/taskmanager\s+Django TaskManager table in PostgreSQL/)
      expect(help.stdout).to.match(/taskflow\s+AsyncTaskFlow task store in Redis/)
      for (const command of ['plugins', 'autocomplete', 'audit']) expect(help.stdout).to.match(new RegExp(`^  ${command}\\s`, 'm'))
    })

    it('`ops taskmanager:clear --dry-run` counts the SCHEDULED rows and deletes nothing', async () => {
      const dry = await ops(['taskmanager:clear', '--database-url', databaseUrl, '--status', 'SCHEDULED', '--dry-run'])
      expect(dry.code, dry.stderr).to.equal(0)
      expect(dry.stdout).to.contain('Found 5 TaskManager records to delete')
      expect(dry.stdout).to.contain('DRY RUN MODE - No records will be deleted')
      expect(await rowCount()).to.equal(8)
    })

    it('`ops taskflow:inspect` reads the AsyncTaskFlow store', async () => {
      const inspect = await ops(['taskflow:inspect', '--redis-url', redisUrl, '--json'])
      expect(inspect.code, inspect.stderr).to.equal(0)
      expect(JSON.parse(inspect.stdout).keys).to.include({tasks: 30})
    })

    it('answers a mistyped command with "did you mean" on a terminal, and exit 2 without one', async () => {
      const tty = await user.runInTty('ops taskmanager:claer --dry-run', /Did you mean/, 'n\r')
      expect(tty.stdout).to.match(/Did you mean taskmanager:clear\?/)
      expect(tty.code).to.equal(2)
      const piped = await ops(['taskmanager:claer', '--dry-run'])
      expect(piped.code).to.equal(2)
      expect(oneLine(piped.stderr)).to.contain('taskmanager:claer is not a ops command')
      expect(await rowCount()).to.equal(8)
    })
  })

  describe('a team plugin from the company registry, by name', () => {
    const clear = (...args: string[]) => [
      'widgets:clear',
      '--database-url',
      databaseUrl,
      '--table',
      'widgets',
      '--older-than',
      '7d',
      ...args,
    ]

    before(async function () {
      await publish(await repackaged(template, work, {name: TEAM_PLUGIN, version: '0.1.0'}))
      // The rest of the company's ~/.npmrc: where @team packages come from (here the same registry), and the read token.
      user.npmrc([`@team:registry=${registry.url}`, registry.authLine])
      await createWidgets(db, 5, (i) => ({ageDays: i <= 3 ? 30 : 1}))
    })
    const widgets = async () => (await db.query('SELECT count(*)::int AS n FROM widgets')).rows[0].n as number

    it('`ops plugins install @team/...` installs it by name, and its command runs', async () => {
      const install = await ops(['plugins', 'install', TEAM_PLUGIN])
      expect(install.code, install.stderr).to.equal(0)
      expect(install.stderr).to.contain('installed v0.1.0')
      expect((await ops(['plugins'])).stdout).to.contain(`${TEAM_PLUGIN} 0.1.0`)
      expect((await pluginRoots())[TEAM_PLUGIN]).to.equal(realpathSync(join(user.env.OPS_DATA_DIR!, 'node_modules', TEAM_PLUGIN)))
      const dry = await ops(clear('--dry-run'))
      expect(dry.code, dry.stderr).to.equal(0)
      expect(dry.stdout).to.contain('Found 3 rows of widgets to delete')
      expect(await widgets()).to.equal(5)
      const run = await ops(clear('--force'))
      expect(run.code, run.stderr).to.equal(0)
      expect(await widgets()).to.equal(2)
    })

    it('`ops plugins update` brings the newer release', async () => {
      await publish(await repackaged(template, work, {name: TEAM_PLUGIN, version: '0.1.1'}))
      const update = await ops(['plugins', 'update'])
      expect(update.code, update.stderr).to.equal(0)
      expect((await ops(['plugins'])).stdout).to.contain(`${TEAM_PLUGIN} 0.1.1`)
      expect((await ops(clear('--dry-run'))).code).to.equal(0)
    })

    // A release for ops 1.x, published as `latest` (what the team's next major looks like to an ops 0.1 user).
    let incompatible: string
    const installedVersion = () =>
      JSON.parse(readFileSync(join(user.env.OPS_DATA_DIR!, 'node_modules', TEAM_PLUGIN, 'package.json'), 'utf8')).version as string

    it('refuses, at `ops plugins install`, a latest release built for another major of ops, naming both versions', async () => {
      incompatible = await repackaged(template, work, {name: TEAM_PLUGIN, version: '1.0.0', peerDependencies: {'ops-cli': '^1.0.0'}})
      await publish(incompatible)
      const refused = await ops(['plugins', 'install', TEAM_PLUGIN])
      expect(refused.code).to.equal(1)
      expect(oneLine(refused.stderr)).to.contain(`${TEAM_PLUGIN}@1.0.0 is built for ops-cli ^1.0.0, and this ops is 0.1.0`)
      expect(installedVersion()).to.equal('0.1.1')
    })

    it('refuses it at `ops plugins update` too: nothing is updated, and the message says how to stay on 0.1.x', async () => {
      const refused = await ops(['plugins', 'update'])
      expect(refused.code).to.equal(1)
      expect(oneLine(refused.stderr)).to.contain(
        `${TEAM_PLUGIN}@1.0.0 (its "latest" release) is built for ops-cli ^1.0.0, and this ops is 0.1.0; ${TEAM_PLUGIN} stays at 0.1.1: ` +
          `pin the newest release built for this ops with \`ops plugins install ${TEAM_PLUGIN}@0.1.1\``,
      )
      expect(oneLine(refused.stderr)).to.contain(
        'Nothing was updated; the other plugins can be updated one at a time with `ops plugins install <name>`.',
      )
      expect(installedVersion()).to.equal('0.1.1')
      expect((await ops(['plugins'])).stdout).to.contain(`${TEAM_PLUGIN} 0.1.1`)
      expect((await ops(clear('--dry-run'))).code).to.equal(0)
    })

    it('updates without complaint once the compatible release is pinned, as the refusal says', async () => {
      const pin = await ops(['plugins', 'install', `${TEAM_PLUGIN}@0.1.1`])
      expect(pin.code, pin.stderr).to.equal(0)
      const update = await ops(['plugins', 'update'])
      expect(update.code, update.stderr).to.equal(0)
      expect(installedVersion()).to.equal('0.1.1')
    })

    it('refuses the same release as a packed file: tarball', async () => {
      await npm(['pack', incompatible, '--pack-destination', work, '--ignore-scripts'], {env: publisherEnv})
      const tarball = join(work, `${TEAM_PLUGIN.replace('@', '').replace('/', '-')}-1.0.0.tgz`)
      const refused = await ops(['plugins', 'install', `file:${tarball}`])
      expect(refused.code).to.equal(1)
      expect(oneLine(refused.stderr)).to.contain(`${TEAM_PLUGIN}@1.0.0 is built for ops-cli ^1.0.0, and this ops is 0.1.0`)
      expect(installedVersion()).to.equal('0.1.1')
    })

    it('`ops plugins uninstall` removes it and its command', async () => {
      const uninstall = await ops(['plugins', 'uninstall', TEAM_PLUGIN])
      expect(uninstall.code, uninstall.stderr).to.equal(0)
      expect((await ops(['plugins'])).stdout).not.to.contain(TEAM_PLUGIN)
      expect(existsSync(join(user.env.OPS_DATA_DIR!, 'node_modules', TEAM_PLUGIN))).to.equal(false)
      const gone = await ops(clear('--force'))
      expect(gone.code).to.equal(2)
      expect(await widgets()).to.equal(2)
    })
  })

  describe('a newer ops on the registry', () => {
    it('is announced once a day by warn-if-update-available, asking the registry npm is configured with', async () => {
      await publish(await repackaged(tarballs['ops-cli'], work, {version: '0.1.1'}))
      // The registry comes from ~/.npmrc (its `registry=` line), as on a company machine.
      const env = {OPS_CACHE_DIR: join(user.home, 'cache-update-check')}
      const first = await ops(['--version'], env)
      expect(first.stderr).not.to.contain('update available')
      // That run asked the registry in the background; its answer lands in the cache directory.
      const versionFile = join(env.OPS_CACHE_DIR, 'version')
      const deadline = Date.now() + 30_000
      while (!(existsSync(versionFile) && JSON.parse(readFileSync(versionFile, 'utf8')).latest) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 200))
      expect(JSON.parse(readFileSync(versionFile, 'utf8'))).to.include({latest: '0.1.1', current: '0.1.0'})
      const second = await ops(['--version'], env)
      expect(oneLine(second.stderr)).to.contain('ops-cli update available from 0.1.0 to 0.1.1: npm install -g ops-cli')
      const third = await ops(['--version'], env)
      expect(third.stderr).not.to.contain('update available')
      expect(readdirSync(env.OPS_CACHE_DIR)).to.include('last-warning')
    })
  })

  // Last: mocha runs a suite's own tests before its nested suites.
  describe('after all of it', () => {
    it('no npm or ops run of the user asked anything of a host but the company registry', () => {
      expect(outside.requests).to.deep.equal([])
    })
  })
})
