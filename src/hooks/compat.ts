import type {Hook, Interfaces} from '@oclif/core'
import {execFile} from 'node:child_process'
import {existsSync} from 'node:fs'
import {createRequire} from 'node:module'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {promisify} from 'node:util'
import semver from 'semver'

/**
 * plugins:preinstall — refuses, before npm installs anything, a plugin from a
 * registry whose `peerDependencies` name ops-cli versions that exclude this one
 * (a plugin built for another major of the host would load against a base it
 * was not written for). A plugin without that peer is not checked.
 */
const hook: Hook<'plugins:preinstall'> = async function ({plugin}) {
  if (plugin.type !== 'npm') return
  const release = await viewRelease(this.config, `${plugin.name}@${plugin.tag}`)
  const wanted = release?.peerDependencies?.['ops-cli']
  if (!release || !wanted || semver.satisfies(this.config.version, wanted, {includePrerelease: true})) return
  this.error(
    `${plugin.name}@${release.version} is built for ops-cli ${wanted}, and this ops is ${this.config.version}: ` +
      `install a version of ${plugin.name} built for ops-cli ${semver.major(this.config.version)}.x (its peerDependencies say which), or upgrade ops.`,
    {exit: 1},
  )
}

interface Release {
  version: string
  peerDependencies?: Record<string, string>
}

/**
 * The release `spec` names, as `npm view` reads it with the user's npm config
 * (scoped registries, tokens), through the npm that @oclif/plugin-plugins
 * installs with. Undefined when npm cannot find it: the install then fails
 * with plugin-plugins' own message.
 */
async function viewRelease(config: Interfaces.Config, spec: string): Promise<Release | undefined> {
  const pluginPlugins = config.plugins.get('@oclif/plugin-plugins')
  if (!pluginPlugins) return undefined
  const npmPackageJson = createRequire(join(pluginPlugins.root, 'package.json')).resolve('npm/package.json')
  const args = [join(dirname(npmPackageJson), 'bin', 'npm-cli.js'), 'view', spec, 'version', 'peerDependencies', '--json']
  if (config.npmRegistry) args.push(`--registry=${config.npmRegistry}`)
  try {
    const {stdout} = await promisify(execFile)(process.execPath, args, {cwd: existsSync(config.dataDir) ? config.dataDir : tmpdir()})
    // A range that matches several versions gives one entry per version; npm installs the highest.
    const found = ([] as Release[]).concat(JSON.parse(stdout) as Release | Release[])
    return found.sort((a, b) => semver.compare(a.version, b.version)).at(-1)
  } catch {
    return undefined
  }
}

export default hook
