/**
 * Allocation-light containers for the in-memory broker: a growable ring deque and a binary
 * min-heap keyed by time. Not exported from the package.
 *
 * @internal
 */

/**
 * A double-ended queue on a power-of-two ring buffer: O(1) `push`, `unshift`, `shift`, `peek`.
 *
 * @internal
 */
export class Deque<A> {
  private items: Array<A | undefined>
  private head = 0
  private length = 0
  private mask: number

  constructor(capacity = 16) {
    let size = 16
    while (size < capacity) size *= 2
    this.items = new Array<A | undefined>(size)
    this.mask = size - 1
  }

  get size(): number {
    return this.length
  }

  push(item: A): void {
    if (this.length === this.items.length) this.grow()
    this.items[(this.head + this.length) & this.mask] = item
    this.length++
  }

  unshift(item: A): void {
    if (this.length === this.items.length) this.grow()
    this.head = (this.head - 1) & this.mask
    this.items[this.head] = item
    this.length++
  }

  shift(): A | undefined {
    if (this.length === 0) return undefined
    const item = this.items[this.head]
    this.items[this.head] = undefined
    this.head = (this.head + 1) & this.mask
    this.length--
    return item
  }

  peek(): A | undefined {
    return this.length === 0 ? undefined : this.items[this.head]
  }

  private grow(): void {
    const old = this.items
    const next = new Array<A | undefined>(old.length * 2)
    for (let i = 0; i < this.length; i++) next[i] = old[(this.head + i) & this.mask]
    this.items = next
    this.head = 0
    this.mask = next.length - 1
  }
}

/**
 * One scheduled entry: `value` is due at `at`; `seq` breaks ties in insertion order; `version`
 * lets the owner discard entries that no longer match the value (lazy deletion).
 *
 * @internal
 */
export interface HeapEntry<A> {
  readonly at: number
  readonly seq: number
  readonly value: A
  readonly version: number
}

const before = <A>(a: HeapEntry<A>, b: HeapEntry<A>): boolean => a.at < b.at || (a.at === b.at && a.seq < b.seq)

/**
 * A binary min-heap of `HeapEntry` ordered by `at`, then `seq`: O(log n) `push`/`pop`, O(1) `peek`.
 *
 * @internal
 */
export class MinHeap<A> {
  private data: Array<HeapEntry<A>> = []

  get size(): number {
    return this.data.length
  }

  peek(): HeapEntry<A> | undefined {
    return this.data[0]
  }

  push(entry: HeapEntry<A>): void {
    const data = this.data
    let i = data.length
    data.push(entry)
    while (i > 0) {
      const parent = (i - 1) >> 1
      const p = data[parent]!
      if (!before(entry, p)) break
      data[i] = p
      i = parent
    }
    data[i] = entry
  }

  pop(): HeapEntry<A> | undefined {
    const data = this.data
    const top = data[0]
    const last = data.pop()
    if (top === undefined || last === undefined || data.length === 0) return top
    this.siftDown(0, last)
    return top
  }

  /** Keep only the entries `keep` accepts, then restore the heap order: O(n). */
  retain(keep: (entry: HeapEntry<A>) => boolean): void {
    this.data = this.data.filter(keep)
    for (let i = (this.data.length >> 1) - 1; i >= 0; i--) this.siftDown(i, this.data[i]!)
  }

  private siftDown(start: number, entry: HeapEntry<A>): void {
    const data = this.data
    const n = data.length
    let i = start
    for (;;) {
      const left = 2 * i + 1
      if (left >= n) break
      const right = left + 1
      let child = left
      if (right < n && before(data[right]!, data[left]!)) child = right
      const c = data[child]!
      if (!before(c, entry)) break
      data[i] = c
      i = child
    }
    data[i] = entry
  }
}
