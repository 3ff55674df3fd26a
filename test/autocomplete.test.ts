/**
 * Shell completion as a user sets it up: `ops autocomplete bash|zsh` prints the
 * instructions and writes the scripts under OPS_CACHE_DIR; the line users
 * append to ~/.bashrc is then loaded into a real bash, and the completion
 * function is called the way readline calls it on <TAB>.
 *
 * The root oclif config uses topicSeparator ":", so plugin-autocomplete writes
 * its colon script: bash splits `taskmanager:clear` at the colon (":" is in
 * COMP_WORDBREAKS) and the script puts the words back together with
 * bash-completion's _get_comp_words_by_ref / __ltrim_colon_completions, which
 * users have from the bash-completion package (sourced by Debian's and
 * Ubuntu's default ~/.bashrc).
 */
import {expect} from 'chai'
import {execFileSync, spawnSync} from 'node:child_process'
import {existsSync, mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {createRequire} from 'node:module'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {ROOT, runOps} from './helpers/cli.js'

const BASH_COMPLETION = '/usr/share/bash-completion/bash_completion'
const STATUSES = ['PENDING', 'DONE', 'CANCELLED', 'REVERSED', 'PAUSED', 'ABORTED', 'ERROR', 'SCHEDULED', 'ALL']
const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

/** How readline splits a line into COMP_WORDS with the default COMP_WORDBREAKS: spaces end words, ":" is a word of its own. */
function compWords(line: string): string[] {
  const words = line.split(' ').flatMap((w) => w.split(/(:)/)).filter((w, i, all) => w !== '' || i === all.length - 1)
  return line.endsWith(' ') ? words : words.filter((w) => w !== '')
}

describe('shell completion (ops autocomplete)', function () {
  const home = mkdtempSync(join(tmpdir(), 'ops-autocomplete-test-'))
  const dirs = {OPS_DATA_DIR: join(home, 'data'), OPS_CONFIG_DIR: join(home, 'config'), OPS_CACHE_DIR: join(home, 'cache')}
  const ops = (args: string[]) => runOps(args, {env: dirs})
  const cache = join(dirs.OPS_CACHE_DIR, 'autocomplete')
  let bashrcLine: string

  before(async () => {
    const bash = await ops(['autocomplete', 'bash'])
    expect(bash.code, bash.stderr).to.equal(0)
    const script = await ops(['autocomplete:script', 'bash'])
    expect(script.code, script.stderr).to.equal(0)
    bashrcLine = script.stdout.trim()
  })

  /**
   * Loads the completion into `bash --norc` exactly as ~/.bashrc would, then
   * calls the function `complete -p ops` names, with COMP_* set for `line`.
   */
  function complete(line: string, options: {bashCompletion?: boolean} = {}): {reply: string[]; stderr: string} {
    const words = compWords(line)
    const script = [
      options.bashCompletion === false ? '' : `source ${BASH_COMPLETION}`,
      bashrcLine,
      'spec=$(complete -p ops) || exit 3',
      'fn=$(sed -E "s/.*-F ([^ ]+).*/\\1/" <<<"$spec")',
      `COMP_WORDS=(${words.map(quote).join(' ')})`,
      `COMP_CWORD=${words.length - 1}`,
      `COMP_LINE=${quote(line)}`,
      'COMP_POINT=${#COMP_LINE}',
      '"$fn" ops "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"',
      'printf "%s\\n" "${COMPREPLY[@]}"',
    ].join('\n')
    const result = spawnSync('bash', ['--norc', '--noprofile', '-c', script], {env: {...process.env, ...dirs}, encoding: 'utf8'})
    expect(result.status, result.stderr).to.equal(0)
    return {reply: result.stdout.split('\n').filter(Boolean), stderr: result.stderr}
  }

  const commonPrefix = (words: string[]) => words.reduce((p, w) => (w.startsWith(p) ? p : p.slice(0, [...p].findIndex((c, i) => c !== w[i]))), words[0] ?? '')

  describe('setup', () => {
    it('`ops autocomplete bash` prints the setup instructions and writes the script under the cache dir', async () => {
      const bash = await ops(['autocomplete', 'bash'])
      expect(bash.stdout).to.contain('Setup Instructions for OPS CLI Autocomplete')
      expect(bash.stdout).to.contain('printf "$(ops autocomplete:script bash)" >> ~/.bashrc; source ~/.bashrc')
      expect(readFileSync(join(cache, 'bash_setup'), 'utf8')).to.contain(join(cache, 'functions', 'bash', 'ops.bash'))
      expect(existsSync(join(cache, 'functions', 'bash', 'ops.bash'))).to.equal(true)
    })

    it('`ops autocomplete:script bash` prints the line for ~/.bashrc, pointing into OPS_CACHE_DIR', () => {
      expect(bashrcLine).to.equal(`OPS_AC_BASH_SETUP_PATH=${join(cache, 'bash_setup')} && test -f $OPS_AC_BASH_SETUP_PATH && source $OPS_AC_BASH_SETUP_PATH; # ops autocomplete setup`)
    })

    it('`ops autocomplete zsh` prints its instructions and writes _ops, completing flags but not --status values', async () => {
      const zsh = await ops(['autocomplete', 'zsh'])
      expect(zsh.code, zsh.stderr).to.equal(0)
      expect(zsh.stdout).to.contain('printf "$(ops autocomplete:script zsh)" >> ~/.zshrc; source ~/.zshrc')
      expect(readFileSync(join(cache, 'zsh_setup'), 'utf8')).to.contain(join(cache, 'functions', 'zsh'))
      const compdef = readFileSync(join(cache, 'functions', 'zsh', '_ops'), 'utf8')
      expect(compdef).to.contain('#compdef ops')
      expect(compdef).to.contain('"--status=-[Status to clear (ALL: no status filter).]:"')
      // Known limitation, kept visible: with topicSeparator ":" plugin-autocomplete 3.2 uses its legacy
      // zsh generator, which leaves every value action empty. With topicSeparator " " its other
      // generator writes `status options:(PENDING ... ALL)` (checked by hand).
      expect(compdef).not.to.contain('options:(')
      expect((await ops(['autocomplete:script', 'zsh'])).stdout).to.contain(join(cache, 'zsh_setup'))
    })

    it('`ops autocomplete --refresh-cache` rebuilds the scripts, picking up a linked plugin\'s commands', async function () {
      const template = join(ROOT, 'examples', 'plugin-template')
      execFileSync(process.execPath, [createRequire(import.meta.url).resolve('typescript/bin/tsc'), '-p', template], {stdio: 'inherit'})
      const link = await ops(['plugins:link', template, '--no-install'])
      expect(link.code, link.stderr).to.equal(0)
      try {
        rmSync(join(cache, 'functions'), {recursive: true})
        const refresh = await ops(['autocomplete', '--refresh-cache'])
        expect(refresh.code, refresh.stderr).to.equal(0)
        expect(readFileSync(join(cache, 'functions', 'bash', 'ops.bash'), 'utf8')).to.match(/^widgets:clear .*--older-than/m)
        expect(complete('ops wid').reply).to.deep.equal(['widgets:clear'])
      } finally {
        await ops(['plugins:uninstall', '@acme/ops-plugin-widgets'])
        await ops(['autocomplete', '--refresh-cache'])
      }
    })
  })

  describe('in a real bash', () => {
    before(function () {
      if (!existsSync(BASH_COMPLETION)) throw new Error(`${BASH_COMPLETION} is missing: apt-get install bash-completion (what users of bash completion have)`)
    })

    it('registers a completion function for ops', () => {
      const result = spawnSync('bash', ['--norc', '-c', `${bashrcLine}\ncomplete -p ops`], {encoding: 'utf8'})
      expect(result.stdout.trim()).to.equal('complete -o default -F _ops_autocomplete ops')
    })

    it('`ops taskm<TAB>` completes to the taskmanager topic', () => {
      const {reply} = complete('ops taskm')
      expect(reply).to.have.members(['taskmanager:clear', 'taskmanager:stuck', 'taskmanager:summary'])
      // readline inserts the longest common prefix of the candidates.
      expect(commonPrefix(reply)).to.equal('taskmanager:')
    })

    it('`ops taskmanager:<TAB>` and `ops taskmanager:cl<TAB>` complete the command after the colon', () => {
      expect(complete('ops taskmanager:').reply).to.have.members(['clear', 'stuck', 'summary'])
      expect(complete('ops taskmanager:cl').reply).to.deep.equal(['clear'])
      expect(complete('ops taskflow:co').reply.every((c) => c.startsWith('counters:'))).to.equal(true)
    })

    it('`ops taskmanager:clear --st<TAB>` completes the flag, and `--<TAB>` lists them all', () => {
      expect(complete('ops taskmanager:clear --st').reply).to.have.members(['--status', '--statement-timeout'])
      expect(complete('ops taskmanager:clear --statu').reply).to.deep.equal(['--status'])
      expect(complete('ops taskmanager:clear --').reply).to.include.members(['--status', '--task-module', '--older-than', '--dry-run', '--force', '--json'])
      expect(complete('ops taskmanager:clear --status DONE --ta').reply).to.have.members(['--table', '--task-module', '--task-name', '--target-batch-ms'])
    })

    it('cannot offer the --status values: plugin-autocomplete 3.2 writes only flag names into the bash script', () => {
      // Known limitation, kept visible: the bash script's command list is "id --flag --flag ...",
      // with no values, so after `--status ` it falls back to listing commands (zsh: see above).
      const script = readFileSync(join(cache, 'functions', 'bash', 'ops.bash'), 'utf8')
      expect(script).to.match(/^taskmanager:clear .*--status /m)
      expect(script).not.to.contain('PAUSED')
      const {reply} = complete('ops taskmanager:clear --status ')
      expect(reply.some((r) => STATUSES.includes(r))).to.equal(false)
    })

    it('without the bash-completion package, a colon in the command breaks completion', () => {
      const {reply, stderr} = complete('ops taskmanager:cl', {bashCompletion: false})
      expect(reply).to.deep.equal([])
      expect(stderr).to.contain('_get_comp_words_by_ref: command not found')
    })
  })
})
