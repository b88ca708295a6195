import { afterEach, describe, expect, it } from "vitest";
import { mount, unmount } from "svelte";
import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";
import App from "../../src/App.svelte";
import { formatBytes } from "../../src/lib/api";
import type { DeviceReport, DefaultFile } from "../../src/lib/api";
import { settle } from "./dom";

const report: DeviceReport = {
  os: "Debian GNU/Linux 12",
  arch: "x86_64",
  cpu_model: "Test CPU",
  physical_cores: 2,
  logical_cores: 2,
  total_memory_bytes: 24 * 2 ** 30,
  available_memory_bytes: 20 * 2 ** 30,
  mlx_version: "0.32.2",
  default_device: "cpu",
  backends: { cpu: true, metal: false, cuda: false },
  gpu: null,
  matmul_library: "OpenBLAS (test)",
  matmul: { size: 1024, iterations: 10, seconds: 0.1, gflops: 214.7 },
  distributed: ["ring"],
};

const files: DefaultFile[] = [
  { label: "Model", path: "/cache/model.gguf", present: true, size_bytes: 98_362_432 },
  { label: "Dataset", path: "/cache/train.jsonl", present: false, size_bytes: null },
];

describe("App", () => {
  let app: ReturnType<typeof mount> | undefined;
  afterEach(() => {
    if (app) unmount(app);
    clearMocks();
    document.body.innerHTML = "";
  });

  it("shows the measured device report and the default files", async () => {
    const calls: string[] = [];
    mockIPC((cmd) => {
      calls.push(cmd);
      if (cmd === "device_report") return report;
      if (cmd === "default_files") return files;
      if (cmd === "list_runs") return [];
      if (cmd === "list_templates") return [{ name: "model" }];
      if (cmd === "model_info")
        return {
          path: "/cache/model.gguf",
          architecture: "llama",
          layers: 30,
          hidden_size: 576,
          vocab_size: 49152,
          parameters: 134515008,
          quantized_bits: 4,
          bytes_on_disk: 98362432,
          chat_template: true,
        };
      if (cmd === "inspect_dataset") throw { kind: "engine", message: "/cache/train.jsonl: no such file" };
      throw new Error(`unexpected command ${cmd}`);
    });
    app = mount(App, { target: document.body });
    await settle();
    for (const cmd of ["default_files", "device_report", "list_runs", "model_info", "inspect_dataset"]) {
      expect(calls).toContain(cmd);
    }
    expect(document.querySelector('[data-testid="model-parameters"]')?.textContent).toContain("134,515,008");
    expect(document.querySelector('[data-testid="data-error"]')?.textContent).toContain("no such file");
    expect(document.querySelector('[data-testid="device-distributed"]')?.textContent).toContain("ring (ft train start -n N");
    expect(document.querySelector('[data-testid="gflops"]')?.textContent).toContain("214.7 GFLOP/s");
    // Nothing chosen yet: the summary names the bundled files, their sizes
    // and what is missing.
    const listed = document.querySelector('[data-testid="summary"]')?.textContent ?? "";
    expect(listed).toContain("/cache/model.gguf");
    expect(listed).toContain("93.8 MiB");
    expect(document.querySelector('[data-testid="summary-data"]')?.textContent).toContain("/cache/train.jsonl");
    expect(listed).toContain("missing");
  });

  it("offers the default model for download on first run, and downloads it with progress", async () => {
    const calls: { cmd: string; args: Record<string, unknown> }[] = [];
    const firstRun: DefaultFile[] = [
      { label: "Model", path: "HuggingFaceTB/SmolLM2-135M-Instruct", present: false, size_bytes: null, hub_id: "HuggingFaceTB/SmolLM2-135M-Instruct" },
      { label: "Dataset", path: "/usr/lib/finetune/sample-data/chitchat", present: true, size_bytes: 1_500_000 },
    ];
    mockIPC((cmd, args) => {
      calls.push({ cmd, args: args as Record<string, unknown> });
      if (cmd === "device_report") return report;
      if (cmd === "default_files") return firstRun;
      if (cmd === "versions") return { app: "0.1.0", mlx: "0.32.2" };
      if (cmd === "list_runs") return [];
      if (cmd === "list_templates") return [{ name: "model" }];
      if (cmd === "download_model") {
        const channel = (args as { onProgress: { onmessage: (e: unknown) => void } }).onProgress;
        channel.onmessage({ event: "started", file: "model.safetensors", bytes: 100 });
        channel.onmessage({ event: "progress", bytes: 100 });
        channel.onmessage({ event: "finished", file: "model.safetensors" });
        return "/home/u/.cache/huggingface/hub/models--HuggingFaceTB--SmolLM2-135M-Instruct/snapshots/abc";
      }
      if (cmd === "model_info")
        return {
          path: "/home/u/.cache/huggingface/hub/models--HuggingFaceTB--SmolLM2-135M-Instruct/snapshots/abc",
          architecture: "llama", layers: 30, hidden_size: 576, vocab_size: 49152, parameters: 134515008,
          quantized_bits: null, bytes_on_disk: 269060552, tensor_types: null, chat_template: true,
        };
      if (cmd === "inspect_dataset") throw new Error("not under test");
      return null;
    });
    app = mount(App, { target: document.body });
    await settle();
    // Nothing is fetched unasked: the model panel offers the download.
    expect(calls.map((c) => c.cmd)).not.toContain("download_model");
    expect(calls.map((c) => c.cmd)).not.toContain("model_info");
    expect(document.querySelector('[data-testid="model-offer"]')?.textContent).toContain("HuggingFaceTB/SmolLM2-135M-Instruct");
    expect(document.querySelector('[data-testid="summary-model"]')?.textContent).toContain("not downloaded yet");
    expect(document.querySelector('[data-testid="versions"]')?.textContent).toBe("FineTune 0.1.0 · MLX 0.32.2");
    (document.querySelector('[data-testid="model-download-default"]') as HTMLButtonElement).click();
    await settle();
    const download = calls.find((c) => c.cmd === "download_model");
    expect(download?.args.id).toBe("HuggingFaceTB/SmolLM2-135M-Instruct");
    expect(document.querySelector('[data-testid="model-offer"]')).toBeNull();
    expect(document.querySelector('[data-testid="model-parameters"]')?.textContent).toContain("134,515,008");
  });

  it("shows a backend error instead of the report", async () => {
    mockIPC((cmd) => {
      if (cmd === "default_files") return [];
      throw new Error("MLX: no device");
    });
    app = mount(App, { target: document.body });
    await settle();
    expect(document.querySelector('[role="alert"]')?.textContent).toContain("MLX: no device");
  });
});

describe("formatBytes", () => {
  it("picks a readable unit", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(24 * 2 ** 30)).toBe("24.0 GiB");
  });
});
