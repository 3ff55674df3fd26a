/**
 * 1234567 -> "1,234,567" (the original tools print counts this way). Whole numbers are grouped here: the first
 * toLocaleString of a run loads ICU's number formatting, about 20 ms of every start-up.
 */
export function count(n: number): string {
  if (!Number.isSafeInteger(n)) return n.toLocaleString('en-US')
  return String(n).replace(/\B(?=(\d{3})+$)/g, ',')
}

/** `plural(1, 'hour')` -> "1 hour", `plural(2, 'hour')` -> "2 hours", `plural(3, 'task', 'task(s)')` as given. */
export function plural(n: number, singular: string, pluralForm = `${singular}s`): string {
  return `${count(n)} ${n === 1 ? singular : pluralForm}`
}

/** Milliseconds as "850ms", "12.3s", "4m 05s", "1h 02m", "7d 00h". */
export function duration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?'
  if (ms < 1000) return `${Math.round(ms)}ms`
  const s = ms / 1000
  if (s < 60) return `${s.toFixed(1)}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m ${String(Math.floor(s % 60)).padStart(2, '0')}s`
  const h = Math.floor(m / 60)
  if (h < 24) return `${h}h ${String(m % 60).padStart(2, '0')}m`
  return `${Math.floor(h / 24)}d ${String(h % 24).padStart(2, '0')}h`
}

/** Left-aligned text table with a dashed rule under the header, as the original tools print. */
export function table(header: string[], rows: (string | number)[][]): string[] {
  const cells = [header, ...rows.map((r) => r.map(String))]
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)))
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i])))
      .join(' ')
      .trimEnd()
  return [line(header), widths.map((w) => '-'.repeat(w)).join(' '), ...cells.slice(1).map(line)]
}

/**
 * Breaks `text` at spaces so no line is wider than `width`. The first line keeps the
 * text's own leading indentation; lines after it start with `indent` (give it that
 * indentation plus a step, so a continuation sits under the line it continues, deeper).
 * A mark standing alone stays with the word before it, and a single word longer than the
 * width stays whole on its own line.
 */
export function wrap(text: string, width: number, indent = ''): string[] {
  const lead = /^ */.exec(text)![0]
  const lines: string[] = []
  let line = ''
  const words: string[] = []
  // A lone mark ("—", ")", ":") travels with the word before it: a line of just "—" reads as noise.
  for (const word of text.slice(lead.length).split(' '))
    if (words.length > 0 && /^[^\p{L}\p{N}]{1,2}$/u.test(word)) words[words.length - 1] += ` ${word}`
    else words.push(word)
  for (const word of words) {
    const candidate = line === '' ? word : `${line} ${word}`
    const prefix = lines.length === 0 ? lead : indent
    if (line !== '' && prefix.length + candidate.length > width) {
      lines.push(prefix + line)
      line = word
    } else {
      line = candidate
    }
  }
  lines.push((lines.length === 0 ? lead : indent) + line)
  return lines
}
