// What the component tests share: waiting for the UI to settle, feeding a
// Tauri channel, and finding elements by their data-testid.
import { tick } from "svelte";
import type { Channel } from "@tauri-apps/api/core";

/** Lets pending promises, timers of 0 ms and Svelte's updates run. */
export async function settle() {
  for (let i = 0; i < 8; i++) {
    await new Promise((r) => setTimeout(r, 0));
    await tick();
  }
}

/** Delivers `messages` on `channel`, in order, as the backend would. */
export function feed<T>(channel: Channel<T>, messages: T[]) {
  const internals = (window as unknown as { __TAURI_INTERNALS__: { runCallback: (id: number, d: unknown) => void } })
    .__TAURI_INTERNALS__;
  messages.forEach((message, index) => internals.runCallback(channel.id, { index, message }));
}

export const $ = <T extends Element = HTMLElement>(testid: string) => document.querySelector<T>(`[data-testid="${testid}"]`);
export const all = (testid: string) => [...document.querySelectorAll<HTMLElement>(`[data-testid="${testid}"]`)];
export const text = (testid: string) => $(testid)?.textContent ?? "";

/** Types `value` into the `index`th element of `testid` (a select: picks it). */
export function input(testid: string, value: string, index = 0) {
  const el = all(testid)[index] as HTMLInputElement | HTMLSelectElement;
  el.value = value;
  el.dispatchEvent(new Event(el instanceof HTMLSelectElement ? "change" : "input", { bubbles: true }));
}
