import { afterEach, describe, expect, it } from "vitest";
import { mount, unmount } from "svelte";
import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";
import type { Channel } from "@tauri-apps/api/core";
import TrainPanel from "../../src/lib/TrainPanel.svelte";
import { alignedValidation, apply, EMA_ALPHA, initialView } from "../../src/lib/training";
import type { TrainEvent } from "../../src/lib/api";
import { started, step } from "./fixtures";
import { feed, settle } from "./dom";



describe("training view", () => {
  it("folds events into chart series with an EMA", () => {
    let v = apply(initialView(), started);
    v = apply(v, step(1, 4));
    v = apply(v, step(2, 2));
    v = apply(v, { event: "eval", step: 2, val_loss: 3, best: true });
    expect(v.phase).toBe("running");
    expect(v.steps).toEqual([1, 2]);
    expect(v.losses).toEqual([4, 2]);
    expect(v.smoothed[0]).toBe(4);
    expect(v.smoothed[1]).toBeCloseTo(4 + EMA_ALPHA * (2 - 4));
    expect(alignedValidation(v)).toEqual([null, 3]);
    expect(v.learningRates).toEqual([1e-4, 1e-4]);
    expect(v.tokenRates).toEqual([50, 50]);
    expect(v.bestVal).toBe(3);
    expect(apply(v, { event: "failed", error: "boom" })).toMatchObject({ phase: "failed", message: "boom" });
  });
});

/** Feeds messages to a Channel the way the Tauri runtime does. */
describe("TrainPanel", () => {
  let app: ReturnType<typeof mount> | undefined;
  afterEach(() => {
    if (app) unmount(app);
    clearMocks();
    document.body.innerHTML = "";
  });

  it("starts a run and shows streamed progress and the summary", async () => {
    const calls: { cmd: string; args: Record<string, unknown> }[] = [];
    mockIPC((cmd, args) => {
      calls.push({ cmd, args: args as Record<string, unknown> });
      if (cmd === "start_training") {
        const channel = (args as { onEvent: Channel<TrainEvent> }).onEvent;
        setTimeout(() => feed(channel, [started, step(1, 3.5), step(2, 3.0)]), 0);
        return "20261127-run";
      }
      if (cmd === "pause_training") return null;
      throw new Error(`unexpected ${cmd}`);
    });
    app = mount(TrainPanel, { target: document.body });
    (document.querySelector('[data-testid="start"]') as HTMLButtonElement).click();
    await settle();

    const request = calls[0].args.request as Record<string, unknown>;
    expect(calls[0].cmd).toBe("start_training");
    expect(request).toMatchObject({ iters: 100, lora_rank: 8, model: null, data: null, optimizer: null, full: false });
    // Steps are drawn at most four times a second: `started` at once, the
    // two steps together a moment later.
    expect(document.querySelector('[data-testid="train-status"]')?.textContent).toContain("step 0/3");
    await new Promise((r) => setTimeout(r, 300));
    await settle();
    const status = document.querySelector('[data-testid="train-status"]')?.textContent ?? "";
    expect(status).toContain("step 2/3");
    expect(status).toContain("loss 3.0000");
    expect(status).toContain("20261127-run");
    expect(document.querySelector('[data-testid="loss-chart"]')?.getAttribute("data-points")).toBe("2");
    expect(document.querySelector('[data-testid="rate-chart"]')?.getAttribute("data-points")).toBe("2");
    expect(document.querySelector('[data-testid="memory-gauge"]')?.textContent).toContain("2.0 GiB");
    expect((document.querySelector('[data-testid="start"]') as HTMLButtonElement).disabled).toBe(true);

    (document.querySelector('[data-testid="pause"]') as HTMLButtonElement).click();
    await settle();
    expect(calls.map((c) => c.cmd)).toContain("pause_training");
    expect(document.querySelector('[data-testid="resume"]')).not.toBeNull();
  });

  it("stops on Escape only from the training controls", async () => {
    const calls: string[] = [];
    mockIPC((cmd, args) => {
      calls.push(cmd);
      if (cmd === "start_training") {
        const channel = (args as { onEvent: Channel<TrainEvent> }).onEvent;
        setTimeout(() => feed(channel, [started, step(1, 3.5)]), 0);
        return "20261127-run";
      }
      return null;
    });
    const outside = document.createElement("input");
    document.body.appendChild(outside);
    app = mount(TrainPanel, { target: document.body });
    (document.querySelector('[data-testid="start"]') as HTMLButtonElement).click();
    await settle();
    outside.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
    await settle();
    expect(calls).not.toContain("stop_training");
    const pause = document.querySelector('[data-testid="pause"]') as HTMLButtonElement;
    pause.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
    await settle();
    expect(calls).toContain("stop_training");
  });

  it("shows the engine's error when a run cannot start", async () => {
    mockIPC((cmd) => {
      if (cmd === "start_training") throw { kind: "engine", message: "train.jsonl:3: malformed JSON" };
      return null;
    });
    app = mount(TrainPanel, { target: document.body });
    (document.querySelector('[data-testid="start"]') as HTMLButtonElement).click();
    await settle();
    expect(document.querySelector('[role="alert"]')?.textContent).toContain("train.jsonl:3");
  });
});
