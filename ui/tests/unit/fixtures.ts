// Events and records the UI tests share.
import type { RunInfo, TrainEvent } from "../../src/lib/api";

/** A run of 3 steps starting. */
export const started: TrainEvent = {
  event: "started",
  total_steps: 3,
  steps_per_epoch: 10,
  train_examples: 40,
  valid_examples: 8,
  trainable_parameters: 1000,
  total_parameters: 100000,
};

/** Step `n` of that run, with its loss. */
export function step(n: number, loss: number): TrainEvent {
  return {
    event: "step",
    step: n,
    epoch: n / 10,
    loss,
    learning_rate: 1e-4,
    grad_norm: 0.5,
    trained_tokens: 100 * n,
    tokens_per_second: 50,
    elapsed_seconds: n * 2,
    eta_seconds: (3 - n) * 2,
    mlx_active_bytes: 2 ** 30,
    mlx_peak_bytes: 2 * 2 ** 30,
    system_available_bytes: 6 * 2 ** 30,
  };
}

/** A stopped, resumable run in the history. */
export const run: RunInfo = {
  id: "20261127-120000-train",
  dir: "/runs/20261127-120000-train",
  model: "/m",
  data: "/d",
  status: "stopped",
  steps: 30,
  total_steps: 100,
  final_loss: 1.25,
  best_val_loss: 1.5,
  resumable: true,
};

/** A DPO run of 6 steps over 20 pairs (4 held out) starting. */
export const startedDpo: TrainEvent = {
  ...(started as Extract<TrainEvent, { event: "started" }>),
  total_steps: 6,
  train_examples: 20,
  valid_examples: 4,
  method: "dpo",
};

/** Step `n` of a preference run, with its loss and pair figures. */
export function prefStep(n: number, loss: number, accuracy: number, margin: number): TrainEvent {
  return {
    ...(step(n, loss) as Extract<TrainEvent, { event: "step" }>),
    preference: { chosen_reward: margin / 2, rejected_reward: -margin / 2, margin, accuracy, pairs: 2 },
  };
}
