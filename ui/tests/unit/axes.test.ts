import { describe, expect, it } from "vitest";
import { stepAxis } from "../../src/lib/axes";

describe("the step axis", () => {
  it("ticks only on whole steps, 1-2-5 at every scale", () => {
    const incrs = stepAxis.incrs as number[];
    expect(incrs.slice(0, 7)).toEqual([1, 2, 5, 10, 20, 50, 100]);
    expect(incrs.every(Number.isInteger)).toBe(true);
    expect([...incrs].sort((a, b) => a - b)).toEqual(incrs);
    // A run of a million steps still gets a handful of ticks.
    expect(incrs[incrs.length - 1]).toBeGreaterThanOrEqual(100_000);
  });
});
