// The Train panel's state, folded from TrainEvents (no UI code here, so it
// is tested directly).
import type { GrpoMetrics, HostStatus, Method, PreferenceMetrics, TrainEvent, TrainSummary } from "./api";

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
  /** What the run learns from; the example counts are pairs for a preference method. */
  method: Method;
  trainExamples: number;
  validExamples: number;
  /** Preference runs, per step that reported them: the mean rewards of the
   * chosen and rejected answers, their margin, and the accuracy (0..1). */
  prefSteps: number[];
  chosenRewards: number[];
  rejectedRewards: number[];
  margins: number[];
  accuracies: number[];
  /** The held-out pairs' accuracy (0..1) at each evaluation. */
  valPrefSteps: number[];
  valAccuracies: number[];
  /** The latest figures: of the training pairs, and of the held-out ones. */
  preference: PreferenceMetrics | null;
  evalPreference: (PreferenceMetrics & { step: number }) | null;
  /** GRPO runs, per step that reported them: the completions' mean reward
   * and its spread, and the KL from the reference (null: not measured). */
  grpoSteps: number[];
  rewardMeans: number[];
  rewardStds: number[];
  kls: (number | null)[];
  /** The held-out prompts' mean reward (greedy completions) per evaluation,
   * and the best so far. */
  valRewardSteps: number[];
  valRewards: number[];
  bestReward: number | null;
  grpo: GrpoMetrics | null;
  evalGrpo: (GrpoMetrics & { step: number }) | null;
  /** A spread run: where each rank stands (empty for a run in this app). */
  hosts: HostStatus[];
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
    method: "sft",
    trainExamples: 0,
    validExamples: 0,
    prefSteps: [],
    chosenRewards: [],
    rejectedRewards: [],
    margins: [],
    accuracies: [],
    valPrefSteps: [],
    valAccuracies: [],
    preference: null,
    evalPreference: null,
    grpoSteps: [],
    rewardMeans: [],
    rewardStds: [],
    kls: [],
    valRewardSteps: [],
    valRewards: [],
    bestReward: null,
    grpo: null,
    evalGrpo: null,
    hosts: [],
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
        method: e.method ?? "sft",
        trainExamples: e.train_examples,
        validExamples: e.valid_examples,
        // The launcher reports the ranks before rank 0 starts.
        hosts: v.hosts,
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
      if (e.preference) {
        const p = e.preference;
        v.prefSteps = [...v.prefSteps, e.step];
        v.chosenRewards = [...v.chosenRewards, p.chosen_reward];
        v.rejectedRewards = [...v.rejectedRewards, p.rejected_reward];
        v.margins = [...v.margins, p.margin];
        v.accuracies = [...v.accuracies, p.accuracy];
        v.preference = p;
      }
      if (e.grpo) {
        const g = e.grpo;
        v.grpoSteps = [...v.grpoSteps, e.step];
        v.rewardMeans = [...v.rewardMeans, g.reward_mean];
        v.rewardStds = [...v.rewardStds, g.reward_std];
        v.kls = [...v.kls, g.kl];
        v.grpo = g;
      }
      return v;
    }
    case "eval":
      // A GRPO evaluation's val_loss is its negated reward: it goes to the
      // reward chart, not beside the training loss it has nothing to do with.
      if (e.grpo) {
        v.valRewardSteps = [...v.valRewardSteps, e.step];
        v.valRewards = [...v.valRewards, e.grpo.reward_mean];
        v.evalGrpo = { ...e.grpo, step: e.step };
        if (e.best) v.bestReward = e.grpo.reward_mean;
        return v;
      }
      v.valSteps = [...v.valSteps, e.step];
      v.valLosses = [...v.valLosses, e.val_loss];
      if (e.best) v.bestVal = e.val_loss;
      if (e.preference) {
        v.valPrefSteps = [...v.valPrefSteps, e.step];
        v.valAccuracies = [...v.valAccuracies, e.preference.accuracy];
        v.evalPreference = { ...e.preference, step: e.step };
      }
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
    case "hosts":
      return { ...v, hosts: e.hosts };
  }
}

/** Validation losses aligned to the chart's x values (null where none). */
export function alignedValidation(view: TrainingView): (number | null)[] {
  const byStep = new Map(view.valSteps.map((s, i) => [s, view.valLosses[i]]));
  return view.steps.map((s) => byStep.get(s) ?? null);
}

/** Whether the run has preference figures to chart (a preference method
 * announced, or steps that carry them). */
export function hasPreference(view: TrainingView): boolean {
  return view.method === "dpo" || view.method === "ipo" || view.method === "orpo" || view.prefSteps.length > 0;
}

/** Chart columns over every step with training or held-out figures: `xs`,
 * and lookups that place a per-step series (`steps`) or a held-out one
 * (`valSteps`) on them, null where a step has none. */
function alignSteps(steps: number[], valSteps: number[]) {
  const at = new Map(steps.map((s, i) => [s, i]));
  // Usually every evaluation falls on a reported step: the steps as they are.
  const xs = valSteps.every((s) => at.has(s)) ? steps : [...new Set([...steps, ...valSteps])].sort((a, b) => a - b);
  return {
    xs,
    trained: (values: (number | null)[], scale = 1) =>
      xs.map((x) => {
        const i = at.get(x);
        const v = i === undefined ? null : values[i];
        return v === null ? null : scale * v;
      }),
    held: (values: number[], scale = 1) => {
      const byStep = new Map(valSteps.map((s, i) => [s, scale * values[i]]));
      return xs.map((x) => byStep.get(x) ?? null);
    },
  };
}

/** The Preference chart's columns: x (every step with training or held-out
 * figures), the accuracy in percent, the margin, and the held-out accuracy
 * in percent (null where a step has none). */
export function preferenceSeries(view: TrainingView): [number[], (number | null)[], (number | null)[], (number | null)[]] {
  const a = alignSteps(view.prefSteps, view.valPrefSteps);
  return [a.xs, a.trained(view.accuracies, 100), a.trained(view.margins), a.held(view.valAccuracies, 100)];
}

/** Whether the run has GRPO figures to chart. */
export function hasGrpo(view: TrainingView): boolean {
  return view.method === "grpo" || view.grpoSteps.length > 0;
}

/** The GRPO chart's columns: x (every step with training or held-out
 * figures), the mean reward, the held-out reward, and the KL (null where a
 * step has none). */
export function grpoSeries(view: TrainingView): [number[], (number | null)[], (number | null)[], (number | null)[]] {
  const a = alignSteps(view.grpoSteps, view.valRewardSteps);
  return [a.xs, a.trained(view.rewardMeans), a.held(view.valRewards), a.trained(view.kls)];
}

/** A reward or margin for reading: two decimals from 1 up, two significant
 * digits below (a margin starts near 0). */
export function formatMetric(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return "0.00";
  return Math.abs(x) >= 1 ? x.toFixed(2) : x.toPrecision(2);
}

/** An accuracy (0..1) as a whole percentage: "75 %". */
export function formatAccuracy(a: number): string {
  return `${Math.round(100 * a)} %`;
}

/** The methods' names as shown. */
export const METHOD_NAMES: Record<Method, string> = { sft: "SFT", dpo: "DPO", ipo: "IPO", orpo: "ORPO", grpo: "GRPO" };

/** What the Train panel tells the window about its run (the sidebar's line). */
export interface TrainStatus {
  phase: Phase;
  step: number;
  totalSteps: number;
  loss: number | null;
}
