import type {Hook, Interfaces} from '@oclif/core'
import {execFile} from 'node:child_process'
import {existsSync, readFileSync, statSync} from 'node:fs'
import {createRequire} from 'node:module'
import {tmpdir} from 'node:os'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import {promisify} from 'node:util'
import semver from 'semver'

/**
 * plugins:preinstall — refuses, before npm installs anything, a plugin whose
 * `peerDependencies` name ops-cli versions that exclude this one (a plugin
 * built for another major of the host would load against a base it was not
 * written for). A plugin without that peer is not checked. A release from a
 * registry is read with `npm view`, a `file:` tarball or directory from disk;
 * a git repository or a tarball URL is installed unchecked (reading its
 * package.json would mean fetching or cloning it a second time, beside npm).
 */
const hook: Hook<'plugins:preinstall'> = async function ({plugin}) {
  const release =
    plugin.type === 'npm' ? await viewRelease(this.config, `${plugin.name}@${plugin.tag}`) : localRelease(this.config, plugin.url)
  const wanted = release && excludedBy(this.config.version, release)
  if (!release || !wanted) return
  const name = release.name ?? (plugin.type === 'npm' ? plugin.name : plugin.url)
  this.error(
    `${name}@${release.version} is built for ops-cli ${wanted}, and this ops is ${this.config.version}: ` +
      `install a version of ${name} built for ops-cli ${semver.major(this.config.version)}.x ` +
      '(its peerDependencies say which), or upgrade ops.',
    {exit: 1},
  )
}

/**
 * What `ops plugins update` would do wrong: @oclif/plugin-plugins' update runs
 * `npm install name@tag` for every plugin installed from a registry without the
 * plugins:preinstall hook, so a release built for another ops would arrive
 * unchecked. Returns one refusal line per such plugin (empty when all is well).
 */
export async function refusedUpdates(config: Interfaces.Config): Promise<string[]> {
  // The list plugin-plugins' update walks: the data directory's package.json; plugins installed from a URL are updated unchecked.
  const pjsonPath = join(config.dataDir, 'package.json')
  if (!existsSync(pjsonPath)) return []
  const listed = (JSON.parse(readFileSync(pjsonPath, 'utf8')).oclif?.plugins ?? []) as (string | InstalledPlugin)[]
  const fromRegistry = listed
    .map((p) => (typeof p === 'string' ? {name: p, tag: 'latest', type: 'user'} : p))
    .filter((p) => p.type === 'user' && !p.url)
  const refusals = await Promise.all(
    fromRegistry.map(async ({name, tag = 'latest'}) => {
      const release = await viewRelease(config, `${name}@${tag}`)
      const wanted = release && excludedBy(config.version, release)
      if (!release || !wanted) return undefined
      const current = config.plugins.get(name)?.version
      // npm leaves a release already installed as it is: nothing new would arrive.
      if (current === release.version) return undefined
      const installed = current ?? 'the installed release'
      // Every release: `npm view name@*` would answer with the latest alone.
      const compatible = (await viewReleases(config, `${name}@>=0.0.0`)).filter((r) => !excludedBy(config.version, r)).at(-1)
      const wayOut = compatible
        ? `pin the newest release built for this ops with \`${config.bin} plugins install ${name}@${compatible.version}\` ` +
          '(updates then keep to that version), or upgrade ops'
        : `no release of ${name} is built for this ops: uninstall it or upgrade ops`
      return (
        `${name}@${release.version} (its "${tag}" release) is built for ops-cli ${wanted}, and this ops is ${config.version}; ` +
        `${name} stays at ${installed}: ${wayOut}.`
      )
    }),
  )
  return refusals.filter((line) => line !== undefined)
}

interface InstalledPlugin {
  name: string
  tag?: string
  type: string
  url?: string
}

interface Release {
  name?: string
  version: string
  peerDependencies?: Record<string, string>
}

/** The ops-cli range a release declares when it excludes `hostVersion`, else undefined. */
function excludedBy(hostVersion: string, release: Release): string | undefined {
  const wanted = release.peerDependencies?.['ops-cli']
  return wanted && !semver.satisfies(hostVersion, wanted, {includePrerelease: true}) ? wanted : undefined
}

/** The release `spec` resolves to: npm installs the highest version a range matches. */
async function viewRelease(config: Interfaces.Config, spec: string): Promise<Release | undefined> {
  return (await viewReleases(config, spec)).at(-1)
}

/** How long `npm view` may take before the check gives up and lets npm go ahead. */
const VIEW_TIMEOUT_MS = 15_000

/**
 * The releases `spec` names, lowest version first, as `npm view` reads them
 * with the user's npm config (scoped registries, tokens), through the npm
 * that @oclif/plugin-plugins installs with. Empty when npm cannot read them:
 * the install or update then goes ahead unchecked, because npm's next step
 * fails on the same cause (unknown package, no token, registry unreachable)
 * with its own, more precise message.
 */
async function viewReleases(config: Interfaces.Config, spec: string): Promise<Release[]> {
  const npmPackageJson = npmOf(config)
  if (!npmPackageJson) return []
  const args = [join(dirname(npmPackageJson), 'bin', 'npm-cli.js'), 'view', spec, 'name', 'version', 'peerDependencies', '--json']
  if (config.npmRegistry) args.push(`--registry=${config.npmRegistry}`)
  try {
    // A firewall that drops packets would otherwise hang install and update; a timeout is one more failure to go ahead on.
    const cwd = existsSync(config.dataDir) ? config.dataDir : tmpdir()
    const {stdout} = await promisify(execFile)(process.execPath, args, {cwd, timeout: VIEW_TIMEOUT_MS})
    // A range that matches several versions gives one entry per version.
    const found = ([] as Release[]).concat(JSON.parse(stdout) as Release | Release[])
    return found.sort((a, b) => semver.compare(a.version, b.version))
  } catch {
    return []
  }
}

/** The package.json of the npm that @oclif/plugin-plugins installs with: its CLI and its tar are the ones used here. */
function npmOf(config: Interfaces.Config): string | undefined {
  const pluginPlugins = config.plugins.get('@oclif/plugin-plugins')
  return pluginPlugins && createRequire(join(pluginPlugins.root, 'package.json')).resolve('npm/package.json')
}

/**
 * The package.json of a `file:` install (a packed .tgz or a directory), read
 * where npm will read it: relative paths are relative to the data directory,
 * npm's working directory for plugin installs. Undefined for anything else.
 */
function localRelease(config: Interfaces.Config, url: string): Release | undefined {
  if (!url.startsWith('file:')) return undefined
  const path = url.startsWith('file://') ? fileURLToPath(url) : resolve(config.dataDir, url.slice('file:'.length))
  try {
    if (statSync(path).isDirectory()) return JSON.parse(readFileSync(join(path, 'package.json'), 'utf8')) as Release
    const npmPackageJson = npmOf(config)
    return npmPackageJson ? (JSON.parse(tarredPackageJson(npmPackageJson, path)) as Release) : undefined
  } catch {
    // Not there or not a package: npm's install fails next with its own message.
    return undefined
  }
}

interface Tar {
  t(options: {file: string; sync: true; filter: (path: string) => boolean; onReadEntry: (entry: NodeJS.ReadableStream) => void}): void
}

/** package/package.json out of a packed tarball, read with npm's own tar (sync: the entry's data arrives before t() returns). */
function tarredPackageJson(npmPackageJson: string, tarball: string): string {
  const tar = createRequire(npmPackageJson)('tar') as Tar
  const chunks: Buffer[] = []
  tar.t({
    file: tarball,
    sync: true,
    filter: (path) => path === 'package/package.json',
    onReadEntry: (entry) => entry.on('data', (chunk: Buffer) => chunks.push(chunk)),
  })
  if (chunks.length === 0) throw new Error(`${tarball} has no package/package.json`)
  return Buffer.concat(chunks).toString('utf8')
}

export default hook
