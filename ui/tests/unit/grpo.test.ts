// GRPO in the window: prompt-only data named as prompts, the method
// following the data, the sampling and reward settings Start sends, and the
// reward chart and figures only GRPO runs have.
import { afterEach, describe, expect, it } from "vitest";
import { mount, unmount } from "svelte";
import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";
import type { Channel } from "@tauri-apps/api/core";
import DatasetPanel from "../../src/lib/DatasetPanel.svelte";
import TrainPanel from "../../src/lib/TrainPanel.svelte";
import { apply, grpoSeries, hasGrpo, hasPreference, initialView } from "../../src/lib/training";
import type { DatasetReport, GrpoMetrics, TrainEvent } from "../../src/lib/api";
import { started, step } from "./fixtures";
import { $, all, feed, input, settle, text } from "./dom";

/** 500 prompts, 480 with a reference answer, two previewed. */
const promptsReport: DatasetReport = {
  file: "/data/gsm8k.jsonl",
  valid_file: null,
  stats: {
    records: 500,
    total_tokens: 30000,
    trained_tokens: 0,
    truncated: 0,
    min_length: 20,
    max_length: 140,
    mean_length: 60,
    length_histogram: [[64, 300], [128, 190], [256, 10]],
  },
  chat_records: 500,
  skipped_empty: 0,
  skipped: [],
  template: "chatml",
  warnings: [],
  previews: [
    [["<|im_start|>user\nWhat is 6 times 7?<|im_end|>\n<|im_start|>assistant\n", false]],
    [["<|im_start|>user\nName a prime.<|im_end|>\n<|im_start|>assistant\n", false]],
  ],
  pairs: 0,
  prompts: 500,
  prompt_answers: 480,
  answers: ["#### 42", null],
  too_long: 3,
};

const noAnswers: DatasetReport = { ...promptsReport, prompt_answers: 0, answers: [null, null] };

/** Ordinary SFT data. */
const sftReport: DatasetReport = {
  ...promptsReport,
  file: "/data/chats.jsonl",
  stats: { ...promptsReport.stats, trained_tokens: 9000 },
  previews: [[["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", false], ["hello<|im_end|>\n", true]]],
  prompts: 0,
  prompt_answers: 0,
  answers: [],
  too_long: 0,
};

function metrics(mean: number, kl: number | null, completions = 8): GrpoMetrics {
  return {
    reward_mean: mean,
    reward_std: 0.4,
    rewards: [["exact_match", mean]],
    kl,
    completion_length: 31.5,
    clipped_fraction: 0.25,
    completions,
    generation_seconds: 1.5,
  };
}

const startedGrpo: TrainEvent = {
  ...(started as Extract<TrainEvent, { event: "started" }>),
  train_examples: 450,
  valid_examples: 50,
  method: "grpo",
};

const grpoStep = (n: number, mean: number, kl: number | null): TrainEvent => ({
  ...(step(n, 0.01 * n) as Extract<TrainEvent, { event: "step" }>),
  grpo: metrics(mean, kl),
});

/** Three steps, an evaluation at step 2 (val_loss is the negated reward). */
const grpoRun: TrainEvent[] = [
  startedGrpo,
  grpoStep(1, 0.25, 0),
  grpoStep(2, 0.5, 0.001),
  { event: "eval", step: 2, val_loss: -0.4, best: true, grpo: { ...metrics(0.4, null, 50), clipped_fraction: 0 } },
  grpoStep(3, 0.75, 0.003),
];

const option = (value: string) => $<HTMLSelectElement>("train-method")!.querySelector<HTMLOptionElement>(`option[value="${value}"]`)!;

describe("GRPO view", () => {
  it("folds the completions' figures into the reward chart, and keeps evaluations off the loss chart", () => {
    let v = initialView();
    for (const e of grpoRun) v = apply(v, e);
    expect(v.method).toBe("grpo");
    expect(hasGrpo(v)).toBe(true);
    expect(hasPreference(v)).toBe(false);
    expect(v.grpoSteps).toEqual([1, 2, 3]);
    expect(v.rewardMeans).toEqual([0.25, 0.5, 0.75]);
    expect(v.kls).toEqual([0, 0.001, 0.003]);
    expect(v.valRewardSteps).toEqual([2]);
    expect(v.valRewards).toEqual([0.4]);
    expect(v.bestReward).toBe(0.4);
    // The negated reward is not a loss to draw beside the training loss.
    expect(v.valLosses).toEqual([]);
    expect(v.bestVal).toBeNull();
    expect(grpoSeries(v)).toEqual([[1, 2, 3], [0.25, 0.5, 0.75], [null, 0.4, null], [0, 0.001, 0.003]]);
  });

  it("aligns an evaluation that falls on no reported step", () => {
    let v = initialView();
    for (const e of [startedGrpo, grpoStep(2, 0.5, null), { event: "eval", step: 3, val_loss: -1, best: false, grpo: metrics(1, null) } as TrainEvent])
      v = apply(v, e);
    expect(grpoSeries(v)).toEqual([[2, 3], [0.5, null], [null, 1], [null, null]]);
  });
});

describe("prompt-only data", () => {
  let app: ReturnType<typeof mount> | undefined;
  afterEach(() => {
    if (app) unmount(app);
    app = undefined;
    clearMocks();
    document.body.innerHTML = "";
  });

  function backend(events: TrainEvent[]) {
    const calls: { cmd: string; request: Record<string, unknown> }[] = [];
    mockIPC((cmd, args) => {
      const a = args as { request: Record<string, unknown>; onEvent: Channel<TrainEvent> };
      if (cmd === "start_training") {
        calls.push({ cmd, request: a.request });
        setTimeout(() => feed(a.onEvent, events), 0);
        return "20261204-grpo";
      }
      if (cmd === "plan_training") {
        calls.push({ cmd, request: a.request });
        return {
          train_examples: 450,
          valid_examples: 50,
          batch_size: 4,
          steps_per_epoch: 112,
          total_steps: 100,
          trained_tokens_per_epoch: 0,
          trainable_parameters: 1000,
          total_parameters: 100000,
          memory_estimate: { weights: 1, adapters: 1, activations: 1, logits: 1, total: 4 },
          memory_estimate_checkpointed: { weights: 1, adapters: 1, activations: 1, logits: 1, total: 4 },
          available_memory: 2 ** 34,
          warnings: [],
        };
      }
      return null;
    });
    return calls;
  }

  it("the Dataset panel names prompts, their answers, and previews them", async () => {
    mockIPC((cmd) => (cmd === "inspect_dataset" ? promptsReport : null));
    app = mount(DatasetPanel, { target: document.body, props: { onReport: () => {} } });
    await settle();
    expect(text("dataset-prompts")).toBe("500 prompts, 480 with a reference answer");
    expect(text("data-records")).toContain("3 longer than");
    expect(text("data-records")).toContain("GRPO");
    expect(all("preview-prompt")).toHaveLength(2);
    expect(all("preview-prompt")[0].textContent).toContain("What is 6 times 7?");
    expect(all("preview-answer").map((a) => a.textContent)).toEqual(["Reference answer: #### 42", "Reference answer: none"]);
    expect(document.body.textContent).toContain("in the prompts (the answers are sampled");
  });

  it("switch the method to GRPO with exact match, and Start sends the sampling and the rewards", async () => {
    const calls = backend(grpoRun);
    app = mount(TrainPanel, { target: document.body, props: { dataset: promptsReport } });
    await settle();
    expect($<HTMLSelectElement>("train-method")!.value).toBe("grpo");
    for (const m of ["sft", "dpo", "ipo", "orpo"]) {
      expect(option(m).disabled, m).toBe(true);
      expect(option(m).title, m).toContain("train it with GRPO");
    }
    expect(option("grpo").disabled).toBe(false);
    expect(text("train-method-note")).toContain("Group Relative Policy Optimization");
    expect(all("reward-row")).toHaveLength(1);
    expect($<HTMLSelectElement>("reward-kind")!.value).toBe("exact_match");
    expect($("train-beta")).toBeNull();
    await new Promise((r) => setTimeout(r, 450));
    await settle();
    expect(text("memory-estimate")).toContain("450 prompts, 100 steps (batch 4 × 4 answers)");

    input("train-group-size", "8");
    input("train-temperature", "0.7");
    input("reward-pattern", "answer is (\\S+)");
    $<HTMLButtonElement>("reward-add")!.click();
    await settle();
    input("reward-kind", "length", 1);
    await settle();
    input("reward-target", "40");
    input("reward-weight", "0.1", 1);
    await settle();
    $<HTMLButtonElement>("start")!.click();
    await settle();
    const request = calls.find((c) => c.cmd === "start_training")!.request;
    expect(request).toMatchObject({
      method: "grpo",
      group_size: 8,
      max_completion_length: 128,
      temperature: 0.7,
      kl_coef: 0.04,
      rewards: [{ exact_match: { pattern: "answer is (\\S+)", weight: 1 } }, { length: { target: 40, weight: 0.1 } }],
    });
    expect("beta" in request).toBe(false);
  });

  it("without reference answers, no reward is preset and exact match is off", async () => {
    const calls = backend(grpoRun);
    app = mount(TrainPanel, { target: document.body, props: { dataset: noAnswers } });
    await settle();
    expect(all("reward-row")).toHaveLength(0);
    expect(text("rewards-missing")).toContain("no reference answers");
    $<HTMLButtonElement>("reward-add")!.click();
    await settle();
    expect($<HTMLSelectElement>("reward-kind")!.value).toBe("length");
    expect($<HTMLSelectElement>("reward-kind")!.querySelector<HTMLOptionElement>('option[value="exact_match"]')!.disabled).toBe(true);
    $<HTMLButtonElement>("start")!.click();
    await settle();
    expect(calls.find((c) => c.cmd === "start_training")!.request.rewards).toEqual([{ length: { target: 64, weight: 1 } }]);
  });

  it("ordinary data stays SFT, may be trained with GRPO, and SFT requests carry no GRPO settings", async () => {
    const calls = backend([started, step(1, 3)]);
    app = mount(TrainPanel, { target: document.body, props: { dataset: sftReport } });
    await settle();
    expect($<HTMLSelectElement>("train-method")!.value).toBe("sft");
    expect(option("grpo").disabled).toBe(false);
    expect($("train-rewards")).toBeNull();
    $<HTMLButtonElement>("start")!.click();
    await settle();
    const sft = calls.find((c) => c.cmd === "start_training")!.request;
    for (const key of ["group_size", "rewards", "kl_coef", "temperature"]) expect(key in sft, key).toBe(false);
    unmount(app);
    document.body.innerHTML = "";
    const calls2 = backend(grpoRun);
    app = mount(TrainPanel, { target: document.body, props: { dataset: sftReport } });
    await settle();
    input("train-method", "grpo");
    await settle();
    expect($<HTMLSelectElement>("reward-kind")!.value).toBe("exact_match");
    $<HTMLButtonElement>("start")!.click();
    await settle();
    expect(calls2.find((c) => c.cmd === "start_training")!.request).toMatchObject({
      method: "grpo",
      rewards: [{ exact_match: { pattern: null, weight: 1 } }],
    });
  });

  it("a GRPO run draws the reward chart and the latest figures, and no preference charts", async () => {
    backend(grpoRun);
    app = mount(TrainPanel, { target: document.body, props: { dataset: promptsReport } });
    await settle();
    $<HTMLButtonElement>("start")!.click();
    await settle();
    await new Promise((r) => setTimeout(r, 300));
    await settle();
    expect($("chart-grpo")?.getAttribute("data-points")).toBe("3");
    expect($("loss-chart")?.getAttribute("data-points")).toBe("3");
    expect($("chart-rewards")).toBeNull();
    expect($("chart-preference")).toBeNull();
    expect(text("grpo-latest")).toContain("reward 0.75 ± 0.40 · exact_match 0.75 · KL 0.0030 · 31.5 tokens per answer, 25 % cut at the limit · sampling 1.5 s");
    expect(text("grpo-eval")).toContain("held-out (50 prompts, greedy, step 2): reward 0.40 · exact_match 0.40");
    expect(text("train-status")).toContain("GRPO");
    expect(text("train-status")).toContain("best held-out reward 0.40");
    expect(document.body.textContent).toContain("%) on 450 prompts (50 held out)");
  });
});
