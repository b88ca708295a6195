// Past runs' events as chart data (no UI code here, so it is tested directly).
import type uPlot from "uplot";
import type { TrainEvent } from "./api";

/** One x axis (every step any run reported) and, per run, its training
 * loss and validation loss (null where the run has no value). */
export function overlay(runs: { id: string; events: TrainEvent[] }[]): { labels: string[]; data: uPlot.AlignedData } {
  const perRun = runs.map((r) => {
    const train = new Map<number, number>();
    const valid = new Map<number, number>();
    for (const e of r.events) {
      if (e.event === "step") train.set(e.step, e.loss);
      if (e.event === "eval") valid.set(e.step, e.val_loss);
    }
    return { id: r.id, train, valid };
  });
  const xs = [...new Set(perRun.flatMap((r) => [...r.train.keys(), ...r.valid.keys()]))].sort((a, b) => a - b);
  const labels: string[] = [];
  const columns: (number | null)[][] = [];
  for (const r of perRun) {
    labels.push(`${r.id} train`, `${r.id} validation`);
    columns.push(xs.map((x) => r.train.get(x) ?? null), xs.map((x) => r.valid.get(x) ?? null));
  }
  return { labels, data: [xs, ...columns] as uPlot.AlignedData };
}
