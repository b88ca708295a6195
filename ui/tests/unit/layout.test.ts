// The window's layout: a sidebar of steps, one step shown at a time, every
// panel kept mounted; the training view one click away and shown when a run
// starts; and every place that names the model / dataset naming what a drop
// chose.
import { afterEach, describe, expect, it } from "vitest";
import { mount, tick, unmount } from "svelte";
import { clearMocks, mockIPC, mockWindows } from "@tauri-apps/api/mocks";
import { emit } from "@tauri-apps/api/event";
// Loaded before the app mounts: the app imports it lazily for its drop
// listener, and a cold import can outlast settle() on a loaded machine.
import "@tauri-apps/api/webview";
import type { Channel } from "@tauri-apps/api/core";
import App from "../../src/App.svelte";
import { selection } from "../../src/lib/selection.svelte";
import { STEPS } from "../../src/lib/steps";
import type { DatasetReport, DefaultFile, ModelInfo, TrainEvent } from "../../src/lib/api";
import { started, step, run } from "./fixtures";
import { $, feed, settle, text } from "./dom";

const files: DefaultFile[] = [
  { label: "Model", path: "/cache/bundled-model.gguf", present: true, size_bytes: 98_362_432 },
  { label: "Dataset", path: "/cache/sample/train.jsonl", present: true, size_bytes: 1_000_000 },
];


function modelInfo(path: string | null): ModelInfo {
  return {
    path: path ?? files[0].path,
    architecture: "llama",
    layers: 30,
    hidden_size: 576,
    vocab_size: 49152,
    parameters: 134_515_008,
    quantized_bits: null,
    bytes_on_disk: 1000,
    chat_template: true,
  };
}

function datasetReport(data: string | null): DatasetReport {
  return {
    file: data ?? files[1].path,
    valid_file: null,
    stats: {
      records: 12,
      total_tokens: 900,
      trained_tokens: 300,
      truncated: 0,
      min_length: 20,
      max_length: 100,
      mean_length: 75,
      length_histogram: [[128, 12]],
    },
    chat_records: 12,
    skipped_empty: 0,
    skipped: [],
    template: "chatml",
    warnings: [],
    previews: [],
  };
}



const shown = (id: string) => !(document.getElementById(`step-${id}`) as HTMLElement).hidden;
const visibleSteps = () => STEPS.map((s) => s.id).filter(shown);

/** The backend the App talks to; `calls` records every command. */
function backend(extra: (cmd: string, args: Record<string, unknown>) => unknown = () => undefined) {
  const calls: { cmd: string; args: Record<string, unknown> }[] = [];
  mockIPC(
    (cmd, raw) => {
      const args = (raw ?? {}) as Record<string, unknown>;
      calls.push({ cmd, args });
      const answer = extra(cmd, args);
      if (answer !== undefined) return answer;
      switch (cmd) {
        case "default_files":
          return files;
        case "list_runs":
          return [run];
        case "device_report":
          throw new Error("not measured in this test");
        case "list_templates":
          return [{ name: "model" }, { name: "chatml" }];
        case "model_info":
          return modelInfo((args as { path: string | null }).path);
        case "inspect_dataset":
          return datasetReport((args.request as { data: string | null }).data);
        case "plan_training":
          throw { kind: "engine", message: "no plan in this test" };
        case "run_events":
          return [];
        case "classify_path": {
          const path = (args as { path: string }).path;
          return path.endsWith(".jsonl") ? "dataset" : path.endsWith(".gguf") ? "model" : "unknown";
        }
        case "start_training":
        case "resume_run": {
          const channel = args.onEvent as Channel<TrainEvent>;
          setTimeout(() => feed(channel, [started, step(1, 3.5), step(2, 3.0)]), 0);
          return "20261127-run";
        }
        case "pause_training":
        case "stop_training":
          return null;
      }
      throw new Error(`unexpected command ${cmd}`);
    },
    { shouldMockEvents: true },
  );
  mockWindows("main");
  return calls;
}

describe("layout", () => {
  let app: ReturnType<typeof mount> | undefined;
  afterEach(() => {
    if (app) unmount(app);
    app = undefined;
    clearMocks();
    document.body.innerHTML = "";
    selection.model = null;
    selection.data = null;
    selection.template = "model";
  });

  it("lists the steps in a nav landmark; one is shown and marked current, the others stay mounted", async () => {
    backend();
    app = mount(App, { target: document.body });
    await settle();
    const nav = document.querySelector("nav");
    expect(nav?.getAttribute("aria-label")).toBe("Steps");
    const buttons = [...nav!.querySelectorAll("button")];
    expect(buttons.map((b) => b.querySelector(".name")?.textContent)).toEqual(STEPS.map((s) => s.label));
    // Every panel is in the document (mounted), one step is shown.
    for (const id of ["model-input", "data-input", "template-select", "start", "runs-table", "chat-input"]) {
      expect($(id), id).not.toBeNull();
    }
    expect(visibleSteps()).toEqual(["model"]);
    expect($("nav-model")?.getAttribute("aria-current")).toBe("step");

    $<HTMLButtonElement>("nav-data")!.click();
    await tick();
    expect(visibleSteps()).toEqual(["data"]);
    expect($("nav-data")?.getAttribute("aria-current")).toBe("step");
    expect($("nav-model")?.hasAttribute("aria-current")).toBe(false);
    expect(document.querySelectorAll('nav [aria-current="step"]').length).toBe(1);
    expect($("nav-data")?.getAttribute("aria-controls")).toBe("step-data");
  });

  it("is keyboard reachable: arrows move between steps, Ctrl+number shows one", async () => {
    backend();
    app = mount(App, { target: document.body });
    await settle();
    const model = $<HTMLButtonElement>("nav-model")!;
    expect(model.tagName).toBe("BUTTON");
    model.focus();
    model.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowDown", bubbles: true }));
    expect(document.activeElement).toBe($("nav-data"));
    (document.activeElement as HTMLElement).dispatchEvent(new KeyboardEvent("keydown", { key: "End", bubbles: true }));
    expect(document.activeElement).toBe($("nav-machine"));
    (document.activeElement as HTMLElement).dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowDown", bubbles: true }));
    expect(document.activeElement).toBe($("nav-model"));
    // Enter on a focused step button is a click (native button).
    $<HTMLButtonElement>("nav-runs")!.click();
    await tick();
    expect(visibleSteps()).toEqual(["runs"]);
    window.dispatchEvent(new KeyboardEvent("keydown", { key: "4", ctrlKey: true, bubbles: true }));
    await tick();
    expect(visibleSteps()).toEqual(["train"]);
  });

  it("the training view is one click away from every step", async () => {
    backend();
    app = mount(App, { target: document.body });
    await settle();
    for (const s of STEPS) {
      $<HTMLButtonElement>(`nav-${s.id}`)!.click();
      await tick();
      expect(visibleSteps()).toEqual([s.id]);
      $<HTMLButtonElement>("nav-train")!.click();
      await tick();
      expect(visibleSteps()).toEqual(["train"]);
      // The charts and controls are in the shown step.
      const train = document.getElementById("step-train")!;
      for (const id of ["loss-chart", "rate-chart", "start", "pause", "stop"]) {
        expect(train.querySelector(`[data-testid="${id}"]`), id).not.toBeNull();
      }
    }
  });

  it("a run started from another step (Ctrl+Enter) shows the training view, and it keeps its state across switches", async () => {
    const calls = backend();
    app = mount(App, { target: document.body });
    await settle();
    expect(visibleSteps()).toEqual(["model"]);
    window.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", ctrlKey: true, bubbles: true }));
    await settle();
    expect(calls.map((c) => c.cmd)).toContain("start_training");
    expect(visibleSteps()).toEqual(["train"]);
    await new Promise((r) => setTimeout(r, 300));
    await settle();
    const chart = $("loss-chart")!;
    expect(chart.getAttribute("data-points")).toBe("2");
    expect(text("train-status")).toContain("step 2/3");
    // The sidebar follows the run.
    expect(text("nav-hint-train")).toContain("running · 2/3 · loss 3.000");
    expect($("nav-train")?.classList.contains("live")).toBe(true);

    // Away and back: the same elements, the same figures.
    $<HTMLButtonElement>("nav-runs")!.click();
    await settle();
    expect(visibleSteps()).toEqual(["runs"]);
    $<HTMLButtonElement>("nav-chat")!.click();
    await settle();
    $<HTMLButtonElement>("nav-train")!.click();
    await settle();
    expect($("loss-chart")).toBe(chart);
    expect(chart.getAttribute("data-points")).toBe("2");
    expect(text("train-status")).toContain("step 2/3");
    expect($<HTMLButtonElement>("start")!.disabled).toBe(true);

    // Pausing and resuming there does not pull the window anywhere.
    $<HTMLButtonElement>("nav-data")!.click();
    await tick();
    $<HTMLButtonElement>("pause")!.click();
    await settle();
    expect(visibleSteps()).toEqual(["data"]);
  });

  it("resuming a run from the Runs step shows the training view", async () => {
    const calls = backend();
    app = mount(App, { target: document.body });
    await settle();
    $<HTMLButtonElement>("nav-runs")!.click();
    await settle();
    $<HTMLButtonElement>("resume-run")!.click();
    await settle();
    expect(calls).toContainEqual(expect.objectContaining({ cmd: "resume_run", args: expect.objectContaining({ id: run.id }) }));
    expect(visibleSteps()).toEqual(["train"]);
  });

  it("typed input, choices and reports are kept across switches", async () => {
    backend();
    app = mount(App, { target: document.body });
    await settle();
    const input = $<HTMLInputElement>("model-input")!;
    input.value = "/typed/but/not/loaded";
    input.dispatchEvent(new Event("input"));
    $<HTMLButtonElement>("nav-template")!.click();
    await tick();
    // (happy-dom's `:checked` ignores <option>, so the choice is made
    // through the shared selection the select is bound to.)
    selection.template = "chatml";
    await settle();
    $<HTMLButtonElement>("nav-chat")!.click();
    await tick();
    const chat = $<HTMLInputElement>("chat-input")!;
    chat.value = "half a question";
    chat.dispatchEvent(new Event("input"));
    $<HTMLButtonElement>("nav-model")!.click();
    await settle();
    expect($<HTMLInputElement>("model-input")!.value).toBe("/typed/but/not/loaded");
    expect(text("model-info")).toContain(files[0].path);
    $<HTMLButtonElement>("nav-template")!.click();
    await tick();
    expect($<HTMLSelectElement>("template-select")!.value).toBe("chatml");
    expect(text("summary-template")).toBe("chatml");
    $<HTMLButtonElement>("nav-chat")!.click();
    await tick();
    expect($<HTMLInputElement>("chat-input")!.value).toBe("half a question");
    $<HTMLButtonElement>("nav-data")!.click();
    await tick();
    expect(text("data-records")).toContain("12");
  });

  it("a summary entry opens its step", async () => {
    backend();
    app = mount(App, { target: document.body });
    await settle();
    $("summary-data")!.querySelector("button")!.click();
    await tick();
    expect(visibleSteps()).toEqual(["data"]);
    $("summary-template")!.querySelector("button")!.click();
    await tick();
    expect(visibleSteps()).toEqual(["template"]);
  });
});

describe("what will be trained", () => {
  let app: ReturnType<typeof mount> | undefined;
  afterEach(() => {
    if (app) unmount(app);
    app = undefined;
    clearMocks();
    document.body.innerHTML = "";
    selection.model = null;
    selection.data = null;
  });

  it("a dropped dataset and model are named everywhere, and are what Start trains", async () => {
    const calls = backend();
    app = mount(App, { target: document.body });
    await settle();
    // Before the drop: the bundled model and the sample data.
    expect(text("summary-model")).toContain(files[0].path);
    expect(text("summary-data")).toContain(files[1].path);
    expect(text("summary-data")).toContain("sample data");
    expect(text("summary-model")).toContain("bundled");

    // The same path a drop on the window takes: the webview's drag-drop event.
    await emit("tauri://drag-drop", { paths: ["/home/me/my-data/chats.jsonl"], position: { x: 10, y: 10 } });
    await settle();
    expect(selection.data).toBe("/home/me/my-data/chats.jsonl");
    expect(text("drop-note")).toContain("/home/me/my-data/chats.jsonl as the dataset");
    expect(visibleSteps()).toEqual(["data"]);
    await emit("tauri://drag-drop", { paths: ["/home/me/models/tiny.gguf"], position: { x: 10, y: 10 } });
    await settle();
    expect(visibleSteps()).toEqual(["model"]);

    // The summary card at the top.
    expect(text("summary-data")).toContain("/home/me/my-data/chats.jsonl");
    expect(text("summary-data")).not.toContain(files[1].path);
    expect(text("summary-data")).toContain("chosen");
    expect(text("summary-model")).toContain("/home/me/models/tiny.gguf");
    expect(text("summary-model")).not.toContain(files[0].path);
    // The Dataset and Model panels.
    expect(text("data-stats")).toContain("/home/me/my-data/chats.jsonl");
    expect(text("model-info")).toContain("/home/me/models/tiny.gguf");
    // The sidebar's steps.
    expect(text("nav-hint-data")).toBe("chats.jsonl");
    expect(text("nav-hint-model")).toBe("tiny.gguf");
    // Nothing anywhere still names the sample data or the bundled model.
    expect(document.body.textContent).not.toContain(files[1].path);
    expect(document.body.textContent).not.toContain(files[0].path);

    // The Train panel trains exactly that.
    $<HTMLButtonElement>("nav-train")!.click();
    await tick();
    $<HTMLButtonElement>("start")!.click();
    await settle();
    const start = calls.find((c) => c.cmd === "start_training");
    expect(start?.args.request).toMatchObject({ model: "/home/me/models/tiny.gguf", data: "/home/me/my-data/chats.jsonl" });
    // While it runs, the card says it names the next run.
    expect(document.getElementById("start-title")?.textContent).toBe("Next run");
    expect(text("summary")).toContain("/home/me/my-data/chats.jsonl");
  });

  it("a dataset typed in the Dataset panel is named by the summary too", async () => {
    backend();
    app = mount(App, { target: document.body });
    await settle();
    $<HTMLButtonElement>("nav-data")!.click();
    const input = $<HTMLInputElement>("data-input")!;
    input.value = "/typed/train.csv";
    input.dispatchEvent(new Event("input"));
    (input.form as HTMLFormElement).requestSubmit();
    await settle();
    expect(text("summary-data")).toContain("/typed/train.csv");
    expect(text("data-stats")).toContain("/typed/train.csv");
    expect(text("nav-hint-data")).toBe("train.csv");
  });
});
