/** rediss://, ACL users and passwords through the real CLI, against a real redis-server with a TLS port. */
import {expect} from 'chai'
import {Redis} from 'ioredis'

import {parseJsonOutput, runOps} from '../../../test/helpers/cli.js'
import {freshRedisWithTls, TlsRedisServer} from '../../../test/helpers/servers.js'
import {readCounters, setCounters, trueStateCounts, writeTasks} from './fixtures.js'

describe('taskflow connections: TLS, ACL users, passwords', function () {
  let server: TlsRedisServer
  let redis: Redis
  const password = 'p@ss word:1'
  const userUrl = (user: string, secret = password) => server.tlsUrl.replace('rediss://', `rediss://${user}:${encodeURIComponent(secret)}@`)
  const ops = (args: string[], url: string, trusted = true) =>
    runOps(args, {env: {REDIS_URL: url, NODE_EXTRA_CA_CERTS: trusted ? server.caFile : undefined}})

  /** counters:sync --force --json as `user`, which must succeed and leave the counters equal to the states; what it reported. */
  const syncAs = async (user: string, ...flags: string[]) => {
    const result = await ops(['taskflow:counters:sync', '--force', '--json', ...flags], userUrl(user))
    expect(result.code, result.stderr).to.equal(0)
    expect(await readCounters(redis)).to.deep.equal(await trueStateCounts(redis))
    return parseJsonOutput<{data: {exact: boolean; note: string}}>(result).data
  }

  before(async function () {
    const started = await freshRedisWithTls()
    if (!started) this.skip() // no openssl, or a redis-server built without TLS: said in the test report as pending
    server = started
    redis = new Redis(server.url)
    await redis.call('ACL', 'SETUSER', 'ops', 'on', `>${password}`, '~*', '&*', '+@all')
    // A managed-Redis-like user: no CONFIG, so no keyspace notifications can be enabled for the run.
    await redis.call('ACL', 'SETUSER', 'noconfig', 'on', `>${password}`, '~*', '&*', '+@all', '-config')
    await redis.call('ACL', 'SETUSER', 'noscripts', 'on', `>${password}`, '~*', '&*', '+@all', '-@scripting')
    await redis.call('ACL', 'SETUSER', 'noclient', 'on', `>${password}`, '~*', '&*', '+@all', '-client|tracking')
    // Rights on the task-flow keys only: the instant script's fence key (~ops:census-fence:...) is refused.
    await redis.call('ACL', 'SETUSER', 'taskkeys', 'on', `>${password}`, '~task:*', '~metrics:*', '&*', '+@all')
  })
  after(() => redis?.disconnect())

  beforeEach(async () => {
    await redis.flushdb()
    await writeTasks(redis, 600, (i) => ({state: ['COMPLETED', 'PENDING', 'FAILED'][i % 3]}))
    await setCounters(redis, {COMPLETED: 150, PENDING: 200, FAILED: 250})
  })

  it('counters:sync over rediss:// as an ACL user whose password needs URL-encoding', async () => {
    const result = await ops(['taskflow:counters:sync', '--force', '--json'], userUrl('ops'))
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stdout + result.stderr).not.to.contain(password)
    const doc = parseJsonOutput<{target: string; data: {exact: boolean}}>(result)
    expect(doc.target).to.match(/^rediss:\/\/ops:\*\*\*\*@127\.0\.0\.1:\d+\/0$/)
    expect(doc.data.exact).to.equal(true)
    expect(await readCounters(redis)).to.deep.equal(await trueStateCounts(redis))
  })

  it("names the certificate problem when the server's CA is not trusted, and writes nothing", async () => {
    const result = await ops(['taskflow:counters:sync', '--force'], userUrl('ops'), false)
    expect(result.code).to.equal(1)
    expect(result.stderr).to.match(/Could not connect to Redis at 127\.0\.0\.1:\d+ .*(certificate|CERT)/)
    expect(result.stderr).not.to.contain(password)
    expect(await readCounters(redis)).to.include({COMPLETED: 150, PENDING: 200, FAILED: 250})
  })

  it('says WRONGPASS for a wrong password, masked', async () => {
    const result = await ops(['taskflow:inspect'], userUrl('ops', 'not-it'))
    expect(result.code).to.equal(1)
    expect(result.stderr).to.match(/WRONGPASS/)
    expect(result.stderr).to.contain('ops:****@').and.not.contain('not-it')
  })

  it('without CONFIG rights, counters:sync is still exact: it needs no server setting', async () => {
    const sync = await syncAs('noconfig')
    expect(sync.exact, sync.note).to.equal(true)
  })

  it('with rights on the task-flow keys only, the fence write is refused and counters:sync is still exact', async () => {
    const sync = await syncAs('taskkeys')
    expect(sync.exact, sync.note).to.equal(true)
    expect(await redis.keys('~ops:*')).to.deep.equal([])
  })

  it('without CLIENT rights (no client tracking), --force refuses a measure that is not exact: nothing changed, exit 1', async () => {
    const result = await ops(['taskflow:counters:sync', '--force', '--json'], userUrl('noclient'))
    expect(result.code, result.stderr).to.equal(1)
    const {error} = parseJsonOutput<{error: {message: string; exit: number}}>(result)
    expect(error.exit).to.equal(1)
    expect(error.message).to.match(/Not applied: the measure is not exact .* pass --allow-inexact with --force/)
    expect(await readCounters(redis)).to.include({COMPLETED: 150, PENDING: 200, FAILED: 250})
  })

  it('on a production profile, --confirm NAME refuses a measure that is not exact as --force does', async () => {
    const url = userUrl('noclient')
    const name = `${new URL(url).hostname}:${new URL(url).port}`
    const env = {NODE_EXTRA_CA_CERTS: server.caFile}
    expect((await runOps(['profiles:set', 'prod-cache', '--redis-url', url, '--production'], {env})).code).to.equal(0)
    try {
      const result = await runOps(['taskflow:counters:sync', '--profile', 'prod-cache', '--confirm', name, '--json'], {env})
      expect(result.code, result.stderr).to.equal(1)
      expect(parseJsonOutput<{error: {message: string}}>(result).error.message).to.match(/^Not applied: the measure is not exact/)
      expect(await readCounters(redis)).to.include({COMPLETED: 150, PENDING: 200, FAILED: 250})
    } finally {
      await runOps(['profiles:remove', 'prod-cache'])
    }
  })

  it('without CLIENT rights, --force --allow-inexact still fixes counters and says it could not be exact under live traffic', async () => {
    const sync = await syncAs('noclient', '--allow-inexact')
    expect(sync.exact).to.equal(false)
    expect(sync.note).to.match(/Not exact under live traffic: the server does not offer client tracking to this user/)
  })

  it('without script rights, --force --allow-inexact still fixes the counters and says why it could not be exact', async () => {
    const sync = await syncAs('noscripts', '--allow-inexact')
    expect(sync.exact).to.equal(false)
    expect(sync.note).to.match(/the server refuses scripts to this user/)
  })
})
