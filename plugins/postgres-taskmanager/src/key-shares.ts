import type {IdRange} from './batches.js'

/**
 * One worker's share of the primary key while the walk runs: the ids after
 * `after`, up to `upTo`. Only its owner moves it, between two of its batches,
 * so no id is ever walked by two workers at once.
 */
export class KeyShare {
  /** Idle workers waiting for a part, first come first served: one is answered after each of the owner's batches. */
  private readonly asked: ((far: KeyShare | undefined) => void)[] = []
  /** Walked to its end, or too small to split: no one asks it again. */
  private settled = false

  constructor(
    public after: string,
    public upTo: string,
  ) {}

  get left(): bigint {
    return BigInt(this.upTo) - BigInt(this.after)
  }

  get open(): boolean {
    return !this.settled
  }

  /** The owner, after a batch that went up to `scannedTo`: moves on, and hands its far half to the first worker waiting. */
  advance(scannedTo: string): void {
    // Ids this batch covered: the share is split only when each half keeps at least that many.
    const span = BigInt(scannedTo) - BigInt(this.after)
    this.after = scannedTo
    const answer = this.asked.shift()
    if (!answer) return
    if (this.left < 2n * (span > 0n ? span : 1n)) {
      answer(undefined)
      this.close()
      return
    }
    const mid = String(BigInt(this.after) + this.left / 2n)
    const far = new KeyShare(mid, this.upTo)
    this.upTo = mid
    answer(far)
  }

  /** The owner's walk of this share ended (walked, stopped or failed), or it became too small to split. */
  close(): void {
    this.settled = true
    for (const answer of this.asked.splice(0)) answer(undefined)
  }

  /** Asked by an idle worker; the owner answers after its batch in flight (or a later one, when others asked first). */
  ask(): Promise<KeyShare | undefined> {
    return new Promise((answer) => this.asked.push(answer))
  }
}

/**
 * The workers' shares of the key range. A worker that has walked its own takes
 * over the far half of the share with the most ids left, so the workers finish
 * together however the matching rows are spread over the key (old ids all DONE,
 * recent ones mostly PENDING) or however one of them is slowed down.
 */
export class KeyShares {
  private readonly shares: KeyShare[]

  constructor(ranges: IdRange[]) {
    this.shares = ranges.map((r) => new KeyShare(r.after, r.upTo))
  }

  at(i: number): KeyShare {
    return this.shares[i]
  }

  /** The far half of the busiest share still walked, or undefined when none is worth splitting any more. */
  async takeOver(): Promise<KeyShare | undefined> {
    for (;;) {
      const busiest = this.shares.filter((s) => s.open).sort((a, b) => (b.left > a.left ? 1 : b.left < a.left ? -1 : 0))[0]
      if (!busiest) return undefined
      const far = await busiest.ask()
      if (far) {
        this.shares.push(far)
        return far
      }
    }
  }
}
