import {expect} from 'chai'

import {maskSecrets, maskUrl, resolveUrl} from '../src/base/connection.js'
import {setActiveProfile} from '../src/base/profiles.js'

describe('connection settings', () => {
  const saved = process.env.OPS_TEST_SETTING
  afterEach(() => {
    setActiveProfile(undefined)
    if (saved === undefined) delete process.env.OPS_TEST_SETTING
    else process.env.OPS_TEST_SETTING = saved
  })

  it('takes the flag over the environment, the environment over the profile, the profile over the default', () => {
    const fallback = 'postgres://default/db'
    setActiveProfile({name: 'p', production: false, settings: {OPS_TEST_SETTING: 'postgres://profile/db'}})
    process.env.OPS_TEST_SETTING = 'postgres://env/db'
    expect(resolveUrl({flag: 'postgres://flag/db', env: 'OPS_TEST_SETTING', fallback})).to.deep.equal({
      url: 'postgres://flag/db',
      source: 'flag',
    })
    expect(resolveUrl({env: 'OPS_TEST_SETTING', fallback})).to.deep.equal({url: 'postgres://env/db', source: 'environment'})
    delete process.env.OPS_TEST_SETTING
    expect(resolveUrl({env: 'OPS_TEST_SETTING', fallback})).to.deep.equal({url: 'postgres://profile/db', source: 'profile'})
    setActiveProfile(undefined)
    expect(resolveUrl({env: 'OPS_TEST_SETTING', fallback})).to.deep.equal({url: fallback, source: 'default'})
  })

  it('masks passwords in URLs, in free text and as literal secrets', () => {
    expect(maskUrl('postgres://app:s3cr%40t@db:5432/app')).to.equal('postgres://app:****@db:5432/app')
    expect(maskUrl('rediss://default:pw@cache:6380/2')).to.equal('rediss://default:****@cache:6380/2')
    expect(maskUrl('postgres://db/app?password=hunter2&sslmode=require')).to.equal('postgres://db/app?password=****&sslmode=require')
    expect(maskSecrets('failed for redis://u:pa55word@h:6379/0 at 3am')).to.equal('failed for redis://u:****@h:6379/0 at 3am')
    expect(maskSecrets('password authentication failed: hunter2', ['hunter2'])).to.equal('password authentication failed: ****')
  })
})
