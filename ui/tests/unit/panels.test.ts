import { afterEach, describe, expect, it } from "vitest";
import { mount, tick, unmount } from "svelte";
import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";
import type { Channel } from "@tauri-apps/api/core";
import DatasetPanel from "../../src/lib/DatasetPanel.svelte";
import ModelPanel from "../../src/lib/ModelPanel.svelte";
import TemplatePanel from "../../src/lib/TemplatePanel.svelte";
import RunsPanel from "../../src/lib/RunsPanel.svelte";
import ChatPanel from "../../src/lib/ChatPanel.svelte";
import TrainPanel from "../../src/lib/TrainPanel.svelte";
import { overlay } from "../../src/lib/runs";
import { selection } from "../../src/lib/selection.svelte";
import type { DatasetReport, DownloadEvent, ModelInfo, TrainEvent } from "../../src/lib/api";
import { run } from "./fixtures";
import { feed, settle } from "./dom";

const report: DatasetReport = {
  file: "/data/train.jsonl",
  valid_file: "/data/valid.jsonl",
  stats: {
    records: 120,
    total_tokens: 9000,
    trained_tokens: 3000,
    truncated: 2,
    min_length: 20,
    max_length: 300,
    mean_length: 75,
    length_histogram: [
      [32, 10],
      [64, 50],
      [128, 60],
    ],
  },
  chat_records: 120,
  skipped_empty: 1,
  skipped: [{ location: ":7", reason: "the conversation has no assistant message to learn" }],
  template: "chatml",
  warnings: ["template `chatml` uses <|im_start|>, which the model's tokenizer does not know"],
  previews: [
    [
      ["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", false],
      ["hello<|im_end|>\n", true],
    ],
  ],
};


describe("panels", () => {
  let app: ReturnType<typeof mount> | undefined;
  afterEach(() => {
    if (app) unmount(app);
    app = undefined;
    clearMocks();
    document.body.innerHTML = "";
  });

  it("the dataset panel shows statistics, skipped records and the validation file", async () => {
    const requests: unknown[] = [];
    mockIPC((cmd, args) => {
      if (cmd === "inspect_dataset") {
        requests.push((args as { request: unknown }).request);
        return report;
      }
      throw new Error(`unexpected ${cmd}`);
    });
    let seen: DatasetReport | null = null;
    app = mount(DatasetPanel, { target: document.body, props: { onReport: (r: DatasetReport | null) => (seen = r) } });
    await settle();
    const text = document.querySelector('[data-testid="data-stats"]')?.textContent ?? "";
    expect(text).toContain("/data/valid.jsonl");
    expect(document.querySelector('[data-testid="data-records"]')?.textContent).toContain("120");
    expect(document.querySelector('[data-testid="data-skipped"]')?.textContent).toContain("/data/train.jsonl:7");
    expect(seen).toEqual(report);
    // Asking to skip bad records inspects again with that setting.
    selection.skipBadRecords = true;
    await settle();
    expect(requests.at(-1)).toMatchObject({ skip_bad_records: true, preview: 3 });
    selection.skipBadRecords = false;
  });

  it("a hub model downloads with its progress shown, then loads from the cache", async () => {
    const info: ModelInfo = {
      path: "/hf/snapshots/abc",
      architecture: "llama",
      layers: 30,
      hidden_size: 576,
      vocab_size: 49152,
      parameters: 134_515_008,
      quantized_bits: null,
      bytes_on_disk: 538_000_000,
      chat_template: true,
    };
    const infoFor: unknown[] = [];
    let finish: (dir: string) => void = () => {};
    let progress: Channel<DownloadEvent> | undefined;
    mockIPC((cmd, args) => {
      if (cmd === "model_info") {
        infoFor.push((args as { path: string | null }).path);
        return info;
      }
      if (cmd === "download_model") {
        progress = (args as { onProgress: Channel<DownloadEvent> }).onProgress;
        return new Promise<string>((resolve) => (finish = resolve));
      }
      throw new Error(`unexpected ${cmd}`);
    });
    app = mount(ModelPanel, { target: document.body });
    await settle();
    const input = document.querySelector('[data-testid="model-input"]') as HTMLInputElement;
    input.value = "HuggingFaceTB/SmolLM2-135M-Instruct";
    input.dispatchEvent(new Event("input"));
    (input.form as HTMLFormElement).requestSubmit();
    await settle();
    feed(progress!, [
      { event: "started", file: "model.safetensors", bytes: 2_000_000 },
      { event: "progress", bytes: 500_000 },
    ] as DownloadEvent[]);
    await settle();
    const shown = document.querySelector('[data-testid="model-download"]');
    expect(shown?.textContent).toContain("model.safetensors");
    expect((shown?.querySelector("progress") as HTMLProgressElement).value).toBe(500_000);
    finish("/hf/snapshots/abc");
    await settle();
    expect(infoFor.at(-1)).toBe("/hf/snapshots/abc");
    expect(document.querySelector('[data-testid="model-download"]')).toBeNull();
    expect(selection.model).toBe("HuggingFaceTB/SmolLM2-135M-Instruct");
    selection.model = null;
  });

  it("a dataset picked in the native dialog is inspected", async () => {
    const inspected: string[] = [];
    mockIPC((cmd, args) => {
      if (cmd === "plugin:dialog|open") return "/picked/train.jsonl";
      if (cmd === "inspect_dataset") {
        inspected.push((args as { request: { data: string | null } }).request.data ?? "sample");
        return report;
      }
      throw new Error(`unexpected ${cmd}`);
    });
    app = mount(DatasetPanel, { target: document.body, props: { onReport: () => {} } });
    await settle();
    (document.querySelector('[data-testid="data-pick-file"]') as HTMLButtonElement).click();
    await settle();
    expect(inspected.at(-1)).toBe("/picked/train.jsonl");
    selection.data = null;
  });

  it("an older inspection answering last does not replace the newer one", async () => {
    const pending: ((r: DatasetReport) => void)[] = [];
    mockIPC((cmd) => {
      if (cmd === "inspect_dataset") return new Promise<DatasetReport>((resolve) => pending.push(resolve));
      throw new Error(`unexpected ${cmd}`);
    });
    let seen: DatasetReport | null = null;
    app = mount(DatasetPanel, { target: document.body, props: { onReport: (r: DatasetReport | null) => (seen = r) } });
    await settle();
    selection.template = "alpaca";
    await settle();
    expect(pending.length).toBe(2);
    const newer = { ...report, template: "alpaca" };
    pending[1](newer);
    await settle();
    pending[0]({ ...report, template: "chatml" });
    await settle();
    expect(seen).toEqual(newer);
    selection.template = "model";
  });

  it("a dataset error is shown with its line", async () => {
    mockIPC(() => {
      throw { kind: "engine", message: "/data/bad.jsonl:3:9: malformed JSON (expected value)" };
    });
    app = mount(DatasetPanel, { target: document.body, props: { onReport: () => {} } });
    await settle();
    expect(document.querySelector('[data-testid="data-error"]')?.textContent).toContain("bad.jsonl:3:9");
  });

  it("the template panel highlights the trained text and shows warnings", async () => {
    mockIPC((cmd) => {
      if (cmd === "list_templates") return [{ name: "model" }, { name: "chatml" }, { name: "alpaca" }];
      throw new Error(`unexpected ${cmd}`);
    });
    app = mount(TemplatePanel, { target: document.body, props: { report } });
    await settle();
    const marks = [...document.querySelectorAll('[data-testid="template-preview"] mark')].map((m) => m.textContent);
    expect(marks).toEqual(["hello<|im_end|>\n"]);
    expect(document.body.textContent).toContain("does not know");
    const options = [...document.querySelectorAll('[data-testid="template-select"] option')].map((o) => o.textContent);
    expect(options).toEqual(["the model's own", "chatml", "alpaca"]);
  });

  it("the runs panel lists runs, offers resume and exports with sizes, progress and the check", async () => {
    const calls: [string, unknown][] = [];
    const check = {
      export: "/runs/r/export-gguf-q4_k_m/model-q4_k_m.gguf",
      kind: "GGUF Q4_K_M",
      bytes: 105_500_000,
      against: "run r as trained (template `model`)",
      data: "4 validation record(s)",
      rows: [
        { check: "template", status: "ok", result: "same prompt text on 15 conversation(s)" },
        { check: "perplexity", status: "ok", result: "trained 51.295, export 52.654 (+2.65 %)" },
        { check: "adapter", status: "FAIL", result: "the adapter is lost" },
      ],
      perplexity_trained: 51.295,
      perplexity_export: 52.654,
      perplexity_base: 72.5,
      perplexity_delta_percent: 2.65,
      greedy_identical: 3,
      greedy_total: 4,
      passed: false,
      seconds: 12,
    };
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      if (cmd === "list_runs") return [run];
      if (cmd === "gguf_sizes") return [{ name: "q8_0", bytes: 144_800_000 }, { name: "q4_k_m", bytes: 105_500_000 }];
      if (cmd === "export_run") {
        const channel = (args as { onProgress: Channel<unknown> }).onProgress;
        feed(channel, [{ phase: "writing GGUF Q4_K_M tensors", done: 10, total: 272 }]);
        return {
          path: check.export,
          target: "gguf",
          bytes: check.bytes,
          seconds: 3.2,
          gguf: { warnings: ["llama.cpp ignores the sliding window"] },
          check,
          check_file: "/runs/r/model-q4_k_m.check.md",
        };
      }
      if (cmd === "run_events") return [];
      throw new Error(`unexpected ${cmd}`);
    });
    let resumed: string | null = null;
    app = mount(RunsPanel, { target: document.body, props: { onResume: (id: string) => (resumed = id) } });
    await settle();
    expect(document.querySelectorAll('[data-testid="run-row"]').length).toBe(1);
    (document.querySelector('[data-testid="resume-run"]') as HTMLButtonElement).click();
    expect(resumed).toBe(run.id);
    (document.querySelector('[data-testid="export-open"]') as HTMLButtonElement).click();
    await settle();
    const options = [...document.querySelectorAll('[data-testid="export-quant"] option')].map((o) => o.textContent);
    expect(options).toEqual(["q8_0 — 138.1 MiB", "q4_k_m — 100.6 MiB"]);
    (document.querySelector('[data-testid="export-start"]') as HTMLButtonElement).click();
    await settle();
    expect(calls).toContainEqual(["export_run", expect.objectContaining({ id: run.id, request: { target: "gguf", quant: "q4_k_m" } })]);
    expect(document.querySelector('[data-testid="export-message"]')?.textContent).toContain("model-q4_k_m.gguf");
    expect(document.querySelector('[data-testid="export-verdict"]')?.textContent).toBe("FAILED");
    expect(document.querySelector('[data-testid="export-warning"]')?.textContent).toContain("sliding window");
    const rows = [...document.querySelectorAll('[data-testid="check-row"]')].map((r) => r.textContent);
    expect(rows).toHaveLength(3);
    expect(rows[2]).toContain("the adapter is lost");
  });

  it("chat streams the base model's reply piece by piece", async () => {
    mockIPC((cmd, args) => {
      if (cmd === "chat") {
        const channel = (args as { onPiece: Channel<string> }).onPiece;
        setTimeout(() => feed(channel, ["Hel", "lo!"]), 0);
        return new Promise((resolve) => setTimeout(() => resolve("Hello!"), 5));
      }
      throw new Error(`unexpected ${cmd}`);
    });
    app = mount(ChatPanel, { target: document.body, props: { runs: [] } });
    await settle();
    const input = document.querySelector('[data-testid="chat-input"]') as HTMLInputElement;
    input.value = "Say hello";
    input.dispatchEvent(new Event("input"));
    await tick();
    (input.form as HTMLFormElement).requestSubmit();
    await new Promise((r) => setTimeout(r, 20));
    await settle();
    const base = document.querySelector('[data-testid="chat-base"]')?.textContent ?? "";
    expect(base).toContain("Say hello");
    expect(base).toContain("Hello!");
  });
});

describe("train panel estimate", () => {
  afterEach(() => {
    clearMocks();
    document.body.innerHTML = "";
  });

  it("shows the plan and warns when the estimate exceeds free memory", async () => {
    const GiB = 2 ** 30;
    const requests: unknown[] = [];
    mockIPC((cmd, args) => {
      if (cmd === "plan_training") {
        requests.push((args as { request: unknown }).request);
        return {
          train_examples: 1997,
          valid_examples: 200,
          batch_size: 4,
          steps_per_epoch: 499,
          total_steps: 100,
          trained_tokens_per_epoch: 90000,
          trainable_parameters: 2442240,
          total_parameters: 134515008,
          memory_estimate: { weights: GiB / 2, adapters: 0, activations: 9 * GiB, logits: GiB, total: 10.5 * GiB },
          memory_estimate_checkpointed: { weights: GiB / 2, adapters: 0, activations: 2 * GiB, logits: GiB, total: 3.5 * GiB },
          available_memory: 4 * GiB,
          warnings: [],
        };
      }
      throw new Error(`unexpected ${cmd}`);
    });
    const panel = mount(TrainPanel, { target: document.body });
    await new Promise((r) => setTimeout(r, 500));
    await tick();
    const text = document.querySelector('[data-testid="memory-estimate"]')?.textContent ?? "";
    expect(text).toContain("1,997 examples");
    expect(text).toContain("10.5 GiB");
    expect(text).toContain("more than this machine has free");
    expect(text).toContain("gradient checkpointing (Advanced: about 3.5 GiB)");
    expect(requests[0]).toMatchObject({ iters: 100, max_length: selection.maxLength });
    unmount(panel);
  });
});

describe("run overlay", () => {
  it("aligns two runs' losses on one step axis", () => {
    const a: TrainEvent[] = [
      { event: "step", step: 1, epoch: 0, loss: 3, learning_rate: 0, grad_norm: 0, trained_tokens: 0, tokens_per_second: 0, elapsed_seconds: 0, eta_seconds: 0, mlx_active_bytes: 0, mlx_peak_bytes: 0, system_available_bytes: 0 },
      { event: "eval", step: 2, val_loss: 2.5, best: true },
    ];
    const b: TrainEvent[] = [
      { event: "step", step: 2, epoch: 0, loss: 2, learning_rate: 0, grad_norm: 0, trained_tokens: 0, tokens_per_second: 0, elapsed_seconds: 0, eta_seconds: 0, mlx_active_bytes: 0, mlx_peak_bytes: 0, system_available_bytes: 0 },
    ];
    const o = overlay([
      { id: "a", events: a },
      { id: "b", events: b },
    ]);
    expect(o.labels).toEqual(["a train", "a validation", "b train", "b validation"]);
    expect(o.data).toEqual([
      [1, 2],
      [3, null],
      [null, 2.5],
      [null, 2],
      [null, null],
    ]);
  });
});
