// The Train panel's state, folded from TrainEvents (no UI code here, so it
// is tested directly).
import type { TrainEvent, TrainSummary } from "./api";

export type Phase = "idle" | "running" | "paused" | "finished" | "stopped" | "failed";

export interface TrainingView {
  phase: Phase;
  totalSteps: number;
  step: number;
  epoch: number;
  loss: number | null;
  tokensPerSecond: number;
  etaSeconds: number;
  peakBytes: number;
  activeBytes: number;
  availableBytes: number;
  trainable: number;
  total: number;
  /** Chart series: step, raw loss, smoothed loss, validation loss (sparse). */
  steps: number[];
  losses: number[];
  smoothed: number[];
  valSteps: number[];
  valLosses: number[];
  /** Per step, like `steps`: the learning rate and the tokens/s reported. */
  learningRates: number[];
  tokenRates: number[];
  bestVal: number | null;
  summary: TrainSummary | null;
  message: string | null;
  /** What the engine estimated the run needs at its peak (bytes). */
  estimateBytes: number;
  warnings: string[];
}

/** Weight of the newest point in the smoothed loss. */
export const EMA_ALPHA = 0.1;

export function initialView(): TrainingView {
  return {
    phase: "idle",
    totalSteps: 0,
    step: 0,
    epoch: 0,
    loss: null,
    tokensPerSecond: 0,
    etaSeconds: 0,
    peakBytes: 0,
    activeBytes: 0,
    availableBytes: 0,
    trainable: 0,
    total: 0,
    steps: [],
    losses: [],
    smoothed: [],
    valSteps: [],
    valLosses: [],
    learningRates: [],
    tokenRates: [],
    bestVal: null,
    summary: null,
    message: null,
    estimateBytes: 0,
    warnings: [],
  };
}

export function apply(view: TrainingView, e: TrainEvent): TrainingView {
  const v = { ...view };
  switch (e.event) {
    case "started":
      return {
        ...initialView(),
        phase: "running",
        totalSteps: e.total_steps,
        trainable: e.trainable_parameters,
        total: e.total_parameters,
        estimateBytes: e.memory_estimate?.total ?? 0,
        warnings: e.warnings ?? [],
        step: e.resumed_from_step ?? 0,
      };
    case "step": {
      const prev = v.smoothed.length ? v.smoothed[v.smoothed.length - 1] : e.loss;
      v.steps = [...v.steps, e.step];
      v.losses = [...v.losses, e.loss];
      v.smoothed = [...v.smoothed, prev + EMA_ALPHA * (e.loss - prev)];
      v.learningRates = [...v.learningRates, e.learning_rate];
      v.tokenRates = [...v.tokenRates, e.tokens_per_second];
      v.step = e.step;
      v.epoch = e.epoch;
      v.loss = e.loss;
      v.tokensPerSecond = e.tokens_per_second;
      v.etaSeconds = e.eta_seconds;
      v.peakBytes = e.mlx_peak_bytes;
      v.activeBytes = e.mlx_active_bytes;
      v.availableBytes = e.system_available_bytes;
      return v;
    }
    case "eval":
      v.valSteps = [...v.valSteps, e.step];
      v.valLosses = [...v.valLosses, e.val_loss];
      if (e.best) v.bestVal = e.val_loss;
      return v;
    case "checkpoint":
      v.message = `Adapters saved to ${e.path}`;
      return v;
    case "finished":
      return { ...v, phase: "finished", summary: e.summary };
    case "stopped":
      return { ...v, phase: "stopped", message: `Stopped at step ${e.step}: ${e.reason}` };
    case "failed":
      return { ...v, phase: "failed", message: e.error };
  }
}

/** Validation losses aligned to the chart's x values (null where none). */
export function alignedValidation(view: TrainingView): (number | null)[] {
  const byStep = new Map(view.valSteps.map((s, i) => [s, view.valLosses[i]]));
  return view.steps.map((s) => byStep.get(s) ?? null);
}

/** What the Train panel tells the window about its run (the sidebar's line). */
export interface TrainStatus {
  phase: Phase;
  step: number;
  totalSteps: number;
  loss: number | null;
}
