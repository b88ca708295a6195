// End-to-end: GRPO in the real FineTune window (Tauri + WebKitGTK), driven
// through tauri-driver like preference.e2e.mjs. A prompt-only set (GSM8K's
// shape: `question`, and an `answer` after ####) is dropped on the window;
// the Dataset step must count prompts and answers and preview them, the
// Train step must have switched to GRPO with the exact-match reward, and a
// short run (sampling two answers per prompt on the tiny random model,
// evaluated on held-out prompts) must draw the reward chart and report the
// figures. Screenshots go to E2E_OUT (target/e2e/grpo-*.png).
import { strict as assert } from "node:assert";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { OUT, call, click, drop, openWithModel, run, screenshot, setInput, show, waitFor, waitUntil } from "./webdriver.mjs";

const APP = process.env.FINETUNE_APP;
const RUNS = process.env.FINETUNE_RUNS;
const TINY = process.env.FINETUNE_TINY_MODEL;

const PROMPTS = 16;
const STEPS = 4;

function writePromptSet(path) {
  const lines = Array.from({ length: PROMPTS }, (_, i) =>
    JSON.stringify({ question: `What is ${4 + i} plus ${i}?`, answer: `${4 + i} + ${i} = ${4 + 2 * i}\n#### ${4 + 2 * i}` }),
  );
  writeFileSync(path, lines.join("\n") + "\n");
}

test("a prompt set trains with GRPO, with its reward chart", { timeout: 600_000 }, async () => {
  assert.ok(APP, "FINETUNE_APP must point at the built app");
  assert.ok(TINY && existsSync(TINY), "FINETUNE_TINY_MODEL must point at a tiny model");
  mkdirSync(OUT, { recursive: true });
  const data = resolve(join(OUT, "grpo-prompts.jsonl"));
  writePromptSet(data);

  const s = await openWithModel(APP, TINY);
  try {

    // The prompts: counted with their answers, previewed as the model
    // continues them.
    drop(data);
    await waitFor(s, '[data-testid="summary-data"]', 30_000, (t) => t.includes("grpo-prompts.jsonl"));
    await show(s, "data");
    const prompts = await waitFor(s, '[data-testid="dataset-prompts"]', 120_000, (t) => /\b16 prompts/.test(t));
    assert.equal(prompts.text, "16 prompts, 16 with a reference answer");
    const previews = await run(
      s,
      `const all = (id) => [...document.querySelectorAll('#step-data [data-testid="' + id + '"]')].map((e) => e.textContent);
       return { prompts: all("preview-prompt"), answers: all("preview-answer"),
                summary: document.querySelector('[data-testid="summary-prompts"]')?.textContent ?? "" };`,
    );
    assert.ok(previews.prompts.length >= 1, `previews: ${JSON.stringify(previews)}`);
    assert.match(previews.prompts[0], /What is 4 plus 0\?/);
    assert.match(previews.answers[0], /Reference answer: 4 \+ 0 = 4\s+#### 4/);
    assert.match(previews.summary, /16 prompts \(GRPO\)/);
    await screenshot(s, "grpo-dataset", '[data-testid="data-stats"]');

    // Train: GRPO, with the exact-match reward; the other methods are off.
    await show(s, "train");
    const method = await waitUntil(
      s,
      "the method to switch to GRPO",
      30_000,
      `const m = document.querySelector('[data-testid="train-method"]');
       const kinds = [...document.querySelectorAll('[data-testid="reward-kind"]')].map((k) => k.value);
       return m && m.value === "grpo" && kinds.length
         ? { kinds, sftDisabled: m.querySelector('option[value="sft"]').disabled, dpoDisabled: m.querySelector('option[value="dpo"]').disabled }
         : null;`,
    );
    assert.deepEqual(method.kinds, ["exact_match"]);
    assert.ok(method.sftDisabled && method.dpoDisabled, `SFT and DPO are off for prompts: ${JSON.stringify(method)}`);

    await setInput(s, "Steps", STEPS);
    await setInput(s, "Batch", 2);
    await setInput(s, "Answers per prompt", 2);
    await setInput(s, "Answer tokens", 8);
    await setInput(s, "Validate every", 2);
    await click(s, ".advanced > summary");
    await waitUntil(s, "the Advanced settings to open", 5_000, "return document.querySelector('.advanced').open;");
    await setInput(s, "Hold out for validation", 0.25);
    await waitFor(s, '[data-testid="memory-estimate"]', 30_000, (t) => /12 prompts, 4 steps \(batch 2 × 2 answers\)/.test(t));
    await click(s, '[data-testid="start"]');

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
    assert.match(end.status, /GRPO/);
    assert.match(end.status, new RegExp(`step ${STEPS}/${STEPS}`));
    assert.match(end.status, /best held-out reward/);

    const latest = await waitFor(s, '[data-testid="grpo-latest"]', 30_000, (t) => /^reward -?[\d.e-]+ ± [\d.e-]+ · exact_match [\d.e-]+ · KL/.test(t));
    assert.match(latest.text, /[\d.]+ tokens per answer, \d+ % cut at the limit · sampling [\d.]+ s/);
    await waitFor(s, '[data-testid="grpo-eval"]', 30_000, (t) => /^held-out \(4 prompts, greedy, step \d\): reward [\d.e-]+ · exact_match/.test(t));
    await run(s, "document.querySelector('[data-testid=\"chart-grpo\"]')?.scrollIntoView({ block: 'center' });");
    await waitUntil(
      s,
      "the reward chart to be drawn",
      30_000,
      `const c = document.querySelector('[data-testid="chart-grpo"]');
       const canvas = c && c.querySelector("canvas");
       return canvas && canvas.width > 0 && canvas.height > 0 && canvas.getBoundingClientRect().height > 0 && Number(c.getAttribute("data-points")) >= arguments[0];`,
      STEPS,
    );
    const none = await run(s, `return ["chart-rewards", "chart-preference"].filter((id) => document.querySelector('[data-testid="' + id + '"]'));`);
    assert.deepEqual(none, [], "no preference charts in a GRPO run");
    await screenshot(s, "grpo-training", '[data-testid="chart-grpo"]');

    // The run folder: a GRPO run over the prompts, its steps and
    // evaluations carrying the completions' figures.
    if (RUNS && existsSync(RUNS)) {
      const mine = readdirSync(RUNS)
        .map((id) => join(RUNS, id))
        .filter((dir) => existsSync(join(dir, "events.jsonl")))
        .map((dir) => ({ dir, events: readFileSync(join(dir, "events.jsonl"), "utf8").trim().split("\n").map(JSON.parse) }))
        .filter((r) => r.events[0]?.event === "started" && r.events[0].method === "grpo")
        .sort((a, b) => statSync(b.dir).mtimeMs - statSync(a.dir).mtimeMs)[0];
      assert.ok(mine, `a GRPO run in ${RUNS}`);
      assert.equal(mine.events.at(-1).event, "finished");
      assert.equal(mine.events[0].train_examples + mine.events[0].valid_examples, PROMPTS, "started counts prompts");
      const steps = mine.events.filter((e) => e.event === "step");
      assert.equal(steps.length, STEPS);
      for (const e of steps) {
        assert.equal(e.grpo.completions, 4, "2 prompts × 2 answers a step");
        assert.ok(e.grpo.completion_length >= 1 && e.grpo.completion_length <= 8, `answers of 1–8 tokens: ${e.grpo.completion_length}`);
        assert.deepEqual(e.grpo.rewards.map((r) => r[0]), ["exact_match"]);
      }
      const evals = mine.events.filter((e) => e.event === "eval");
      assert.ok(evals.length >= 1 && evals.every((e) => e.grpo && Math.abs(e.val_loss + e.grpo.reward_mean) < 1e-6), "evaluations: val_loss is the negated reward");
    }
  } finally {
    await call("DELETE", `/session/${s}`);
  }
});
