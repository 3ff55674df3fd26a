import type {Interfaces} from '@oclif/core'

/**
 * Flag-value completion, added by the host to the scripts @oclif/plugin-autocomplete
 * writes. Its 3.2 bash script completes command ids and flag names only (and no
 * flag names for ids with two colons, such as taskflow:counters:sync); its zsh
 * script, with topicSeparator ":", leaves every flag value empty. The tables here
 * are built from the loaded config, so installed and linked plugins are included.
 */

export interface CompletionFlag {
  name: string
  char?: string
  /** False for boolean flags. */
  takesValue: boolean
  /** The values an option flag accepts (`options` in its definition), if it lists them. */
  options?: readonly string[]
  summary?: string
  multiple?: boolean
}

export interface CompletionCommand {
  id: string
  summary?: string
  flags: CompletionFlag[]
}

/** Marks the start of what the host appends, so a rewrite replaces it instead of appending twice. */
export const MARKER = '# --- added by ops (src/completion.ts): flag names and values per command ---'

/** Every visible command (and alias) of every loaded plugin, as plugin-autocomplete lists them. */
export function completionCommands(config: Interfaces.Config): CompletionCommand[] {
  const commands: CompletionCommand[] = []
  for (const plugin of config.getPluginsList()) {
    for (const command of plugin.commands) {
      if (command.hidden) continue
      const flags = Object.values(command.flags ?? {})
        .filter((f) => !f.hidden)
        .map((f): CompletionFlag => ({
          name: f.name,
          char: f.char,
          takesValue: f.type === 'option',
          options: f.type === 'option' ? f.options : undefined,
          summary: f.summary ?? f.description,
          multiple: f.type === 'option' ? f.multiple : false,
        }))
      const summary = command.summary ?? command.description
      for (const id of [command.id, ...(command.aliases ?? [])]) commands.push({id, summary, flags})
    }
  }
  return commands
}

/** A bash word in single quotes. */
const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`

/**
 * The bash appended to plugin-autocomplete's `<bin>.bash`: a completion function that
 * handles every word after the command id (flag names, values after an option flag,
 * `--flag=value`) and hands the command id itself, and positional words (`ops help
 * <id>`), to the plugin's `_<bin>_autocomplete`.
 */
export function bashCompletion(commands: CompletionCommand[], bin: string, aliases: string[] = []): string {
  const fn = `_${bin}_autocomplete`
  const cases = commands.map((c) => {
    const names = c.flags.map((f) => `--${f.name}`)
    const takes = c.flags.filter((f) => f.takesValue).flatMap((f) => [`--${f.name}`, ...(f.char ? [`-${f.char}`] : [])])
    const values = c.flags
      .filter((f) => f.takesValue && f.options?.length)
      .map(
        (f) => `        ${[`--${f.name}`, ...(f.char ? [`-${f.char}`] : [])].map(q).join('|')}) values=(${f.options!.map(q).join(' ')}) ;;`,
      )
    return [
      `    ${q(c.id)})`,
      `      flags=(${names.map(q).join(' ')}); takes=(${takes.map(q).join(' ')})`,
      ...(values.length > 0 ? ['      case "$2" in', ...values, '      esac'] : []),
      '      ;;',
    ].join('\n')
  })
  const ids = [...new Set(commands.map((c) => c.id))]
  return `${MARKER}

# Every command id, space-separated with a space at each end, for the space form (\`${bin} taskmanager clear\`).
${fn}_ids=${q(` ${ids.join(' ')} `)}

${fn}_spec()
{
  # $1: command id, $2: a flag. Sets flags (the command's flag names), takes (flags that take a value), values (what $2 accepts).
  case "$1" in
${cases.join('\n')}
  esac
}

${fn}_values()
{
  # Without bash-completion the plugin's function is all there is (it needs _get_comp_words_by_ref too).
  declare -F _get_comp_words_by_ref >/dev/null || { ${fn} "$@"; return; }
  local cur prev words cword flags=() takes=() values=() v
  # ":" and "=" kept inside words: words[1] is the whole command id, "--status=D" one word.
  _get_comp_words_by_ref -n := cur prev words cword
  # The command id itself: plugin-autocomplete's list.
  (( cword < 2 )) && { ${fn} "$@"; return; }
  # The space form ("${bin} taskmanager clear --st"): words that extend a command id belong to it.
  local id="\${words[1]}" i=2
  while (( i < cword )) && [[ "\${words[i]}" != -* && "$${fn}_ids" == *" $id:\${words[i]}"[\\ :]* ]]; do
    id="$id:\${words[i]}"; (( i++ ))
  done
  COMPREPLY=()
  if [[ "$cur" != -* && "$${fn}_ids" != *" $id "* && "$${fn}_ids" == *" $id:"* ]]; then
    # A topic so far: offer the next word of the command ids under it.
    for v in $${fn}_ids; do
      [[ "$v" == "$id:$cur"* ]] || continue
      v="\${v#"$id:"}"; v="\${v%%:*}"
      [[ " \${COMPREPLY[*]} " == *" $v "* ]] || COMPREPLY+=("$v")
    done
    return 0
  fi
  ${fn}_spec "$id" ""
  local eq=""
  if [[ "$cur" == -*=* ]]; then
    prev="\${cur%%=*}"; cur="\${cur#*=}"; eq="$prev="
  elif [[ "$cur" == -* ]]; then
    for v in "\${flags[@]}"; do [[ "$v" == "$cur"* ]] && COMPREPLY+=("$v"); done
    return 0
  fi
  local t
  for t in "\${takes[@]}"; do
    [[ "$t" == "$prev" ]] || continue
    ${fn}_spec "$id" "$prev"
    for v in "\${values[@]}"; do [[ "$v" == "$cur"* ]] && COMPREPLY+=("\${v}"); done
    # Readline replaces only the text after "=" when "=" breaks words (the default); else the whole "--flag=value".
    [[ -n "$eq" && "$COMP_WORDBREAKS" != *=* ]] && COMPREPLY=("\${COMPREPLY[@]/#/$eq}")
    __ltrim_colon_completions "$cur"
    # No listed values (a free-form option): empty, so "-o default" offers file names.
    return 0
  done
  # A positional argument (e.g. \`${bin} help <id>\`): the plugin's list of command ids.
  ${fn} "$@"
}

${[bin, ...aliases].map((b) => `complete -o default -F ${fn}_values ${b}`).join('\n')}
`
}

/** A zsh word in single quotes ('\'' works in zsh too). */
const zq = q
/** Backslash-escapes what _arguments/_describe would read as syntax. */
const esc = (s: string, chars: string) => s.replace(new RegExp(`([\\\\${chars}])`, 'g'), '\\$1')
const firstLine = (s?: string) => (s ?? '').split('\n')[0]

/** One _arguments spec: `--name[summary]` for booleans, `--name=[summary]:name:(values)` for options. */
function zshFlagSpec(f: CompletionFlag): string {
  const summary = `[${esc(firstLine(f.summary), '\\[\\]:')}]`
  if (!f.takesValue) return zq(`--${f.name}${summary}`)
  // "--flag=": the value may follow "=" or be the next word; without values listed, complete file names as bash does.
  const action = f.options?.length ? `(${f.options.map((v) => esc(v, '\\s()\'":')).join(' ')})` : '_files'
  return zq(`${f.multiple ? '*' : ''}--${f.name}=${summary}:${esc(f.name, ':')}:${action}`)
}

/**
 * The zsh completion function, written by the host in place of plugin-autocomplete's:
 * with topicSeparator ":" the plugin's generator gives every option flag an empty
 * value action and offers flags only on a word starting with "-".
 */
export function zshCompletion(commands: CompletionCommand[], bin: string, aliases: string[] = []): string {
  const described = commands.map((c) => `    ${zq(`${esc(c.id, ':')}:${firstLine(c.summary)}`)}`)
  const cases = commands.map((c) => [`    ${zq(c.id)}) flags=(`, ...c.flags.map((f) => `      ${zshFlagSpec(f)}`), '    ) ;;'].join('\n'))
  const ids = [...new Set(commands.map((c) => c.id))]
  return `#compdef ${[bin, ...aliases].join(' ')}
${MARKER}

_${bin} () {
  local -a commands=(
${described.join('\n')}
  )
  local -a ids=(${ids.map(zq).join(' ')})
  # zsh does not split words at ":", so words[2] is the whole command id.
  if (( CURRENT == 2 )); then
    _describe -t commands '${bin} commands' commands
    return
  fi
  # The space form ("${bin} taskmanager clear --st"): words that extend a command id belong to it.
  local id=\${words[2]} i=3
  while (( i < CURRENT )) && [[ \${words[i]} != -* && -n \${(M)ids:#$id:\${words[i]}(|:*)} ]]; do
    id=$id:\${words[i]}; (( i++ ))
  done
  if (( i == CURRENT )) && [[ \${words[CURRENT]} != -* && \${ids[(Ie)$id]} == 0 && -n \${(M)ids:#$id:*} ]]; then
    # A topic so far: offer the next word of the command ids under it.
    local -a next=(\${(u)\${\${(M)ids:#$id:*}#$id:}%%:*})
    compadd -- $next
    return
  fi
  local -a flags
  case $id in
${cases.join('\n')}
  esac
  # From here on the command id plays the command name for _arguments, the topic words gone.
  words=("$id" "\${(@)words[i,-1]}"); (( CURRENT -= i - 2 ))
  _arguments -S $flags '*: :_files'
}

_${bin} "$@"
`
}
