/**
 * One timer for many deadlines (epoch ms), armed for the earliest: the leases of a consumer's
 * deliveries, its waiting takes, the sends waiting for confirms. Setting and clearing a timer per
 * item costs more than the item's own work on the hot path.
 */
export class DeadlineTimer {
  private timer: ReturnType<typeof setTimeout> | undefined
  private at = Infinity

  /**
   * @param sweep handles every item whose deadline is at or before `now`, and returns the next
   *   deadline left (`Infinity`: none, the timer stays off).
   * @param unref whether the timer alone keeps the process alive.
   */
  constructor(
    private readonly sweep: (now: number) => number,
    private readonly unref: boolean
  ) {}

  /** Fire no later than `deadline`. */
  schedule(deadline: number): void {
    if (deadline < this.at) this.arm(deadline)
  }

  /** Turn the timer off (until the next `schedule`). */
  cancel(): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    this.at = Infinity
  }

  private arm(at: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.at = at
    // setTimeout takes at most 2^31 - 1 ms; a later deadline is looked at again then
    this.timer = setTimeout(this.fire, Math.min(2_147_483_647, Math.max(0, at - Date.now())))
    if (this.unref) this.timer.unref?.()
  }

  private readonly fire = (): void => {
    this.timer = undefined
    this.at = Infinity
    // an item added by the sweep itself has scheduled the timer already if it needed to
    this.schedule(this.sweep(Date.now()))
  }
}
