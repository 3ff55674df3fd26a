import type {Hook} from '@oclif/core'
import {existsSync} from 'node:fs'
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

/**
 * After plugin-autocomplete (re)writes its scripts, add flag-value completion.
 * `autocomplete` (bash|zsh|--refresh-cache) writes them itself; the plugin's
 * plugins:postinstall/postuninstall hook runs `autocomplete:create` through
 * config.runCommand, which fires postrun with the new plugin set loaded.
 */
const hook: Hook<'postrun'> = async function ({Command}) {
  if (Command.id !== 'autocomplete' && Command.id !== 'autocomplete:create') return
  // Loaded only here: every command runs this hook after it.
  const {bashCompletion, completionCommands, MARKER, zshCompletion} = await import('../completion.js')
  const {bin, binAliases, cacheDir} = this.config
  const functions = join(cacheDir, 'autocomplete', 'functions')
  const commands = completionCommands(this.config)
  const bash = join(functions, 'bash', `${bin}.bash`)
  if (existsSync(bash)) {
    // Everything from the marker on is ours: drop it, so running twice does not append twice.
    const script = (await readFile(bash, 'utf8')).split(`\n${MARKER}`)[0]
    await writeFile(bash, `${script.trimEnd()}\n\n${bashCompletion(commands, bin, binAliases)}`)
  }
  // zsh: the whole function is ours (see zshCompletion); the plugin's zsh_setup still puts its directory on fpath.
  const zsh = join(functions, 'zsh', `_${bin}`)
  if (existsSync(zsh)) await writeFile(zsh, zshCompletion(commands, bin, binAliases))
}

export default hook
