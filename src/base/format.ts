/** 1234567 -> "1,234,567" (the seeds print counts this way). */
export function count(n: number): string {
  return n.toLocaleString('en-US')
}

/** Milliseconds as "850ms", "12.3s", "4m 05s", "1h 02m". */
export function duration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?'
  if (ms < 1000) return `${Math.round(ms)}ms`
  const s = ms / 1000
  if (s < 60) return `${s.toFixed(1)}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m ${String(Math.floor(s % 60)).padStart(2, '0')}s`
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`
}

/** Left-aligned text table with a dashed rule under the header, as the seeds print. */
export function table(header: string[], rows: (string | number)[][]): string[] {
  const cells = [header, ...rows.map((r) => r.map(String))]
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)))
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join(' ').trimEnd()
  return [line(header), widths.map((w) => '-'.repeat(w)).join(' '), ...cells.slice(1).map(line)]
}
