// Typed wrappers over the Tauri commands in src-tauri/src/commands.rs.
// The types mirror the engine's serde output field for field.
import { Channel, invoke } from "@tauri-apps/api/core";

export interface DeviceReport {
  os: string;
  arch: string;
  cpu_model: string;
  physical_cores: number | null;
  logical_cores: number;
  total_memory_bytes: number;
  available_memory_bytes: number;
  mlx_version: string;
  default_device: "cpu" | "gpu";
  backends: { cpu: boolean; metal: boolean; cuda: boolean };
  gpu: { name: string; architecture: string | null; memory_bytes: number | null } | null;
  matmul_library: string;
  matmul: { size: number; iterations: number; seconds: number; gflops: number };
  /** MLX's distributed backends this build can use (ring, mpi, nccl, jaccl). */
  distributed?: string[];
}

/** A file the app starts with: the bundled model or the sample dataset. */
export interface DefaultFile {
  label: string;
  path: string;
  present: boolean;
  size_bytes: number | null;
  /** The hub id of a default that is (or, once downloaded, will be) in the Hugging Face cache. */
  hub_id?: string | null;
}

export interface Versions {
  app: string;
  mlx: string;
}

export function versions(): Promise<Versions> {
  return invoke<Versions>("versions");
}

export function deviceReport(): Promise<DeviceReport> {
  return invoke<DeviceReport>("device_report");
}

export function defaultFiles(): Promise<DefaultFile[]> {
  return invoke<DefaultFile[]>("default_files");
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** What a run learns from: the answers (SFT), preference pairs (DPO, IPO,
 * ORPO), or rewards of sampled answers to prompts (GRPO). */
export type Method = "sft" | "dpo" | "ipo" | "orpo" | "grpo";

/** Whether `method` trains on preference pairs (chosen / rejected). */
export function isPreference(method: Method | null | undefined): boolean {
  return method === "dpo" || method === "ipo" || method === "orpo";
}

/** One GRPO reward function, as the engine's YAML writes it: exact_match
 * (against the record's answer; `pattern` picks the answer out of the
 * completion), regex (1 when the completion matches) or length (1 at
 * `target` tokens, falling to 0 at 0 and twice the target). */
export type RewardSpec =
  | { exact_match: { pattern?: string | null; weight?: number } }
  | { regex: { pattern: string; weight?: number } }
  | { length: { target: number; weight?: number } };

/** A GRPO run's figures over a set of completions (the engine's
 * GrpoMetrics): the reward's mean and spread, each function's mean (in the
 * configured order), the per-token KL from the reference (null when not
 * measured), the mean completion length, the share cut at the limit. */
export interface GrpoMetrics {
  reward_mean: number;
  reward_std: number;
  rewards: [string, number][];
  kl: number | null;
  completion_length: number;
  clipped_fraction: number;
  completions: number;
  generation_seconds: number;
}

/** A preference run's figures over a set of pairs (the engine's
 * PreferenceMetrics): mean rewards, their mean margin, and the share of
 * pairs (0..1) whose chosen answer has the higher reward. */
export interface PreferenceMetrics {
  chosen_reward: number;
  rejected_reward: number;
  margin: number;
  accuracy: number;
  pairs: number;
}

/** Settings the Train panel sends; empty paths mean the bundled defaults. */
export interface StartRequest {
  model: string | null;
  data: string | null;
  iters: number;
  batch_size: number;
  learning_rate: number;
  lora_rank: number;
  lora_alpha: number;
  max_length: number;
  steps_per_eval: number;
  template?: string | null;
  mask?: Mask | null;
  profile?: string | null;
  grad_accumulation?: number | null;
  packing?: boolean;
  dora?: boolean;
  qlora_bits?: number | null;
  early_stopping?: number | null;
  valid_fraction?: number | null;
  skip_bad_records?: boolean;
  optimizer?: "adamw" | "adam" | "sgd" | "adafactor" | null;
  precision?: "auto" | "float32" | "bfloat16" | "float16" | null;
  full?: boolean;
  grad_checkpoint?: boolean;
  /** Absent: sft. A preference method needs preference data, and sft
   * needs ordinary data (the engine refuses the mismatch). */
  method?: Method;
  /** DPO / IPO β, ORPO λ (absent: 0.1). */
  beta?: number;
  /** GRPO: completions per prompt, their longest length in tokens, the
   * sampling temperature, the KL penalty's weight, the reward functions. */
  group_size?: number;
  max_completion_length?: number;
  temperature?: number;
  kl_coef?: number;
  rewards?: RewardSpec[];
  /** Spread the run over the machines of this hostfile (mlx.launch's format). */
  hosts?: string | null;
}

/** Where a rank of a spread run stands, as its launcher sees it. */
export type HostState = "starting" | "training" | "finished" | "failed" | "stopped";

export interface HostStatus {
  rank: number;
  host: string;
  state: HostState;
  message?: string;
}

/** One rank's machine in a hostfile. */
export interface HostEntry {
  rank: number;
  host: string;
  this_machine: boolean;
}

export const readHostfile = (path: string) => invoke<HostEntry[]>("read_hostfile", { path });

export interface TrainSummary {
  steps: number;
  final_loss: number | null;
  best_val_loss: number | null;
  trained_tokens: number;
  seconds: number;
  tokens_per_second: number;
  peak_memory_bytes: number;
  adapter_dir: string;
}

/** The engine's TrainEvent, as serde writes it. */
export type TrainEvent =
  | {
      event: "started";
      total_steps: number;
      steps_per_epoch: number;
      train_examples: number;
      valid_examples: number;
      trainable_parameters: number;
      total_parameters: number;
      resumed_from_step?: number | null;
      /** Template tokens the tokenizer lacks, skipped records, the validation split. */
      warnings?: string[];
      memory_estimate?: { weights: number; adapters: number; activations: number; logits: number; total: number } | null;
      /** What the run learns from (absent: sft); the example counts are
       * pairs for a preference method. */
      method?: Method;
    }
  | {
      event: "step";
      step: number;
      epoch: number;
      loss: number;
      learning_rate: number;
      grad_norm: number;
      trained_tokens: number;
      tokens_per_second: number;
      elapsed_seconds: number;
      eta_seconds: number;
      mlx_active_bytes: number;
      mlx_peak_bytes: number;
      system_available_bytes: number;
      /** Preference runs: the pairs' figures since the last report. */
      preference?: PreferenceMetrics | null;
      /** GRPO runs: the sampled completions' figures since the last report. */
      grpo?: GrpoMetrics | null;
    }
  | {
      event: "eval";
      step: number;
      val_loss: number;
      best: boolean;
      /** Preference runs: the held-out pairs' figures. */
      preference?: PreferenceMetrics | null;
      /** GRPO runs: the held-out prompts' greedy completions' figures
       * (`val_loss` is then the negated mean reward). */
      grpo?: GrpoMetrics | null;
    }
  | { event: "checkpoint"; step: number; path: string }
  | { event: "finished"; summary: TrainSummary }
  | { event: "stopped"; step: number; reason: string }
  | { event: "failed"; error: string }
  | { event: "hosts"; hosts: HostStatus[] };

/** Starts a run; `onEvent` receives its events in order. Resolves to the run id. */
export function startTraining(request: StartRequest, onEvent: (e: TrainEvent) => void): Promise<string> {
  const channel = new Channel<TrainEvent>();
  channel.onmessage = onEvent;
  return invoke<string>("start_training", { request, onEvent: channel });
}

export const pauseTraining = () => invoke<void>("pause_training");
export const resumeTraining = () => invoke<void>("resume_training");
export const stopTraining = () => invoke<void>("stop_training");

export function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}

export type Mask = "completions" | "last_turn" | "all";

export interface ModelInfo {
  path: string;
  architecture: string;
  layers: number;
  hidden_size: number;
  vocab_size: number;
  parameters: number;
  quantized_bits: number | null;
  bytes_on_disk: number;
  chat_template: boolean;
  /** A GGUF file's tensor types and how many tensors have each. */
  tensor_types?: Record<string, number> | null;
}

export interface DatasetStats {
  records: number;
  total_tokens: number;
  trained_tokens: number;
  truncated: number;
  min_length: number;
  max_length: number;
  mean_length: number;
  length_histogram: [number, number][];
}

export interface DatasetReport {
  file: string;
  valid_file: string | null;
  stats: DatasetStats;
  chat_records: number;
  skipped_empty: number;
  skipped: { location: string; reason: string }[];
  template: string;
  warnings: string[];
  /** Per record: its text in runs, `true` where trained. For preference
   * data the sides alternate: pair 1 chosen, pair 1 rejected, pair 2 chosen… */
  previews: [string, boolean][][];
  /** Preference pairs (chosen / rejected); 0 (or absent) for ordinary data. */
  pairs?: number;
  /** Preference data: each side's figures (`stats` covers both together). */
  chosen_stats?: DatasetStats | null;
  rejected_stats?: DatasetStats | null;
  /** Prompt-only data (for GRPO): the prompts (0 or absent for other data;
   * `stats` then counts the prompts' tokens, `previews` renders prompts),
   * how many carry a reference answer, each previewed prompt's answer, and
   * the prompts longer than the maximum length (left out). */
  prompts?: number;
  prompt_answers?: number;
  answers?: (string | null)[];
  too_long?: number;
}

/** The preference pairs a report counts (0: ordinary data). */
export function pairCount(report: DatasetReport | null | undefined): number {
  return report?.pairs ?? 0;
}

/** The prompts of prompt-only data a report counts (0: other data). */
export function promptCount(report: DatasetReport | null | undefined): number {
  return report?.prompts ?? 0;
}

export interface InspectRequest {
  data: string | null;
  model: string | null;
  template: string | null;
  mask: Mask | null;
  max_length: number;
  skip_bad_records: boolean;
  /** Records to render (pairs, for preference data). */
  preview: number;
}

export interface RunInfo {
  id: string;
  dir: string;
  model: string;
  data: string;
  status: string;
  steps: number;
  total_steps: number | null;
  final_loss: number | null;
  best_val_loss: number | null;
  resumable: boolean;
}

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** The forms a run exports to (the engine's export::job::Target). */
export type ExportTarget = "mlx" | "peft" | "fused" | "gguf" | "gguf-lora" | "ollama";

export interface ExportRequest {
  target: ExportTarget;
  /** GGUF type for gguf and ollama (q4_k_m, q8_0, …). */
  quant?: string | null;
}

/** What an export is doing; `total` 0: a phase without a count. */
export interface ExportProgress {
  phase: string;
  done: number;
  total: number;
}

export interface CheckRow {
  check: string;
  /** ok, FAIL, or note (measured, nothing to pass or fail). */
  status: string;
  result: string;
}

/** The export check: the export loaded back and compared with the trained model. */
export interface CheckReport {
  export: string;
  kind: string;
  bytes: number;
  against: string;
  data: string;
  rows: CheckRow[];
  perplexity_trained: number;
  perplexity_export: number;
  perplexity_base: number | null;
  perplexity_delta_percent: number;
  greedy_identical: number;
  greedy_total: number;
  passed: boolean;
  seconds: number;
}

export interface ExportOutcome {
  path: string;
  target: ExportTarget;
  bytes: number;
  seconds: number;
  /** A GGUF written: what llama.cpp will do differently (settings GGUF cannot hold). */
  gguf: { warnings: string[] } | null;
  check: CheckReport | null;
  check_file: string | null;
}

/** A GGUF type the picker offers, with the exact size of its file. */
export interface QuantChoice {
  name: string;
  bytes: number;
}

/** What a dropped path is: a model, a dataset, or neither. */
export type DropKind = "model" | "dataset" | "unknown";

export const modelInfo = (path: string | null) => invoke<ModelInfo>("model_info", { path });

/** What a hub download reports as it goes (the engine's DownloadEvent). */
export type DownloadEvent =
  | { event: "started"; file: string; bytes: number }
  | { event: "progress"; bytes: number }
  | { event: "finished"; file: string };

/** Whether `spec` reads as a hub id (owner/name) rather than a path. */
export function isHubId(spec: string): boolean {
  return /^[A-Za-z0-9_-][A-Za-z0-9_.-]*\/[A-Za-z0-9_-][A-Za-z0-9_.-]*$/.test(spec);
}

/** Downloads hub model `id` into the Hugging Face cache (at once when it is
 * there); resolves to its local folder. */
export function downloadModel(id: string, onProgress: (e: DownloadEvent) => void): Promise<string> {
  const channel = new Channel<DownloadEvent>();
  channel.onmessage = onProgress;
  return invoke<string>("download_model", { id, onProgress: channel });
}
export const listTemplates = () => invoke<{ name: string }[]>("list_templates");
export const inspectDataset = (request: InspectRequest) => invoke<DatasetReport>("inspect_dataset", { request });
export const listRuns = () => invoke<RunInfo[]>("list_runs");
export const runEvents = (id: string) => invoke<TrainEvent[]>("run_events", { id });
export const ggufSizes = (id: string) => invoke<QuantChoice[]>("gguf_sizes", { id });

/** Exports run `id`; `onProgress` hears each phase. Resolves with the files and the check. */
export function exportRun(id: string, request: ExportRequest, onProgress: (p: ExportProgress) => void): Promise<ExportOutcome> {
  const channel = new Channel<ExportProgress>();
  channel.onmessage = onProgress;
  return invoke<ExportOutcome>("export_run", { id, request, onProgress: channel });
}
export const classifyPath = (path: string) => invoke<DropKind>("classify_path", { path });

export function resumeRun(id: string, onEvent: (e: TrainEvent) => void): Promise<string> {
  const channel = new Channel<TrainEvent>();
  channel.onmessage = onEvent;
  return invoke<string>("resume_run", { id, onEvent: channel });
}

/** Streams a reply: `onPiece` gets each new piece of text; resolves to the whole. */
export function chat(
  request: { model: string | null; run: string | null; messages: ChatMessage[]; max_tokens: number; temperature: number },
  onPiece: (piece: string) => void,
): Promise<string> {
  const channel = new Channel<string>();
  channel.onmessage = onPiece;
  return invoke<string>("chat", { request, onPiece: channel });
}

/** A command error's message (`{kind, message}`), or the error as text. */
export function errorText(e: unknown): string {
  return typeof e === "object" && e && "message" in e ? String((e as { message: unknown }).message) : String(e);
}

/** A count with thousands separators in the window's language. */
export function formatCount(n: number): string {
  return new Intl.NumberFormat(navigator.language || "en-US").format(n);
}

/** What the settings amount to before starting (the engine's Plan). */
export interface MemoryEstimate {
  weights: number;
  adapters: number;
  activations: number;
  logits: number;
  total: number;
}

export interface Plan {
  train_examples: number;
  valid_examples: number;
  batch_size: number;
  steps_per_epoch: number;
  total_steps: number;
  trained_tokens_per_epoch: number;
  trainable_parameters: number;
  total_parameters: number;
  memory_estimate: MemoryEstimate;
  /** The same run with gradient checkpointing. */
  memory_estimate_checkpointed?: MemoryEstimate;
  available_memory: number;
  warnings: string[];
}

export const planTraining = (request: StartRequest) => invoke<Plan>("plan_training", { request });
