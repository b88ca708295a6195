// Preference training (DPO / IPO / ORPO) in the window: the dataset's pairs,
// the method following the data, what Start sends, and the rewards and
// preference charts, which only preference runs have.
import { afterEach, describe, expect, it } from "vitest";
import { mount, tick, unmount } from "svelte";
import { clearMocks, mockIPC, mockWindows } from "@tauri-apps/api/mocks";
import { emit } from "@tauri-apps/api/event";
// Loaded before the app mounts: the app imports it lazily for its drop
// listener, and a cold import can outlast settle() on a loaded machine.
import "@tauri-apps/api/webview";
import type { Channel } from "@tauri-apps/api/core";
import App from "../../src/App.svelte";
import DatasetPanel from "../../src/lib/DatasetPanel.svelte";
import TemplatePanel from "../../src/lib/TemplatePanel.svelte";
import TrainPanel from "../../src/lib/TrainPanel.svelte";
import { selection } from "../../src/lib/selection.svelte";
import {
  apply,
  formatAccuracy,
  formatMetric,
  hasPreference,
  initialView,
  preferenceSeries,
} from "../../src/lib/training";
import type { DatasetReport, DatasetStats, TrainEvent } from "../../src/lib/api";
import { prefStep, run, started, startedDpo, step } from "./fixtures";
import { $, all, feed, settle, text } from "./dom";

function stats(records: number, trained: number, mean: number): DatasetStats {
  return {
    records,
    total_tokens: records * mean,
    trained_tokens: trained,
    truncated: 1,
    min_length: 10,
    max_length: 90,
    mean_length: mean,
    length_histogram: [[128, records]],
  };
}

/** A preference set of 1,234 pairs, two of them previewed. */
const pairsReport: DatasetReport = {
  file: "/data/prefs.jsonl",
  valid_file: null,
  stats: stats(2468, 24680, 40),
  chat_records: 2468,
  skipped_empty: 0,
  skipped: [],
  template: "chatml",
  warnings: [],
  previews: [
    [["<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n", false], ["Paris.<|im_end|>\n", true]],
    [["<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n", false], ["Lyon.<|im_end|>\n", true]],
    [["<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n", false], ["4<|im_end|>\n", true]],
    [["<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n", false], ["5<|im_end|>\n", true]],
  ],
  pairs: 1234,
  chosen_stats: stats(1234, 12340, 42),
  rejected_stats: stats(1234, 12340, 38),
};

/** Ordinary (SFT) data, as the engine reports it now. */
const sftReport: DatasetReport = {
  ...pairsReport,
  file: "/data/chats.jsonl",
  stats: stats(120, 3000, 75),
  chat_records: 120,
  previews: [[["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", false], ["hello<|im_end|>\n", true]]],
  pairs: 0,
  chosen_stats: null,
  rejected_stats: null,
};

/** Past the Train panel's redraw interval (250 ms). */
async function redrawn() {
  await new Promise((r) => setTimeout(r, 300));
  await settle();
}

const option = (value: string) => $<HTMLSelectElement>("train-method")!.querySelector<HTMLOptionElement>(`option[value="${value}"]`)!;

/** A DPO run: `started`, three steps, and an evaluation of the held-out pairs. */
const dpoRun: TrainEvent[] = [
  startedDpo,
  prefStep(1, Math.LN2, 0, 0),
  prefStep(2, 0.65, 0.5, 0.12),
  prefStep(3, 0.6, 0.75, 0.42),
  {
    event: "eval",
    step: 3,
    val_loss: 0.66,
    best: true,
    preference: { chosen_reward: 0.1, rejected_reward: -0.2, margin: 0.3, accuracy: 0.5, pairs: 4 },
  },
];

describe("preference view", () => {
  it("folds the pairs' figures of steps and evaluations into chart series", () => {
    let v = initialView();
    for (const e of dpoRun) v = apply(v, e);
    expect(v.method).toBe("dpo");
    expect(v.trainExamples).toBe(20);
    expect(v.validExamples).toBe(4);
    expect(hasPreference(v)).toBe(true);
    expect(v.prefSteps).toEqual([1, 2, 3]);
    expect(v.margins).toEqual([0, 0.12, 0.42]);
    expect(v.chosenRewards).toEqual([0, 0.06, 0.21]);
    expect(v.rejectedRewards).toEqual([-0, -0.06, -0.21]);
    expect(v.accuracies).toEqual([0, 0.5, 0.75]);
    expect(v.preference).toMatchObject({ accuracy: 0.75, margin: 0.42 });
    expect(v.evalPreference).toMatchObject({ step: 3, accuracy: 0.5, pairs: 4 });
    // The loss chart's series are as for any run.
    expect(v.losses[0]).toBeCloseTo(0.693, 3);
    expect(v.valLosses).toEqual([0.66]);
    expect(preferenceSeries(v)).toEqual([[1, 2, 3], [0, 50, 75], [0, 0.12, 0.42], [null, null, 50]]);
  });

  it("puts an evaluation between reported steps on the preference chart's axis", () => {
    let v = apply(initialView(), startedDpo);
    v = apply(v, prefStep(2, 0.6, 0.5, 0.1));
    v = apply(v, { event: "eval", step: 3, val_loss: 0.6, best: true, preference: { chosen_reward: 0, rejected_reward: 0, margin: 0, accuracy: 1, pairs: 4 } });
    v = apply(v, prefStep(4, 0.5, 1, 0.2));
    expect(preferenceSeries(v)).toEqual([[2, 3, 4], [50, null, 100], [0.1, null, 0.2], [null, 100, null]]);
  });

  it("an SFT run has no preference figures", () => {
    let v = apply(initialView(), started);
    v = apply(v, step(1, 3));
    v = apply(v, { event: "eval", step: 1, val_loss: 3, best: true });
    expect(v.method).toBe("sft");
    expect(hasPreference(v)).toBe(false);
    expect(v.prefSteps).toEqual([]);
    expect(v.preference).toBeNull();
    expect(v.evalPreference).toBeNull();
  });

  it("formats rewards, margins and accuracies for reading", () => {
    expect(formatAccuracy(0.75)).toBe("75 %");
    expect(formatAccuracy(1)).toBe("100 %");
    expect(formatMetric(0.4213)).toBe("0.42");
    expect(formatMetric(0.0012)).toBe("0.0012");
    expect(formatMetric(-0.25)).toBe("-0.25");
    expect(formatMetric(12.345)).toBe("12.35");
    expect(formatMetric(0)).toBe("0.00");
  });
});

describe("preference data in the panels", () => {
  let app: ReturnType<typeof mount> | undefined;
  afterEach(() => {
    if (app) unmount(app);
    app = undefined;
    clearMocks();
    document.body.innerHTML = "";
  });

  it("the dataset panel counts the pairs, shows each side's lengths and labels the previews", async () => {
    mockIPC((cmd) => {
      if (cmd === "inspect_dataset") return pairsReport;
      throw new Error(`unexpected ${cmd}`);
    });
    app = mount(DatasetPanel, { target: document.body, props: { onReport: () => {} } });
    await settle();
    expect(text("dataset-pairs")).toBe("1,234 preference pairs (chosen / rejected)");
    // The count of records is the pairs' (not both sides' 2,468).
    expect(text("data-records")).toContain("1,234 preference pairs");
    expect(text("data-records")).not.toContain("2,468");
    expect(text("dataset-chosen-stats")).toContain("mean 42.0");
    expect(text("dataset-rejected-stats")).toContain("mean 38.0");
    expect(text("dataset-chosen-stats")).toContain("answers 10.0 trained tokens");
    const chosen = all("preview-chosen");
    const rejected = all("preview-rejected");
    expect(chosen).toHaveLength(2);
    expect(rejected).toHaveLength(2);
    expect(chosen[0].querySelector("figcaption")?.textContent).toBe("Pair 1 · chosen");
    expect(rejected[1].querySelector("figcaption")?.textContent).toBe("Pair 2 · rejected");
    expect(chosen[0].querySelector("mark")?.textContent).toBe("Paris.<|im_end|>\n");
    expect(rejected[0].querySelector("mark")?.textContent).toBe("Lyon.<|im_end|>\n");
    expect(all("preview-pair")[1].textContent).toContain("2+2?");
    expect($("dataset-length-bias")).toBeNull();
  });

  it("warns when the chosen answers are much longer than the rejected ones", async () => {
    mockIPC(() => ({ ...pairsReport, chosen_stats: stats(1234, 40_000, 60), rejected_stats: stats(1234, 10_000, 30) }));
    app = mount(DatasetPanel, { target: document.body, props: { onReport: () => {} } });
    await settle();
    expect(text("dataset-length-bias")).toContain("4.0× as long as rejected ones");
  });

  it("ordinary data looks as before: examples, no pairs", async () => {
    mockIPC(() => sftReport);
    app = mount(DatasetPanel, { target: document.body, props: { onReport: () => {} } });
    await settle();
    expect(text("data-records")).toContain("120");
    for (const id of ["dataset-pairs", "dataset-chosen-stats", "preview-chosen", "preview-rejected"]) {
      expect($(id), id).toBeNull();
    }
  });

  it("the template panel labels each preview with its pair and side", async () => {
    mockIPC(() => [{ name: "model" }]);
    app = mount(TemplatePanel, { target: document.body, props: { report: pairsReport } });
    await settle();
    expect(all("template-preview")).toHaveLength(4);
    expect(all("template-preview-side").map((e) => e.textContent)).toEqual([
      "Pair 1 · chosen",
      "Pair 1 · rejected",
      "Pair 2 · chosen",
      "Pair 2 · rejected",
    ]);
    unmount(app);
    app = mount(TemplatePanel, { target: document.body, props: { report: sftReport } });
    await settle();
    expect(all("template-preview-side")).toHaveLength(0);
  });
});

describe("the Train panel's method", () => {
  let app: ReturnType<typeof mount> | undefined;
  afterEach(() => {
    if (app) unmount(app);
    app = undefined;
    clearMocks();
    document.body.innerHTML = "";
  });

  /** A backend whose runs stream `events`; records start and plan requests. */
  function backend(events: TrainEvent[]) {
    const calls: { cmd: string; request: Record<string, unknown> }[] = [];
    mockIPC((cmd, args) => {
      const a = args as { request: Record<string, unknown>; onEvent: Channel<TrainEvent> };
      if (cmd === "start_training") {
        calls.push({ cmd, request: a.request });
        setTimeout(() => feed(a.onEvent, events), 0);
        return "20261127-dpo";
      }
      if (cmd === "plan_training") {
        calls.push({ cmd, request: a.request });
        throw { kind: "engine", message: "no plan in this test" };
      }
      throw new Error(`unexpected ${cmd}`);
    });
    return calls;
  }

  it("preference pairs switch it to DPO, offer β, and Start sends both", async () => {
    const calls = backend(dpoRun);
    app = mount(TrainPanel, { target: document.body, props: { dataset: pairsReport } });
    await settle();
    const select = $<HTMLSelectElement>("train-method")!;
    expect(select.value).toBe("dpo");
    expect([...select.options].map((o) => o.value)).toEqual(["sft", "dpo", "ipo", "orpo", "grpo"]);
    expect([...select.options].map((o) => o.textContent?.split(" — ")[0])).toEqual(["SFT", "DPO", "IPO", "ORPO", "GRPO"]);
    // SFT does not fit the data, and says why.
    expect(option("sft").disabled).toBe(true);
    expect(option("sft").title).toContain("preference pairs");
    for (const m of ["dpo", "ipo", "orpo"]) expect(option(m).disabled, m).toBe(false);
    expect(text("train-method-note")).toContain("Direct Preference Optimization");
    const beta = $<HTMLInputElement>("train-beta")!;
    expect(beta.value).toBe("0.1");
    expect(beta.closest("label")?.textContent).toContain("β");

    // The estimate is asked for the method that fits.
    await new Promise((r) => setTimeout(r, 450));
    expect(calls.filter((c) => c.cmd === "plan_training").at(-1)?.request).toMatchObject({ method: "dpo", beta: 0.1 });
    $<HTMLButtonElement>("start")!.click();
    await settle();
    const start = calls.find((c) => c.cmd === "start_training")!;
    expect(start.request).toMatchObject({ method: "dpo", beta: 0.1 });
  });

  it("a changed β goes into the request", async () => {
    const calls = backend(dpoRun);
    app = mount(TrainPanel, { target: document.body, props: { dataset: pairsReport } });
    await settle();
    const beta = $<HTMLInputElement>("train-beta")!;
    beta.value = "0.25";
    beta.dispatchEvent(new Event("input", { bubbles: true }));
    await settle();
    $<HTMLButtonElement>("start")!.click();
    await settle();
    expect(calls.find((c) => c.cmd === "start_training")?.request).toMatchObject({ method: "dpo", beta: 0.25 });
  });

  it("ordinary data keeps SFT, with the preference methods off and no β", async () => {
    const calls = backend([started, step(1, 3)]);
    app = mount(TrainPanel, { target: document.body, props: { dataset: sftReport } });
    await settle();
    expect($<HTMLSelectElement>("train-method")!.value).toBe("sft");
    expect(option("sft").disabled).toBe(false);
    for (const m of ["dpo", "ipo", "orpo"]) {
      expect(option(m).disabled, m).toBe(true);
      expect(option(m).title, m).toContain("Needs preference pairs");
    }
    expect($("train-beta")).toBeNull();
    $<HTMLButtonElement>("start")!.click();
    await settle();
    const request = calls.find((c) => c.cmd === "start_training")!.request;
    expect(request.method).toBe("sft");
    expect("beta" in request).toBe(false);
  });

  it("IPO or ORPO may be picked instead; ORPO's weight is λ", async () => {
    const calls = backend(dpoRun);
    app = mount(TrainPanel, { target: document.body, props: { dataset: pairsReport } });
    await settle();
    const select = $<HTMLSelectElement>("train-method")!;
    select.value = "orpo";
    select.dispatchEvent(new Event("change", { bubbles: true }));
    await settle();
    expect(select.value).toBe("orpo");
    expect($("train-beta")?.closest("label")?.textContent).toContain("λ");
    expect(text("train-method-note")).toContain("no reference model");
    $<HTMLButtonElement>("start")!.click();
    await settle();
    expect(calls.find((c) => c.cmd === "start_training")?.request).toMatchObject({ method: "orpo", beta: 0.1 });
  });

  it("with no report yet every method is offered", async () => {
    backend([]);
    app = mount(TrainPanel, { target: document.body });
    await settle();
    expect($<HTMLSelectElement>("train-method")!.value).toBe("sft");
    for (const m of ["sft", "dpo", "ipo", "orpo"]) expect(option(m).disabled, m).toBe(false);
  });

  it("a preference run draws the rewards and preference charts and the latest figures", async () => {
    backend(dpoRun);
    app = mount(TrainPanel, { target: document.body, props: { dataset: pairsReport } });
    await settle();
    $<HTMLButtonElement>("start")!.click();
    await settle();
    await redrawn();
    expect($("chart-rewards")?.getAttribute("data-points")).toBe("3");
    expect($("chart-preference")?.getAttribute("data-points")).toBe("3");
    expect($("loss-chart")?.getAttribute("data-points")).toBe("3");
    // Beside each other, under their names.
    const captions = [...document.querySelectorAll(".pref-charts figcaption")].map((c) => c.textContent);
    expect(captions).toEqual(["Rewards", "Preference"]);
    expect(text("preference-latest")).toContain("accuracy 75 % · margin 0.42");
    expect(text("preference-latest")).toContain("chosen 0.21, rejected -0.21");
    expect(text("preference-eval")).toContain("held-out (4 pairs, step 3): accuracy 50 % · margin 0.30");
    expect(text("train-status")).toContain("DPO");
    expect(document.body.textContent).toContain("%) on 20 preference pairs (4 held out)");
  });

  it("an SFT run looks as before: no preference charts or figures", async () => {
    backend([started, step(1, 3.5), step(2, 3.0), { event: "eval", step: 2, val_loss: 3.1, best: true }]);
    app = mount(TrainPanel, { target: document.body, props: { dataset: sftReport } });
    await settle();
    $<HTMLButtonElement>("start")!.click();
    await settle();
    await redrawn();
    expect($("loss-chart")?.getAttribute("data-points")).toBe("2");
    expect($("rate-chart")?.getAttribute("data-points")).toBe("2");
    for (const id of ["chart-rewards", "chart-preference", "preference-latest", "preference-eval"]) {
      expect($(id), id).toBeNull();
    }
    expect(text("train-status")).not.toContain("SFT");
  });

  it("the charts appear with the first preference figures even without a method in `started`", async () => {
    const { method: _, ...plain } = startedDpo as Extract<TrainEvent, { event: "started" }>;
    void _;
    backend([plain, prefStep(1, Math.LN2, 0, 0)]);
    app = mount(TrainPanel, { target: document.body });
    await settle();
    $<HTMLButtonElement>("start")!.click();
    await settle();
    expect($("chart-rewards")).toBeNull();
    await redrawn();
    expect($("chart-rewards")?.getAttribute("data-points")).toBe("1");
    expect(text("preference-latest")).toContain("accuracy 0 % · margin 0.00");
  });

  it("the engine's refusal of a method that does not fit is shown", async () => {
    mockIPC((cmd) => {
      if (cmd === "start_training") throw { kind: "engine", message: "method dpo needs preference pairs (prompt, chosen, rejected)" };
      return null;
    });
    app = mount(TrainPanel, { target: document.body, props: { dataset: pairsReport } });
    await settle();
    $<HTMLButtonElement>("start")!.click();
    await settle();
    expect(document.querySelector('[role="alert"]')?.textContent).toContain("needs preference pairs");
  });
});

describe("preference data in the window", () => {
  let app: ReturnType<typeof mount> | undefined;
  afterEach(() => {
    if (app) unmount(app);
    app = undefined;
    clearMocks();
    document.body.innerHTML = "";
    selection.data = null;
  });

  it("a dropped preference file is named as pairs, and the next run is DPO; ordinary data turns it back to SFT", async () => {
    const starts: Record<string, unknown>[] = [];
    mockIPC(
      (cmd, raw) => {
        const args = (raw ?? {}) as Record<string, unknown>;
        switch (cmd) {
          case "default_files":
            return [{ label: "Dataset", path: "/cache/sample/train.jsonl", present: true, size_bytes: 1000 }];
          case "list_runs":
            return [run];
          case "list_templates":
            return [{ name: "model" }];
          case "model_info":
            throw { kind: "engine", message: "no model in this test" };
          case "inspect_dataset": {
            const data = (args.request as { data: string | null }).data;
            return data?.includes("prefs") ? { ...pairsReport, file: data } : { ...sftReport, file: data ?? "/cache/sample/train.jsonl" };
          }
          case "plan_training":
            throw { kind: "engine", message: "no plan in this test" };
          case "classify_path":
            return "dataset";
          case "start_training": {
            starts.push(args.request as Record<string, unknown>);
            const channel = args.onEvent as Channel<TrainEvent>;
            setTimeout(() => feed(channel, dpoRun), 0);
            return "20261127-dpo";
          }
        }
        return null;
      },
      { shouldMockEvents: true },
    );
    mockWindows("main");
    app = mount(App, { target: document.body });
    await settle();
    expect($<HTMLSelectElement>("train-method")!.value).toBe("sft");
    expect($("summary-pairs")).toBeNull();

    await emit("tauri://drag-drop", { paths: ["/home/me/prefs.jsonl"], position: { x: 10, y: 10 } });
    await settle();
    expect(text("dataset-pairs")).toContain("1,234 preference pairs");
    expect(text("summary-pairs")).toContain("1,234 preference pairs");
    expect($<HTMLSelectElement>("train-method")!.value).toBe("dpo");
    $<HTMLButtonElement>("nav-train")!.click();
    await tick();
    $<HTMLButtonElement>("start")!.click();
    await settle();
    expect(starts.at(-1)).toMatchObject({ data: "/home/me/prefs.jsonl", method: "dpo", beta: 0.1 });
    await redrawn();
    expect($("chart-rewards")).not.toBeNull();
    expect(text("nav-hint-train")).toContain("3/6");

    await emit("tauri://drag-drop", { paths: ["/home/me/chats.jsonl"], position: { x: 10, y: 10 } });
    await settle();
    expect($("summary-pairs")).toBeNull();
    expect($<HTMLSelectElement>("train-method")!.value).toBe("sft");
    expect($("train-beta")).toBeNull();
  });
});
