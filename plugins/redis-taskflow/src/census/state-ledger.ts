import {appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

/** Slots of the in-memory table at most (36 MB, ~1.4 million keys); past that it spills to disk. */
export const MAX_SLOTS = 1 << 21
/** Spill files, by the top 6 bits of a uuid: resolving reads one at a time (1/64 of the spilled keys). */
const PARTITIONS = 64
const RECORD = 17

/**
 * What the census counted for each task key, so that a key which changes
 * after it was counted can be taken back out exactly, and a key SCAN returned
 * twice is counted once. A million strings in a Map would cost ~100 MB;
 * `task:{uuid4}` keys are stored instead as their 128 bits in open-addressing
 * typed arrays (17 bytes a key, no hashing collisions: the uuid is the
 * identity). Memory is bounded: when the table reaches `maxSlots`, its records
 * are appended to 64 partition files in a temporary directory and the table
 * starts again empty; resolve() then reads them back one partition at a time.
 * Any other key name (not a uuid4: rare, defective) goes to a small Map.
 */
export class StateLedger {
  private words: Uint32Array
  /** 0 = empty slot, else code + 1. */
  private codes: Uint8Array
  private used = 0
  private spilled = 0
  private spillDir: string | undefined
  private readonly others = new Map<string, number>()

  constructor(
    private capacity = 1 << 16,
    private readonly maxSlots = MAX_SLOTS,
  ) {
    this.words = new Uint32Array(capacity * 4)
    this.codes = new Uint8Array(capacity)
  }

  /**
   * A ledger sized up front for about `keys` keys (capped at `maxSlots`, by
   * default 2^21 slots, 36 MB): growing a million-key table copies it while the
   * scan waits.
   */
  static sizedFor(keys: number, maxSlots = MAX_SLOTS): StateLedger {
    let capacity = Math.min(1 << 16, maxSlots)
    while (capacity < maxSlots && keys * 10 > capacity * 7) capacity *= 2
    return new StateLedger(capacity, maxSlots)
  }

  /** Keys recorded (a key SCAN returned twice across a spill counts twice until resolve()). */
  get size(): number {
    return this.used + this.spilled + this.others.size
  }

  /**
   * Records `code` for `key`; returns the code recorded before, if the table
   * still holds it (SCAN may return a key twice). A repeat of a key spilled to
   * disk is not seen here: resolve() takes it out.
   */
  set(key: string, code: number): number | undefined {
    const w = uuidWords(key)
    if (!w) {
      const previous = this.others.get(key)
      this.others.set(key, code)
      return previous
    }
    if ((this.used + 1) * 10 > this.capacity * 7) {
      if (this.capacity < this.maxSlots) this.grow()
      else this.spill()
    }
    const slot = this.find(w[0], w[1], w[2], w[3])
    const previous = this.codes[slot] === 0 ? undefined : this.codes[slot] - 1
    if (previous === undefined) {
      this.words.set(w, slot * 4)
      this.used++
    }
    this.codes[slot] = code + 1
    return previous
  }

  /**
   * What to take back out of the counts, per code: every code recorded for a
   * key in `changed` (its state is read again at the instant), and for any
   * other key recorded more than once, all but one. Reads the spill files one
   * partition at a time, then removes them.
   */
  resolve(changed: Iterable<string>): number[] {
    const out = new Array<number>(256).fill(0)
    const changedIds = Array.from({length: PARTITIONS}, () => new Set<string>())
    for (const key of changed) {
      const w = uuidWords(key)
      if (!w) {
        const code = this.others.get(key)
        if (code !== undefined) out[code]++
      } else if (this.spillDir) changedIds[w[0] >>> 26].add(hexOf(w[0], w[1], w[2], w[3]))
      else {
        const code = this.get(key)
        if (code !== undefined) out[code]++
      }
    }
    if (!this.spillDir) return out
    // The table's records, by partition, so each partition is one pass.
    const inTable = Array.from({length: PARTITIONS}, () => [] as number[])
    for (let slot = 0; slot < this.capacity; slot++) if (this.codes[slot] !== 0) inTable[this.words[slot * 4] >>> 26].push(slot)
    for (let p = 0; p < PARTITIONS; p++) {
      const seen = new Map<string, number[]>()
      const note = (a: number, b: number, c: number, d: number, code: number) => {
        const id = hexOf(a, b, c, d)
        const codes = seen.get(id)
        if (codes) codes.push(code)
        else seen.set(id, [code])
      }
      const file = join(this.spillDir, `part-${p}`)
      const records = existsSync(file) ? readFileSync(file) : Buffer.alloc(0)
      for (let at = 0; at < records.length; at += RECORD) {
        note(
          records.readUInt32BE(at),
          records.readUInt32BE(at + 4),
          records.readUInt32BE(at + 8),
          records.readUInt32BE(at + 12),
          records[at + 16],
        )
      }
      for (const slot of inTable[p]) {
        const i = slot * 4
        note(this.words[i], this.words[i + 1], this.words[i + 2], this.words[i + 3], this.codes[slot] - 1)
      }
      for (const [id, codes] of seen) {
        const takeOut = changedIds[p].has(id) ? codes : codes.slice(1)
        for (const code of takeOut) out[code]++
      }
    }
    this.dispose()
    return out
  }

  /** Removes the spill files, if any. */
  dispose(): void {
    if (this.spillDir) rmSync(this.spillDir, {recursive: true, force: true})
    this.spillDir = undefined
  }

  /** Appends every record of the table to its partition file and empties the table. */
  private spill(): void {
    this.spillDir ??= mkdtempSync(join(tmpdir(), 'ops-ledger-'))
    const counts = new Array<number>(PARTITIONS).fill(0)
    for (let slot = 0; slot < this.capacity; slot++) if (this.codes[slot] !== 0) counts[this.words[slot * 4] >>> 26]++
    const buffers = counts.map((n) => Buffer.alloc(n * RECORD))
    const filled = new Array<number>(PARTITIONS).fill(0)
    for (let slot = 0; slot < this.capacity; slot++) {
      if (this.codes[slot] === 0) continue
      const i = slot * 4
      const p = this.words[i] >>> 26
      const at = filled[p]
      for (let w = 0; w < 4; w++) buffers[p].writeUInt32BE(this.words[i + w], at + 4 * w)
      buffers[p][at + 16] = this.codes[slot] - 1
      filled[p] += RECORD
    }
    buffers.forEach((buffer, p) => buffer.length && appendFileSync(join(this.spillDir!, `part-${p}`), buffer))
    this.spilled += this.used
    this.used = 0
    this.codes.fill(0)
  }

  /** True once records went to disk: get() then no longer knows every key. */
  get spilledToDisk(): boolean {
    return this.spillDir !== undefined
  }

  /** The code recorded for `key` (kept in memory), if any. */
  get(key: string): number | undefined {
    const w = uuidWords(key)
    if (!w) return this.others.get(key)
    const slot = this.find(w[0], w[1], w[2], w[3])
    return this.codes[slot] === 0 ? undefined : this.codes[slot] - 1
  }

  /** The slot holding these words, or the empty slot where they would go (linear probing). */
  private find(a: number, b: number, c: number, d: number): number {
    const mask = this.capacity - 1
    // uuid4 bits are random: the last word is a good enough hash.
    for (let slot = (d ^ a) & mask; ; slot = (slot + 1) & mask) {
      if (this.codes[slot] === 0) return slot
      const i = slot * 4
      if (this.words[i] === a && this.words[i + 1] === b && this.words[i + 2] === c && this.words[i + 3] === d) return slot
    }
  }

  private grow(): void {
    const {words, codes, capacity} = this
    this.capacity = capacity * 2
    this.words = new Uint32Array(this.capacity * 4)
    this.codes = new Uint8Array(this.capacity)
    for (let slot = 0; slot < capacity; slot++) {
      if (codes[slot] === 0) continue
      const i = slot * 4
      const to = this.find(words[i], words[i + 1], words[i + 2], words[i + 3])
      this.words.set(words.subarray(i, i + 4), to * 4)
      this.codes[to] = codes[slot]
    }
  }
}

const hexOf = (a: number, b: number, c: number, d: number): string =>
  a.toString(16).padStart(8, '0') + b.toString(16).padStart(8, '0') + c.toString(16).padStart(8, '0') + d.toString(16).padStart(8, '0')

const scratch = new Uint32Array(4)
/** Where each of the 32 hex digits of `task:xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` sits. */
const HEX_AT = [...'xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx'].flatMap((c, i) => (c === 'x' ? [5 + i] : []))
const DASH_AT = [13, 18, 23, 28]

/** The uuid of a `task:{uuid4}` key as four 32-bit words (reused array), or undefined for any other key. */
function uuidWords(key: string): Uint32Array | undefined {
  if (key.length !== 41 || !key.startsWith('task:')) return undefined
  for (const i of DASH_AT) if (key.charCodeAt(i) !== 45) return undefined
  for (let word = 0; word < 4; word++) {
    let value = 0
    for (let d = word * 8; d < word * 8 + 8; d++) {
      const c = key.charCodeAt(HEX_AT[d])
      // lower-case hex only: str(uuid4()) is lower-case, and one spelling keeps the identity exact
      const nibble = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1
      if (nibble < 0) return undefined
      value = value * 16 + nibble
    }
    scratch[word] = value
  }
  return scratch
}
