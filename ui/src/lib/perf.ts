// What the window measures about itself while it runs, for the end-to-end
// test to read (window.__finetunePerf): the longest stall of the main
// thread (timer drift) and the rate of training events received.

export interface Perf {
  /** Longest delay past a 10 ms timer's due time since training started, in ms. */
  longestStallMs: number;
  /** Longest redraw of the Train panel (state change to the next task: the
   * framework's DOM update and the charts' drawing), in ms. */
  longestRenderMs: number;
  /** When the longest stall ended, in ms since the first training event. */
  longestStallAt: number;
  events: number;
  firstEventAt: number | null;
  lastEventAt: number | null;
}

export const perf: Perf = {
  longestStallMs: 0,
  longestRenderMs: 0,
  longestStallAt: 0,
  events: 0,
  firstEventAt: null,
  lastEventAt: null,
};

let watching = false;

/** Starts watching the main thread (idempotent). */
export function watchMainThread() {
  if (watching || typeof window === "undefined") return;
  watching = true;
  (window as unknown as { __finetunePerf: Perf }).__finetunePerf = perf;
  let due = performance.now() + 10;
  setInterval(() => {
    const now = performance.now();
    if (now - due > perf.longestStallMs) {
      perf.longestStallMs = now - due;
      perf.longestStallAt = now - (perf.firstEventAt ?? now);
    }
    due = now + 10;
  }, 10);
}

/** Counts a training event; the first one starts the stall measurement
 * afresh, so it covers training only (not loading the page). */
export function countEvent() {
  const now = performance.now();
  if (perf.events === 0) {
    perf.longestStallMs = 0;
    perf.longestRenderMs = 0;
  }
  perf.events += 1;
  perf.firstEventAt ??= now;
  perf.lastEventAt = now;
}

/** Times a redraw: call before changing the state it draws; the time runs
 * until the next task, after the DOM update and drawing that follow. */
export function timeRender() {
  const start = performance.now();
  setTimeout(() => {
    perf.longestRenderMs = Math.max(perf.longestRenderMs, performance.now() - start);
  }, 0);
}
