// The x axis every chart shares: steps are whole numbers, so its ticks
// step by 1, 2, 5, 10 … and never fall between two steps (uPlot's default
// increments would label 1.5, 2.5 on a short run).
import type uPlot from "uplot";

const STEP_INCREMENTS = [1, 2, 5].flatMap((m) => [1, 10, 100, 1_000, 10_000, 100_000].map((p) => m * p)).sort((a, b) => a - b);

export const stepAxis: uPlot.Axis = { label: "step", incrs: STEP_INCREMENTS };
