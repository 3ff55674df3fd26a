import type {Hook} from '@oclif/core'
import {createRequire, register} from 'node:module'
import {join} from 'node:path'
import {pathToFileURL} from 'node:url'

/**
 * init — makes `import ... from 'ops-cli/base'` in a team plugin resolve to
 * the running ops, so no plugin has to carry a resolver of its own.
 *
 * `ops plugins install` puts a plugin in $OPS_DATA_DIR/node_modules, where
 * `ops-cli` is not (team plugins, as the template shows, declare it as an
 * optional peer: a fetched host would be a second copy of the base), so Node
 * would fail to find it. When an installed or linked plugin cannot resolve
 * `ops-cli` the normal way, this registers a resolver (./host-resolver.ts)
 * that sends `ops-cli` and `ops-cli/*` to this host: one copy of the base,
 * shared by every plugin.
 * It runs before any plugin command is imported; a plugin's own init hook must
 * not import `ops-cli` at its top level (init hooks run side by side).
 */
const hook: Hook<'init'> = async function () {
  const stranded = this.config
    .getPluginsList()
    .filter((plugin) => (plugin.type === 'user' || plugin.type === 'link') && !findsHost(plugin.root))
  if (stranded.length === 0) return
  register('./host-resolver.js', {
    parentURL: import.meta.url,
    data: {hostPackageJson: pathToFileURL(join(this.config.root, 'package.json')).href},
  })
}

/** Whether a package at `root` resolves `ops-cli` by itself (a linked working copy has it as a devDependency). */
function findsHost(root: string): boolean {
  try {
    createRequire(join(root, 'package.json')).resolve('ops-cli/package.json')
    return true
  } catch {
    return false
  }
}

export default hook
