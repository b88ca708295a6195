// End-to-end: preference training (DPO) in the real FineTune window
// (Tauri + WebKitGTK), driven through tauri-driver with plain W3C WebDriver
// calls, like app.e2e.mjs. The tiny random model and a small preference set
// in TRL's conversational shape ({prompt, chosen, rejected}) are dropped on
// the window as from a file manager; the Dataset step must count the pairs
// and label the previews chosen / rejected, the Train step must have
// switched to DPO on its own, and a short run (6 steps, batch 2, evaluated on
// held-out pairs) must draw the rewards and preference charts. Screenshots
// go to E2E_OUT (target/e2e/preference-*.png).
//
// Run by scripts/e2e.sh (which starts Xvfb and tauri-driver and writes the
// tiny model). It shares FINETUNE_RUNS with app.e2e.mjs, so it finds its own
// run there by its method instead of counting the runs.
import { strict as assert } from "node:assert";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { OUT, call, click, drop, openWithModel, run, screenshot, setInput, show, waitFor, waitUntil } from "./webdriver.mjs";

const APP = process.env.FINETUNE_APP;
const RUNS = process.env.FINETUNE_RUNS;
const TINY = process.env.FINETUNE_TINY_MODEL;

const PAIRS = 24;
const STEPS = 6;

/** A small preference set in TRL's conversational shape: the chosen answer
 * is right, the rejected one wrong. */
function writePreferenceSet(path) {
  const lines = Array.from({ length: PAIRS }, (_, i) => {
    const a = 3 + i;
    const b = 2 * i + 1;
    return JSON.stringify({
      prompt: [{ role: "user", content: `What is ${a} plus ${b}?` }],
      chosen: [{ role: "assistant", content: `${a} plus ${b} is ${a + b}.` }],
      rejected: [{ role: "assistant", content: `I think it is ${a + b + 7}, but I am not sure.` }],
    });
  });
  writeFileSync(path, lines.join("\n") + "\n");
}

/** A chart's state: points, its canvas and the canvas' drawn size. */
function chartState(session, testid) {
  return run(
    session,
    `const c = document.querySelector('[data-testid="' + arguments[0] + '"]');
     if (!c) return null;
     const canvas = c.querySelector("canvas");
     const box = canvas ? canvas.getBoundingClientRect() : null;
     return { points: Number(c.getAttribute("data-points")), canvas: !!canvas,
              width: box ? box.width : 0, height: box ? box.height : 0,
              canvasWidth: canvas ? canvas.width : 0, canvasHeight: canvas ? canvas.height : 0 };`,
    testid,
  );
}

test("a preference set trains with DPO, with its rewards and preference charts", { timeout: 600_000 }, async () => {
  assert.ok(APP, "FINETUNE_APP must point at the built app");
  assert.ok(TINY && existsSync(TINY), "FINETUNE_TINY_MODEL must point at a tiny model");
  mkdirSync(OUT, { recursive: true });
  const data = resolve(join(OUT, "preference-pairs.jsonl"));
  writePreferenceSet(data);

  const s = await openWithModel(APP, TINY);
  try {

    // The preference set, dropped too: the Dataset step counts pairs.
    drop(data);
    await waitFor(s, '[data-testid="summary-data"]', 30_000, (t) => t.includes("preference-pairs.jsonl"));
    await show(s, "data");
    const pairs = await waitFor(s, '[data-testid="dataset-pairs"]', 120_000, (t) => /\b24 preference pairs/.test(t));
    assert.match(pairs.text, /^24 preference pairs \(chosen \/ rejected\)$/);
    const stats = await waitFor(s, '[data-testid="data-stats"]', 5_000);
    assert.ok(stats.text.includes("preference-pairs.jsonl"), `the Dataset step names the dropped file: ${stats.text}`);
    const sides = await run(
      s,
      `const text = (id) => document.querySelector('[data-testid="' + id + '"]')?.textContent ?? "";
       const all = (id) => [...document.querySelectorAll('#step-data [data-testid="' + id + '"]')].map((e) => e.textContent);
       return { chosenStats: text("dataset-chosen-stats"), rejectedStats: text("dataset-rejected-stats"),
                chosen: all("preview-chosen"), rejected: all("preview-rejected"), summary: text("summary-pairs") };`,
    );
    assert.match(sides.chosenStats, /length min \d+, mean [\d.]+, max \d+/);
    assert.match(sides.rejectedStats, /length min \d+, mean [\d.]+, max \d+/);
    assert.ok(sides.chosen.length >= 1 && sides.chosen.length === sides.rejected.length, `previews per side: ${JSON.stringify(sides)}`);
    assert.match(sides.chosen[0], /Pair 1 · chosen/);
    assert.match(sides.chosen[0], /3 plus 1 is 4\./);
    assert.match(sides.rejected[0], /Pair 1 · rejected/);
    assert.match(sides.rejected[0], /I think it is 11/);
    assert.match(sides.summary, /24 preference pairs/);
    await screenshot(s, "preference-dataset", '[data-testid="data-stats"]');

    // Train: the method followed the data (DPO; SFT is off, with its reason).
    await show(s, "train");
    const method = await waitUntil(
      s,
      "the method to switch to DPO",
      30_000,
      `const m = document.querySelector('[data-testid="train-method"]');
       const sft = m && m.querySelector('option[value="sft"]');
       return m && m.value === "dpo" && document.querySelector('[data-testid="train-beta"]')
         ? { value: m.value, sftDisabled: sft.disabled, sftTitle: sft.title, beta: document.querySelector('[data-testid="train-beta"]').value }
         : null;`,
    );
    assert.equal(method.sftDisabled, true, "SFT is off for preference pairs");
    assert.match(method.sftTitle, /preference pairs/);
    assert.equal(Number(method.beta), 0.1);

    // A short run, a quarter of the pairs held out and evaluated.
    await setInput(s, "Steps", STEPS);
    await setInput(s, "Batch", 2);
    await setInput(s, "Validate every", 3);
    await click(s, ".advanced > summary");
    await waitUntil(s, "the Advanced settings to open", 5_000, "return document.querySelector('.advanced').open;");
    await setInput(s, "Hold out for validation", 0.25);
    await click(s, '[data-testid="start"]');

    // Until the run ends (finished, or the reason it did not).
    const end = await waitUntil(
      s,
      "the run to end",
      480_000,
      `const text = (sel) => document.querySelector(sel)?.textContent ?? "";
       const status = text('[data-testid="train-status"]');
       const phase = document.querySelector('[data-testid="train-status"] strong')?.textContent ?? "";
       const alert = text('#step-train [role="alert"]');
       if (alert) return { phase: "error", status, message: alert };
       return ["finished", "stopped", "failed"].includes(phase) ? { phase, status, message: text('[data-testid="train-message"]') } : null;`,
    );
    assert.equal(end.phase, "finished", `the run ended ${end.phase}: ${end.message} (${end.status})`);
    assert.match(end.status, /DPO/);
    assert.match(end.status, new RegExp(`step ${STEPS}/${STEPS}`));
    await waitFor(s, '[data-testid="train-summary"]', 30_000, (t) => /^Done: /.test(t));

    // The latest figures, the held-out ones, and both charts drawn.
    const latest = await waitFor(s, '[data-testid="preference-latest"]', 30_000, (t) => /accuracy \d+ % · margin -?[\d.e-]+/.test(t));
    assert.match(latest.text, /reward chosen -?[\d.e-]+, rejected -?[\d.e-]+/);
    const held = await waitFor(s, '[data-testid="preference-eval"]', 30_000, (t) => /held-out \(\d+ pairs, step \d+\): accuracy \d+ %/.test(t));
    assert.ok(held.text.length > 0);
    await run(s, "document.querySelector('[data-testid=\"chart-rewards\"]')?.scrollIntoView({ block: 'center' });");
    for (const id of ["chart-rewards", "chart-preference"]) {
      const chart = await waitUntil(
        s,
        `${id} to be drawn`,
        30_000,
        `const c = document.querySelector('[data-testid="' + arguments[0] + '"]');
         const canvas = c && c.querySelector("canvas");
         return canvas && canvas.width > 0 && canvas.height > 0 && Number(c.getAttribute("data-points")) >= arguments[1];`,
        id,
        STEPS,
      ).then(() => chartState(s, id));
      assert.ok(chart.canvas, `${id} has a canvas`);
      assert.ok(chart.width > 0 && chart.height > 0, `${id} is shown with a size: ${JSON.stringify(chart)}`);
      assert.ok(chart.canvasWidth > 0 && chart.canvasHeight > 0, `${id} is drawn: ${JSON.stringify(chart)}`);
      assert.ok(chart.points >= STEPS, `${id} has a point per step: ${JSON.stringify(chart)}`);
    }
    const loss = await chartState(s, "loss-chart");
    assert.equal(loss.points, STEPS, `loss chart points: ${JSON.stringify(loss)}`);
    // The two charts sit side by side, within the window.
    const boxes = await run(
      s,
      `const box = (id) => { const r = document.querySelector('[data-testid="' + id + '"]').getBoundingClientRect(); return { left: r.left, right: r.right, top: r.top }; };
       const e = document.scrollingElement;
       return { rewards: box("chart-rewards"), preference: box("chart-preference"),
                page: { scrollWidth: e.scrollWidth, width: innerWidth, scrollHeight: e.scrollHeight, height: innerHeight } };`,
    );
    assert.ok(boxes.rewards.right <= boxes.preference.left + 1, `the charts are side by side: ${JSON.stringify(boxes)}`);
    assert.ok(boxes.page.scrollWidth <= boxes.page.width && boxes.page.scrollHeight <= boxes.page.height, `the page scrolls: ${JSON.stringify(boxes.page)}`);
    await screenshot(s, "preference-training", '[data-testid="train-status"]');
    await screenshot(s, "preference-charts", '[data-testid="chart-rewards"]');

    // The run folder: a DPO run over pairs whose first step starts where DPO
    // does (policy = reference: loss ln 2, margin 0).
    if (RUNS && existsSync(RUNS)) {
      const mine = readdirSync(RUNS)
        .map((id) => join(RUNS, id))
        .filter((dir) => existsSync(join(dir, "events.jsonl")))
        .map((dir) => ({ dir, events: readFileSync(join(dir, "events.jsonl"), "utf8").trim().split("\n").map(JSON.parse) }))
        .filter((r) => r.events[0]?.event === "started" && r.events[0].method === "dpo")
        .sort((a, b) => statSync(b.dir).mtimeMs - statSync(a.dir).mtimeMs)[0];
      assert.ok(mine, `a DPO run in ${RUNS}`);
      assert.equal(mine.events.at(-1).event, "finished");
      assert.equal(mine.events[0].train_examples + mine.events[0].valid_examples, PAIRS, "started counts pairs");
      const first = mine.events.find((e) => e.event === "step");
      assert.ok(first.preference, "step events carry the pairs' figures");
      if (first.step === 1) {
        assert.ok(Math.abs(first.loss - Math.LN2) < 0.01, `DPO's first loss is ln 2: ${first.loss}`);
        assert.ok(Math.abs(first.preference.margin) < 0.01, `DPO's first margin is 0: ${first.preference.margin}`);
      }
      assert.ok(mine.events.some((e) => e.event === "eval" && e.preference), "evaluations carry the held-out pairs' figures");
    }
  } finally {
    await call("DELETE", `/session/${s}`);
  }
});
