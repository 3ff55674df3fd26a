/**
 * The init hook in front of @oclif/plugin-warn-if-update-available: it skips the
 * plugin (about 50 ms of every start) only when the plugin would do nothing.
 * The plugin's real flow, a refresh from a registry and the warning a day later,
 * is test/registry.test.ts's "a newer ops on the registry".
 */
import {expect} from 'chai'
import {mkdtempSync, rmSync, utimesSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {upToDate, UpdateCheckConfig} from '../src/hooks/update-check.js'

describe('the update check runs warn-if-update-available only when it has something to do', () => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'ops-update-check-'))
  after(() => rmSync(cacheDir, {recursive: true, force: true}))
  const env: Record<string, string> = {}
  const config = {
    cacheDir,
    version: '0.1.0',
    pjson: {oclif: {'warn-if-update-available': {timeoutInDays: 1}}},
    scopedEnvVar: (key: string) => env[key],
    scopedEnvVarTrue: (key: string) => env[key] === 'true',
  } as unknown as UpdateCheckConfig
  const cache = (tags: Record<string, string>, ageHours = 0) => {
    const file = join(cacheDir, 'version')
    writeFileSync(file, JSON.stringify(tags))
    const when = new Date(Date.now() - ageHours * 3_600_000)
    utimesSync(file, when, when)
  }

  afterEach(() => {
    for (const key of Object.keys(env)) delete env[key]
    rmSync(join(cacheDir, 'version'), {force: true})
  })

  it('skips it while the cache is fresh and names no other version', async () => {
    cache({current: '0.1.0'})
    expect(await upToDate(config)).to.equal(true)
    cache({current: '0.1.0', latest: '0.1.0'}, 23)
    expect(await upToDate(config)).to.equal(true)
  })

  it('runs it when there is no cache, a stale one, or one that names another version', async () => {
    expect(await upToDate(config)).to.equal(false)
    cache({current: '0.1.0'}, 25)
    expect(await upToDate(config)).to.equal(false)
    cache({current: '0.1.0', latest: '0.2.0'})
    expect(await upToDate(config)).to.equal(false)
    writeFileSync(join(cacheDir, 'version'), 'not json')
    expect(await upToDate(config)).to.equal(false)
  })

  it('follows the plugin environment variables: the tag, SKIP and FORCE', async () => {
    cache({current: '0.1.0', latest: '0.1.0', next: '0.2.0-beta.1'})
    env.NEW_VERSION_CHECK_TAG = 'next'
    expect(await upToDate(config)).to.equal(false)
    env.SKIP_NEW_VERSION_CHECK = 'true'
    expect(await upToDate(config)).to.equal(true)
    env.FORCE_VERSION_CACHE_UPDATE = 'true'
    expect(await upToDate(config)).to.equal(false)
  })
})
