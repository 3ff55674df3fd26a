/**
 * What the census counted for each task key, so that a key which changes
 * after it was counted can be taken back out exactly. A million strings in a
 * Map would cost ~100 MB; `task:{uuid4}` keys are stored instead as their 128
 * bits in open-addressing typed arrays (17 bytes a key, no hashing collisions:
 * the uuid is the identity). Any other key name goes to a small Map.
 */
export class StateLedger {
  private words: Uint32Array
  /** 0 = empty slot, else code + 1. */
  private codes: Uint8Array
  private used = 0
  private readonly others = new Map<string, number>()

  constructor(private capacity = 1 << 16) {
    this.words = new Uint32Array(capacity * 4)
    this.codes = new Uint8Array(capacity)
  }

  /**
   * A ledger sized up front for about `keys` keys (capped at 2^21 slots, 36 MB):
   * growing a million-key table copies it while the scan waits.
   */
  static sizedFor(keys: number): StateLedger {
    let capacity = 1 << 16
    while (capacity < 1 << 21 && keys * 10 > capacity * 7) capacity *= 2
    return new StateLedger(capacity)
  }

  get size(): number {
    return this.used + this.others.size
  }

  /** Records `code` for `key`; returns the code recorded before, if any (SCAN may return a key twice). */
  set(key: string, code: number): number | undefined {
    const w = uuidWords(key)
    if (!w) {
      const previous = this.others.get(key)
      this.others.set(key, code)
      return previous
    }
    if ((this.used + 1) * 10 > this.capacity * 7) this.grow()
    const slot = this.find(w[0], w[1], w[2], w[3])
    const previous = this.codes[slot] === 0 ? undefined : this.codes[slot] - 1
    if (previous === undefined) {
      this.words.set(w, slot * 4)
      this.used++
    }
    this.codes[slot] = code + 1
    return previous
  }

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
