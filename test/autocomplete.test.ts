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
 *
 * The plugin's scripts complete no flag values; the host's postrun hook
 * (src/hooks/completion.ts) adds them to the bash script and writes the zsh
 * function, from the loaded config, each time the cache is rebuilt.
 */
import {expect} from 'chai'
import {execFileSync, spawnSync} from 'node:child_process'
import {existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {createRequire} from 'node:module'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

// The plugin's one list of --status values (the statuses and ALL), from its built module: what completion is generated from.
import {STATUS_CHOICES} from '../plugins/postgres-taskmanager/dist/filter.js'
import {bashCompletion, MARKER} from '../src/completion.js'
import {ROOT, runOps} from './helpers/cli.js'
import {BASH_COMPLETION, needPackage} from './helpers/requirements.js'

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

/** How readline splits a line into COMP_WORDS with the default COMP_WORDBREAKS: spaces end words, ":" and "=" are words of their own. */
function compWords(line: string): string[] {
  const words = line
    .split(' ')
    .flatMap((w) => w.split(/([:=])/))
    .filter((w, i, all) => w !== '' || i === all.length - 1)
  return line.endsWith(' ') ? words : words.filter((w) => w !== '')
}

describe('shell completion (ops autocomplete)', function () {
  const home = mkdtempSync(join(tmpdir(), 'ops-autocomplete-test-'))
  const dirs = {OPS_DATA_DIR: join(home, 'data'), OPS_CONFIG_DIR: join(home, 'config'), OPS_CACHE_DIR: join(home, 'cache')}
  const ops = (args: string[]) => runOps(args, {env: dirs})
  const cache = join(dirs.OPS_CACHE_DIR, 'autocomplete')
  let bashrcLine: string
  after(() => rmSync(home, {recursive: true, force: true}))

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
  function complete(line: string, options: {bashCompletion?: boolean; setup?: string} = {}): {reply: string[]; stderr: string} {
    if (options.bashCompletion !== false) needPackage('bash-completion')
    const words = compWords(line)
    const script = [
      options.bashCompletion === false ? '' : `source ${BASH_COMPLETION}`,
      options.setup ?? bashrcLine,
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

  const commonPrefix = (words: string[]) =>
    words.reduce(
      (p, w) =>
        w.startsWith(p)
          ? p
          : p.slice(
              0,
              [...p].findIndex((c, i) => c !== w[i]),
            ),
      words[0] ?? '',
    )

  describe('setup', () => {
    it('`ops autocomplete bash` prints the setup instructions and writes the script under the cache dir', async () => {
      const bash = await ops(['autocomplete', 'bash'])
      expect(bash.stdout).to.contain('Setup Instructions for OPS CLI Autocomplete')
      expect(bash.stdout).to.contain('printf "$(ops autocomplete:script bash)" >> ~/.bashrc; source ~/.bashrc')
      expect(readFileSync(join(cache, 'bash_setup'), 'utf8')).to.contain(join(cache, 'functions', 'bash', 'ops.bash'))
      expect(existsSync(join(cache, 'functions', 'bash', 'ops.bash'))).to.equal(true)
    })

    it('`ops autocomplete:script bash` prints the line for ~/.bashrc, pointing into OPS_CACHE_DIR', () => {
      // The literal "\\n" in the comment is the newline printf writes at the end of the line.
      expect(bashrcLine).to.equal(
        `OPS_AC_BASH_SETUP_PATH=${join(cache, 'bash_setup')} && ` +
          'test -f $OPS_AC_BASH_SETUP_PATH && source $OPS_AC_BASH_SETUP_PATH; # ops autocomplete setup\\n',
      )
    })

    it('the printf line `ops autocomplete bash` prints appends a whole line to ~/.bashrc: the next line appended stays on its own', () => {
      const bin = join(home, 'bin')
      execFileSync('mkdir', ['-p', bin, join(home, 'user')])
      writeFileSync(join(bin, 'ops'), `#!/bin/sh\nexec ${quote(process.execPath)} ${quote(join(ROOT, 'bin', 'run.js'))} "$@"\n`, {
        mode: 0o755,
      })
      const bashrc = join(home, 'user', '.bashrc')
      writeFileSync(bashrc, "# the user's own ~/.bashrc\n")
      const env = {...process.env, ...dirs, HOME: join(home, 'user'), PATH: `${bin}:${process.env.PATH}`}
      // The instruction exactly as printed, then what a user (or an installer) appends next.
      execFileSync(
        'bash',
        ['--norc', '-c', 'printf "$(ops autocomplete:script bash)" >> ~/.bashrc; echo "export EDITOR=vi" >> ~/.bashrc'],
        {env},
      )
      const lines = readFileSync(bashrc, 'utf8').split('\n')
      expect(lines.at(-1)).to.equal('')
      expect(lines.at(-2)).to.equal('export EDITOR=vi')
      expect(lines.at(-3)).to.match(/^OPS_AC_BASH_SETUP_PATH=.* # ops autocomplete setup$/)
      const loaded = spawnSync('bash', ['--norc', '-c', `source ${quote(bashrc)} && complete -p ops && echo "EDITOR=$EDITOR"`], {
        env,
        encoding: 'utf8',
      })
      expect(loaded.stdout).to.contain('complete -o default -F _ops_autocomplete_values ops')
      expect(loaded.stdout).to.contain('EDITOR=vi')
    })

    it('`ops autocomplete zsh` prints its instructions and writes _ops, with the values of option flags', async () => {
      const zsh = await ops(['autocomplete', 'zsh'])
      expect(zsh.code, zsh.stderr).to.equal(0)
      expect(zsh.stdout).to.contain('printf "$(ops autocomplete:script zsh)" >> ~/.zshrc; source ~/.zshrc')
      expect(readFileSync(join(cache, 'zsh_setup'), 'utf8')).to.contain(join(cache, 'functions', 'zsh'))
      const compdef = readFileSync(join(cache, 'functions', 'zsh', '_ops'), 'utf8')
      expect(compdef).to.match(/^#compdef ops\n/)
      expect(compdef).to.contain(`'--status=[Status to clear (ALL\\: no status filter).]:status:(${STATUS_CHOICES.join(' ')})'`)
      expect((await ops(['autocomplete:script', 'zsh'])).stdout).to.contain(join(cache, 'zsh_setup'))
    })

    it("`ops autocomplete --refresh-cache` rebuilds the scripts with a linked plugin's commands, values included", async function () {
      const template = join(ROOT, 'examples', 'plugin-template')
      execFileSync(process.execPath, [createRequire(import.meta.url).resolve('typescript/bin/tsc'), '-p', template], {stdio: 'inherit'})
      const link = await ops(['plugins:link', template, '--no-install'])
      expect(link.code, link.stderr).to.equal(0)
      const bashScript = () => readFileSync(join(cache, 'functions', 'bash', 'ops.bash'), 'utf8')
      try {
        rmSync(join(cache, 'functions'), {recursive: true})
        const refresh = await ops(['autocomplete', '--refresh-cache'])
        expect(refresh.code, refresh.stderr).to.equal(0)
        expect(bashScript()).to.match(/^widgets:clear .*--older-than/m)
        expect(complete('ops wid').reply).to.deep.equal(['widgets:clear'])
        expect(complete('ops widgets:clear --ta').reply).to.deep.equal(['--table'])
        expect(complete('ops taskmanager:clear --status ').reply).to.deep.equal(STATUS_CHOICES)
        expect(readFileSync(join(cache, 'functions', 'zsh', '_ops'), 'utf8')).to.contain("'widgets:clear') flags=(")
      } finally {
        // plugins:uninstall rebuilds the cache too, through plugin-autocomplete's hook (autocomplete:create).
        const uninstall = await ops(['plugins:uninstall', '@acme/ops-plugin-widgets'])
        expect(uninstall.code, uninstall.stderr).to.equal(0)
        expect(bashScript()).not.to.contain('widgets:clear')
        expect(bashScript().split(MARKER)).to.have.length(2)
        expect(complete('ops taskmanager:clear --status ').reply).to.deep.equal(STATUS_CHOICES)
        await ops(['autocomplete', '--refresh-cache'])
      }
    })
  })

  describe('in a real bash', () => {
    before(function () {
      needPackage('bash-completion')
    })

    it('registers a completion function for ops', () => {
      const result = spawnSync('bash', ['--norc', '-c', `${bashrcLine}\ncomplete -p ops`], {encoding: 'utf8'})
      // The host's function, which hands the command id to plugin-autocomplete's _ops_autocomplete.
      expect(result.stdout.trim()).to.equal('complete -o default -F _ops_autocomplete_values ops')
    })

    it('`ops taskm<TAB>` completes to the taskmanager topic', () => {
      const {reply} = complete('ops taskm')
      expect(reply).to.have.members(['taskmanager:clear', 'taskmanager:restore', 'taskmanager:stuck', 'taskmanager:summary'])
      // readline inserts the longest common prefix of the candidates.
      expect(commonPrefix(reply)).to.equal('taskmanager:')
    })

    it('`ops taskmanager:<TAB>` and `ops taskmanager:cl<TAB>` complete the command after the colon', () => {
      expect(complete('ops taskmanager:').reply).to.have.members(['clear', 'restore', 'stuck', 'summary'])
      expect(complete('ops taskmanager:cl').reply).to.deep.equal(['clear'])
      expect(complete('ops taskflow:co').reply.every((c) => c.startsWith('counters:'))).to.equal(true)
    })

    it('`ops taskmanager:clear --st<TAB>` completes the flag, and `--<TAB>` lists them all', () => {
      expect(complete('ops taskmanager:clear --st').reply).to.have.members(['--status', '--statement-timeout'])
      expect(complete('ops taskmanager:clear --statu').reply).to.deep.equal(['--status'])
      expect(complete('ops taskmanager:clear --').reply).to.include.members([
        '--status',
        '--task-module',
        '--older-than',
        '--dry-run',
        '--force',
        '--json',
      ])
      expect(complete('ops taskmanager:clear --status DONE --ta').reply).to.have.members([
        '--table',
        '--task-module',
        '--task-name',
        '--target-batch-ms',
      ])
    })

    it('`ops taskmanager:clear --status <TAB>` offers the nine statuses, `--status D<TAB>` completes DONE', () => {
      expect(complete('ops taskmanager:clear --status ').reply).to.deep.equal(STATUS_CHOICES)
      expect(complete('ops taskmanager:clear --status D').reply).to.deep.equal(['DONE'])
      expect(complete('ops taskmanager:clear --status P').reply).to.deep.equal(['PENDING', 'PAUSED'])
      expect(complete('ops taskmanager:clear --dry-run --status S').reply).to.deep.equal(['SCHEDULED'])
      expect(complete('ops taskmanager:clear --status X').reply).to.deep.equal([])
    })

    it('`--status=<TAB>` and `--status=D<TAB>` offer the values after the "="', () => {
      // "=" breaks words, so readline replaces only the text after it: the replies are the bare values.
      expect(complete('ops taskmanager:clear --status=').reply).to.deep.equal(STATUS_CHOICES)
      expect(complete('ops taskmanager:clear --status=D').reply).to.deep.equal(['DONE'])
    })

    it('an option flag without listed values offers nothing, so bash falls back to file names (-o default)', () => {
      expect(complete('ops taskmanager:clear --task-module ').reply).to.deep.equal([])
      expect(complete('ops taskmanager:clear --archive=').reply).to.deep.equal([])
    })

    it('completes the space form too: `taskmanager clear --st<TAB>`, `taskmanager cl<TAB>`, `taskflow counters sync --dr<TAB>`', () => {
      expect(complete('ops taskmanager clear --st').reply).to.have.members(['--status', '--statement-timeout'])
      expect(complete('ops taskmanager clear --status D').reply).to.deep.equal(['DONE'])
      expect(complete('ops taskmanager clear --status=S').reply).to.deep.equal(['SCHEDULED'])
      expect(complete('ops taskmanager cl').reply).to.deep.equal(['clear'])
      expect(complete('ops taskmanager ').reply).to.have.members(['clear', 'restore', 'stuck', 'summary'])
      expect(complete('ops taskflow counters ').reply).to.have.members(['init', 'sync'])
      expect(complete('ops taskflow counters sync --dr').reply).to.deep.equal(['--dry-run'])
    })

    it('a real <TAB> typed into an interactive bash (tmux) completes `ops taskmanager clear --sta` and then a status', async () => {
      needPackage('bash-completion')
      needPackage('tmux')
      const dir = mkdtempSync(join(tmpdir(), 'ops-bash-tab-'))
      const tmux = (...args: string[]) => execFileSync('tmux', ['-S', join(dir, 'tmux.sock'), ...args], {encoding: 'utf8'})
      const screenShows = async (pattern: RegExp) => {
        for (let waited = 0; ; waited += 50) {
          const screen = tmux('capture-pane', '-p', '-t', 'bash')
          if (pattern.test(screen)) return screen
          if (waited > 20_000) throw new Error(`the screen never showed ${pattern}; it shows:\n${screen}`)
          await new Promise((r) => setTimeout(r, 50))
        }
      }
      try {
        // ~/.bashrc as a user has it: bash-completion, then the line `ops autocomplete bash` says to append.
        writeFileSync(join(dir, 'bashrc'), `PS1='$ '\nsource ${BASH_COMPLETION}\n${bashrcLine.replace(/\\n$/, '')}\necho READY\n`)
        const env = Object.entries({...dirs, HOME: dir, TERM: 'xterm'}).map(([k, v]) => `${k}=${quote(v)}`)
        tmux(
          '-f',
          '/dev/null',
          'new-session',
          '-d',
          '-s',
          'bash',
          '-x',
          '120',
          '-y',
          '20',
          `env ${env.join(' ')} bash --rcfile ${dir}/bashrc -i`,
        )
        await screenShows(/^READY$/m)
        tmux('send-keys', '-t', 'bash', '-l', 'ops taskmanager clear --sta')
        // --sta is --status or --statement-timeout: a TAB completes what they share; as readline does, two more list both.
        tmux('send-keys', '-t', 'bash', 'Tab')
        await screenShows(/^\$ ops taskmanager clear --stat$/m)
        tmux('send-keys', '-t', 'bash', 'Tab', 'Tab')
        await screenShows(/--statement-timeout\s+--status|--status\s+--statement-timeout/)
        tmux('send-keys', '-t', 'bash', '-l', 'us SCHED')
        tmux('send-keys', '-t', 'bash', 'Tab')
        // tmux drops the trailing space that completion added after the value.
        await screenShows(/^\$ ops taskmanager clear --status SCHEDULED$/m)
      } finally {
        spawnSync('tmux', ['-S', join(dir, 'tmux.sock'), 'kill-server'])
        rmSync(dir, {recursive: true, force: true})
      }
    })

    it("flags complete for commands with two colons too (the plugin's own bash list misses them)", () => {
      expect(complete('ops taskflow:counters:sync --dr').reply).to.deep.equal(['--dry-run'])
      expect(complete('ops taskflow:stuck:fix --ol').reply).to.deep.equal(['--older-than'])
    })

    it("a positional word still gets plugin-autocomplete's command ids (`ops help taskm<TAB>`)", () => {
      expect(complete('ops help taskm').reply).to.have.members([
        'taskmanager:clear',
        'taskmanager:restore',
        'taskmanager:stuck',
        'taskmanager:summary',
      ])
    })

    it('the values survive `ops autocomplete --refresh-cache`, written once', async () => {
      const refresh = await ops(['autocomplete', '--refresh-cache'])
      expect(refresh.code, refresh.stderr).to.equal(0)
      expect(readFileSync(join(cache, 'functions', 'bash', 'ops.bash'), 'utf8').split(MARKER)).to.have.length(2)
      expect(complete('ops taskmanager:clear --status ').reply).to.deep.equal(STATUS_CHOICES)
    })

    it('bashCompletion() keeps values literal (quotes, spaces, "$") and completes short flags', () => {
      const file = join(home, 'values.bash')
      const values = [`it's`, 'a b', '$HOME', 'x:y']
      const commands = [{id: 't:run', flags: [{name: 'mode', char: 'm', takesValue: true, options: values}]}]
      writeFileSync(file, `_ops_autocomplete() { COMPREPLY=(fallback); }\n${bashCompletion(commands, 'ops')}`)
      const setup = `source ${file}`
      expect(complete('ops t:run --mode ', {setup}).reply).to.deep.equal(values)
      expect(complete('ops t:run -m a', {setup}).reply).to.deep.equal(['a b'])
      expect(complete('ops t:run --mode x:', {setup}).reply).to.deep.equal(['y'])
    })

    it('without the bash-completion package, a colon in the command breaks completion', () => {
      const {reply, stderr} = complete('ops taskmanager:cl', {bashCompletion: false})
      expect(reply).to.deep.equal([])
      expect(stderr).to.contain('_get_comp_words_by_ref: command not found')
    })
  })

  describe('in a real zsh', () => {
    let zshrcLine: string
    const zdotdir = join(home, 'zdotdir')

    before(async function () {
      needPackage('zsh')
      zshrcLine = (await ops(['autocomplete:script', 'zsh'])).stdout.trim()
      execFileSync('mkdir', ['-p', zdotdir])
    })

    /** Types `line` and <TAB> into an interactive zsh set up as ~/.zshrc would, and returns the candidates offered. */
    function zshComplete(line: string): string[] {
      const driver = join(ROOT, 'test', 'fixtures', 'zsh-complete.zsh')
      // ZDOTDIR/HOME: compinit writes its dump there, not in the user's home.
      const result = spawnSync('zsh', ['-f', driver, zshrcLine, line], {
        env: {...process.env, ...dirs, HOME: zdotdir, ZDOTDIR: zdotdir},
        encoding: 'utf8',
        timeout: 30_000,
      })
      expect(result.status, result.stderr).to.equal(0)
      return result.stdout
        .split('\n')
        .filter((l) => l.startsWith('HIT:'))
        .map((l) => l.slice(4))
    }

    it('`ops taskm<TAB>` offers the taskmanager commands', () => {
      expect(zshComplete('ops taskm')).to.have.members([
        'taskmanager:clear',
        'taskmanager:restore',
        'taskmanager:stuck',
        'taskmanager:summary',
      ])
    })

    it('flags complete, for commands with two colons too', () => {
      expect(zshComplete('ops taskmanager:clear --st')).to.have.members(['--status', '--statement-timeout'])
      expect(zshComplete('ops taskflow:counters:sync --dr')).to.deep.equal(['--dry-run'])
    })

    it('`--status <TAB>`, `--status D<TAB>` and `--status=P<TAB>` offer the statuses', () => {
      expect(zshComplete('ops taskmanager:clear --status ')).to.deep.equal(STATUS_CHOICES)
      expect(zshComplete('ops taskmanager:clear --status D')).to.deep.equal(['DONE'])
      expect(zshComplete('ops taskmanager:clear --status=P')).to.deep.equal(['--status=PENDING', '--status=PAUSED'])
    })

    it('the space form as in bash: `taskmanager clear --st<TAB>`, `taskmanager cl<TAB>`, `taskflow counters sync --dr<TAB>`', () => {
      expect(zshComplete('ops taskmanager clear --st')).to.have.members(['--status', '--statement-timeout'])
      expect(zshComplete('ops taskmanager clear --status D')).to.deep.equal(['DONE'])
      expect(zshComplete('ops taskmanager cl')).to.deep.equal(['clear'])
      expect(zshComplete('ops taskflow counters ')).to.have.members(['init', 'sync'])
      expect(zshComplete('ops taskflow counters sync --dr')).to.deep.equal(['--dry-run'])
    })
  })
})
