/** The packages the suite needs are one list: the README's install line, test/helpers/requirements.ts and .ci/run agree. */
import {expect} from 'chai'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'

import {ROOT} from './helpers/cli.js'
import {installLine, packageMissing, REQUIREMENTS} from './helpers/requirements.js'

describe('the packages the suite needs', () => {
  const listed = REQUIREMENTS.map((r) => r.package)

  it("are the README's install line, word for word", () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
    const lines = readme.split('\n').filter((l) => l.startsWith('sudo apt-get install -y '))
    expect(lines, 'one install line in the README').to.have.length(1)
    expect(lines[0]).to.equal(installLine(listed))
  })

  it('are the packages .ci/run installs when missing, in the same order', () => {
    const ci = readFileSync(join(ROOT, '.ci', 'run'), 'utf8')
    const installed = [...ci.matchAll(/missing\+=\(([^)]+)\)/g)].map((m) => m[1])
    expect(installed).to.deep.equal(listed)
    expect(listed).to.include('redis-tools')
  })

  it('a missing one fails a test with one line naming its package and the install line', () => {
    const message = packageMissing('redis-tools', 'redis-cli').message
    expect(message.split('\n')).to.have.length(1)
    expect(message).to.contain('redis-tools is not installed (needed for redis-cli): sudo apt-get install -y redis-tools')
  })
})
