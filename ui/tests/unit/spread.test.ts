// A run spread over the machines of a hostfile: the file is checked and its
// ranks listed as it is named, Start sends it, and the ranks' states are
// shown while the charts stay rank 0's.
import { afterEach, describe, expect, it } from "vitest";
import { mount, unmount } from "svelte";
import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";
import type { Channel } from "@tauri-apps/api/core";
import TrainPanel from "../../src/lib/TrainPanel.svelte";
import { apply, initialView } from "../../src/lib/training";
import type { HostStatus, TrainEvent } from "../../src/lib/api";
import { started, step } from "./fixtures";
import { $, feed, settle, text } from "./dom";

const hosts = (...states: [string, HostStatus["state"], string?][]): TrainEvent => ({
  event: "hosts",
  hosts: states.map(([host, state, message], rank) => ({ rank, host, state, ...(message ? { message } : {}) })),
});

describe("spread runs' view", () => {
  it("keeps the ranks reported before rank 0 started, and follows them after it finished", () => {
    let v = initialView();
    const events: TrainEvent[] = [
      hosts(["127.0.0.1 (this machine)", "starting"], ["beta", "starting"]),
      started,
      hosts(["127.0.0.1 (this machine)", "training"], ["beta", "training"]),
      step(1, 2.5),
      { event: "finished", summary: { steps: 1, final_loss: 2.5, best_val_loss: null, trained_tokens: 100, seconds: 2, tokens_per_second: 50, peak_memory_bytes: 1, adapter_dir: "/a" } },
      hosts(["127.0.0.1 (this machine)", "finished"], ["beta", "finished"]),
    ];
    v = apply(v, events[0]);
    v = apply(v, events[1]);
    expect(v.hosts.map((h) => h.state)).toEqual(["starting", "starting"]);
    for (const e of events.slice(2)) v = apply(v, e);
    expect(v.phase).toBe("finished");
    expect(v.hosts.map((h) => h.state)).toEqual(["finished", "finished"]);
    expect(v.steps).toEqual([1]);
  });
});

describe("the hostfile setting", () => {
  let app: ReturnType<typeof mount> | undefined;
  afterEach(() => {
    if (app) unmount(app);
    app = undefined;
    clearMocks();
    document.body.innerHTML = "";
  });

  function backend(events: TrainEvent[]) {
    const calls: { cmd: string; args: Record<string, unknown> }[] = [];
    mockIPC((cmd, args) => {
      const a = args as Record<string, unknown>;
      calls.push({ cmd, args: a });
      if (cmd === "read_hostfile") {
        if (a.path === "/etc/bad.json") throw "/etc/bad.json: entry 2 (b): \"ten\" is not an IP address";
        return [
          { rank: 0, host: "192.168.1.10", this_machine: true },
          { rank: 1, host: "beta", this_machine: false },
        ];
      }
      if (cmd === "start_training") {
        setTimeout(() => feed(a.onEvent as Channel<TrainEvent>, events), 0);
        return "20261206-spread";
      }
      return null;
    });
    return calls;
  }

  function name(path: string) {
    const el = $<HTMLInputElement>("hostfile")!;
    el.value = path;
    el.dispatchEvent(new Event("change", { bubbles: true }));
  }

  it("checks the file, lists its ranks, and Start sends it; the ranks' states follow the run", async () => {
    const failure = "rank 1 on beta exited with code 2: error: /data/train.jsonl: no such file";
    const calls = backend([
      hosts(["192.168.1.10 (this machine)", "starting"], ["beta", "starting"]),
      started,
      hosts(["192.168.1.10 (this machine)", "training"], ["beta", "training"]),
      step(1, 2.5),
      hosts(["192.168.1.10 (this machine)", "stopped"], ["beta", "failed", failure]),
      { event: "failed", error: `${failure}; the other ranks were stopped` },
    ]);
    app = mount(TrainPanel, { target: document.body, props: {} });
    await settle();
    expect($("hosts")).toBeNull();
    name("/etc/bad.json");
    await settle();
    expect(text("hostfile-error")).toContain("entry 2 (b)");
    name("/etc/ft-hosts.json");
    await settle();
    expect($("hostfile-error")).toBeNull();
    expect(text("hostfile-ranks")).toBe("2 ranks, data parallel: 0 on 192.168.1.10 (here) · 1 on beta");
    $<HTMLButtonElement>("start")!.click();
    await settle();
    const start = calls.find((c) => c.cmd === "start_training")!;
    expect((start.args.request as Record<string, unknown>).hosts).toBe("/etc/ft-hosts.json");
    const cells = (rank: number) => [...$(`host-${rank}`)!.querySelectorAll("td")].map((td) => td.textContent);
    expect(cells(0)).toEqual(["0", "192.168.1.10 (this machine)", "stopped"]);
    expect(cells(1)).toEqual(["1", "beta", `failed: ${failure}`]);
    expect($("host-1")!.className).toContain("failed");
    expect(text("train-message")).toContain("the other ranks were stopped");
  });

  it("an emptied setting trains here alone", async () => {
    const calls = backend([started, step(1, 2.5)]);
    app = mount(TrainPanel, { target: document.body, props: {} });
    await settle();
    name("/etc/ft-hosts.json");
    await settle();
    name("  ");
    await settle();
    expect($("hostfile-ranks")).toBeNull();
    $<HTMLButtonElement>("start")!.click();
    await settle();
    const start = calls.find((c) => c.cmd === "start_training")!;
    expect((start.args.request as Record<string, unknown>).hosts).toBeNull();
    expect($("hosts")).toBeNull();
  });
});
