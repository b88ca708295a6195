// End-to-end: drives the real FineTune window (Tauri + WebKitGTK) through
// tauri-driver and WebKitWebDriver with plain W3C WebDriver calls. Each
// screen is asserted and photographed (target/e2e/*.png):
// the model (a tiny random one, dropped on the window as from a file
// manager), the sample dataset's statistics, then a dataset file dropped too,
// a template with its preview, live training (chart points and memory
// figures that change), Stop, the run in the history, and an export.
// Each step is a sidebar entry: the test opens it first, as a person would
// (the other steps are hidden, and WebDriver only clicks what is shown).
//
// Run by scripts/e2e.sh (which starts Xvfb and tauri-driver and writes the
// tiny model).
import { strict as assert } from "node:assert";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { OUT, attribute, call, choose, click, drop, openSession, screenshot, setInput, show, waitFor, WINDOW } from "./webdriver.mjs";

const APP = process.env.FINETUNE_APP;
const RUNS = process.env.FINETUNE_RUNS;
const TINY = process.env.FINETUNE_TINY_MODEL;
// The installed package (scripts/dist/test_installed.sh), not a clone's build.
const INSTALLED = process.env.FINETUNE_INSTALLED === "1";

/** The texts of every place that names the selection. */
async function namedSelection(session) {
  return call("POST", `/session/${session}/execute/sync`, {
    script: `const text = (id) => document.querySelector('[data-testid="' + id + '"]')?.textContent ?? "";
             return { summaryModel: text("summary-model"), summaryData: text("summary-data"),
                      navModel: text("nav-hint-model"), navData: text("nav-hint-data"),
                      modelInfo: text("model-info"), dataStats: text("data-stats"), dataPanel: document.getElementById("step-data").textContent };`,
    args: [],
  });
}


test("from a model and a dataset to a trained, stopped and exported run", { timeout: 600_000 }, async () => {
  assert.ok(APP, "FINETUNE_APP must point at the built app");
  assert.ok(TINY && existsSync(TINY), "FINETUNE_TINY_MODEL must point at a tiny model");
  const launched = Date.now();
  const s = await openSession(APP);
  try {
    // Launch to interactive: the Start button can be pressed.
    await waitFor(s, '[data-testid="start"]', 30_000);
    const interactiveMs = Date.now() - launched;
    // The size the layout is made for (where the window can be resized).
    await call("POST", `/session/${s}/window/rect`, WINDOW).catch(() => {});
    await show(s, "machine");
    const gflops = await waitFor(s, '[data-testid="gflops"]', 60_000);
    assert.match(gflops.text, /GFLOP\/s/);

    // Model: the default one first (in a clone SmolLM2 from the cache; an
    // installed app's, placed in the Hugging Face cache as if downloaded, is
    // the tiny one), then the tiny one dropped on the window.
    await show(s, "model");
    if (INSTALLED) {
      const cached = await waitFor(s, '[data-testid="model-info"]', 60_000, (t) => /llama, 2 layers/.test(t));
      assert.match(cached.text, /huggingface\/hub\/models--HuggingFaceTB--SmolLM2-135M-Instruct/);
    } else {
      const bundled = await waitFor(s, '[data-testid="model-info"]', 60_000, (t) => /llama, 30 layers/.test(t));
      assert.match(bundled.text, /134,515,008/);
    }
    // The tiny model's folder dropped on the window, as from a file manager.
    drop(TINY);
    await waitFor(s, '[data-testid="model-info"]', 60_000, (t) => /llama, 2 layers/.test(t));
    await screenshot(s, "model", '[data-testid="model-info"]');

    // Dataset: the sample data, tokenized with the tiny model's tokenizer.
    await show(s, "data");
    const records = await waitFor(s, '[data-testid="data-records"]', 120_000, (t) => /\d/.test(t));
    assert.match(records.text, /2,000|1,9\d\d/);
    const stats = await waitFor(s, '[data-testid="data-stats"]', 5_000);
    assert.match(stats.text, /valid\.jsonl/);
    await screenshot(s, "dataset", '[data-testid="data-stats"]');

    // A dataset file dropped on the window: every place that names the
    // selection names the dropped files, none the bundled ones.
    const dropped = join(OUT, "dropped-chat.jsonl");
    mkdirSync(OUT, { recursive: true });
    writeFileSync(
      dropped,
      Array.from({ length: 40 }, (_, i) =>
        JSON.stringify({ messages: [{ role: "user", content: `Question ${i}?` }, { role: "assistant", content: `Answer ${i}.` }] }),
      ).join("\n") + "\n",
    );
    drop(dropped);
    await waitFor(s, '[data-testid="data-records"]', 120_000, (t) => /^\s*40\b/.test(t) || /\b40\b/.test(t));
    const named = await namedSelection(s);
    const tinyName = TINY.split("/").filter(Boolean).pop();
    assert.ok(named.summaryModel.includes(TINY), `summary names the dropped model: ${named.summaryModel}`);
    assert.ok(named.summaryData.includes(dropped), `summary names the dropped dataset: ${named.summaryData}`);
    assert.ok(named.navModel.includes(tinyName), `sidebar names the dropped model: ${named.navModel}`);
    assert.ok(named.navData.includes("dropped-chat.jsonl"), `sidebar names the dropped dataset: ${named.navData}`);
    assert.ok(named.modelInfo.includes(TINY), `the Model step shows the dropped model: ${named.modelInfo}`);
    assert.ok(named.dataPanel.includes("dropped-chat.jsonl"), "the Dataset step shows the dropped file");
    for (const text of [named.summaryModel, named.summaryData, named.navModel, named.navData]) {
      assert.ok(!/SmolLM2|chitchat|sample data|bundled/.test(text), `a bundled default is still named: ${text}`);
    }
    await screenshot(s, "dropped", '[data-testid="summary"]');

    // Template: alpaca, and its preview with the trained reply highlighted.
    await show(s, "template");
    await choose(s, "template-select", "alpaca");
    const preview = await waitFor(s, '[data-testid="template-preview"]', 60_000, (t) => t.includes("### Response:"));
    assert.ok(preview.text.length > 20);
    const marked = await waitFor(s, '[data-testid="template-preview"] mark', 10_000);
    assert.ok(marked.text.length > 0, "the trained text is highlighted");
    await screenshot(s, "template", '[data-testid="template-select"]');

    // Train: long enough to watch, then stop.
    await show(s, "train");
    await setInput(s, "Steps", 500);
    await setInput(s, "Max length", 64);
    await setInput(s, "Validate every", 5);
    await click(s, '[data-testid="start"]');
    const started = Date.now();
    // Before the first training event the run prepares its data (on a fresh
    // clone it tokenizes the whole dataset with the chosen template, over
    // 3 s on a slow 2-core machine), so the untouched window below begins at
    // that event. Waiting for it reads a number only: no layout.
    const readPerf = () => call("POST", `/session/${s}/execute/sync`, { script: "return { ...window.__finetunePerf };", args: [] });
    while ((await readPerf()).events === 0) {
      assert.ok(Date.now() - started < 120_000, "no training event within 2 minutes of Start");
      await new Promise((r) => setTimeout(r, 100));
    }
    const firstEventMs = Date.now() - started;
    // The window's own measurements (src/lib/perf.ts) over the first three
    // seconds of training, in which this test sends the page nothing: each
    // WebDriver command (finding an element, reading its text) runs in the
    // page and lays it out, which a person using the window never does. The
    // stall measurement starts at the first training event, so this covers
    // the start of training and its first redraws.
    await new Promise((r) => setTimeout(r, 3000));
    const untouched = await readPerf();
    assert.ok(untouched.events > 5, `training events in the first seconds: ${untouched.events}`);
    await waitFor(s, '[data-testid="train-status"]', 120_000, (t) => /step [2-9]\d*\/500/.test(t));
    const gauge1 = await waitFor(s, '[data-testid="memory-gauge"]', 5_000, (t) => /MLX peak \d/.test(t));
    // The status and the chart are read in one go: the panel redraws them
    // together a few times a second, so reading them apart can straddle a
    // redraw.
    const snapshot = () =>
      call("POST", `/session/${s}/execute/sync`, {
        script: `return [document.querySelector('[data-testid="train-status"]').textContent,
                         document.querySelector('[data-testid="loss-chart"]').getAttribute("data-points")];`,
        args: [],
      });
    const [firstText, firstPoints] = await snapshot();
    const points1 = Number(firstPoints);
    assert.ok(points1 >= 2, `chart points: ${points1}`);
    const firstStep = Number(/step (\d+)\//.exec(firstText)[1]);
    const later = await waitFor(s, '[data-testid="train-status"]', 120_000, (t) => {
      const m = /step (\d+)\/500/.exec(t);
      return m && Number(m[1]) >= firstStep + 3;
    });
    assert.notEqual(later.text, firstText);
    const points2 = Number(await attribute(s, '[data-testid="loss-chart"]', "data-points"));
    assert.ok(points2 > points1, `chart grew: ${points1} -> ${points2}`);
    // The learning-rate / tokens-per-second chart follows the same steps,
    // drawn (uPlot's canvas) a task after the loss chart.
    const [ratePoints, rateCanvas] = await call("POST", `/session/${s}/execute/sync`, {
      script: `const c = document.querySelector('[data-testid="rate-chart"]');
               return [c.getAttribute("data-points"), c.querySelectorAll("canvas").length];`,
      args: [],
    });
    assert.ok(Number(ratePoints) >= points1, `rate chart points: ${ratePoints}`);
    assert.ok(rateCanvas >= 1, "the rate chart is drawn");
    assert.match(gauge1.text, /system free/);
    // The same measurements since the start of training, now including the
    // commands of this test; read before the screenshot, which holds the
    // page's main thread while WebKit renders it.
    const perf = await readPerf();
    await screenshot(s, "training", '[data-testid="train-status"]');
    const seconds = (perf.lastEventAt - perf.firstEventAt) / 1000;
    const figures = {
      launch_to_interactive_ms: interactiveMs,
      start_to_first_training_event_ms: firstEventMs,
      longest_stall_ms: Math.round(untouched.longestStallMs * 10) / 10,
      longest_stall_at_ms: Math.round(untouched.longestStallAt),
      longest_redraw_ms: Math.round(untouched.longestRenderMs * 10) / 10,
      untouched_training_seconds: Math.round(untouched.lastEventAt - untouched.firstEventAt) / 1000,
      with_test_commands_longest_stall_ms: Math.round(perf.longestStallMs * 10) / 10,
      with_test_commands_longest_redraw_ms: Math.round(perf.longestRenderMs * 10) / 10,
      training_events: perf.events,
      events_per_second: Math.round((perf.events / Math.max(seconds, 1e-3)) * 10) / 10,
    };
    mkdirSync(OUT, { recursive: true });
    writeFileSync(join(OUT, "perf.json"), JSON.stringify(figures, null, 1));
    console.log(`# perf ${JSON.stringify(figures)}`);
    // The window never scrolls as a page (the step's panel scrolls inside
    // itself), and the training view keeps its chart across a switch.
    const page = await call("POST", `/session/${s}/execute/sync`, {
      script: `const e = document.scrollingElement;
               return { scrollHeight: e.scrollHeight, scrollWidth: e.scrollWidth, height: innerHeight, width: innerWidth };`,
      args: [],
    });
    console.log(`# window ${JSON.stringify(page)}`);
    assert.ok(page.scrollHeight <= page.height && page.scrollWidth <= page.width, `the page scrolls: ${JSON.stringify(page)}`);
    await show(s, "runs");
    await show(s, "train");
    const points3 = Number(await attribute(s, '[data-testid="loss-chart"]', "data-points"));
    assert.ok(points3 >= points2, `the chart kept its points across a switch: ${points2} -> ${points3}`);
    await click(s, '[data-testid="stop"]');
    const stopped = await waitFor(s, '[data-testid="train-message"]', 120_000, (t) => /Stopped at step/.test(t));
    assert.match(stopped.text, /cancelled/);

    // Runs: the stopped run, exported to GGUF Q4_K_M (the picker shows each
    // type's size before writing) and to Ollama; each export is checked
    // against the trained model and the check's table is shown.
    await show(s, "runs");
    await waitFor(s, '[data-testid="run-row"]', 30_000, (t) => /stopped/.test(t));
    await click(s, '[data-testid="export-open"]');
    const q4 = await waitFor(s, '[data-testid="export-quant"] option[value="q4_k_m"]', 120_000, (t) => /B$/.test(t));
    assert.match(q4.text, /^q4_k_m — \d+(\.\d)? (B|KiB|MiB|GiB)$/);
    await choose(s, "export-target", "gguf");
    await choose(s, "export-quant", "q4_k_m");
    await click(s, '[data-testid="export-start"]');
    const gguf = await waitFor(s, '[data-testid="export-message"]', 600_000, (t) => /^Wrote /.test(t));
    assert.match(gguf.text, /model-q4_k_m\.gguf/);
    const verdict = await waitFor(s, '[data-testid="export-verdict"]', 30_000);
    assert.equal(verdict.text, "passed");
    const checkTable = await waitFor(s, '[data-testid="export-check"]', 30_000);
    assert.match(checkTable.text, /perplexity/);
    assert.match(checkTable.text, /template/);
    await screenshot(s, "export-check", '[data-testid="export-check"]');
    await choose(s, "export-target", "ollama");
    await click(s, '[data-testid="export-start"]');
    const ollama = await waitFor(s, '[data-testid="export-message"]', 600_000, (t) => /^Wrote .*export-ollama/.test(t));
    assert.match(ollama.text, /export-ollama-q4_k_m/);
    assert.equal((await waitFor(s, '[data-testid="export-verdict"]', 30_000)).text, "passed");
    await screenshot(s, "runs", '[data-testid="runs-table"]');

    // The run folder the CLI also reads.
    const runs = readdirSync(RUNS);
    assert.equal(runs.length, 1);
    const dir = join(RUNS, runs[0]);
    const events = readFileSync(join(dir, "events.jsonl"), "utf8").trim().split("\n").map(JSON.parse);
    assert.equal(events[0].event, "started");
    assert.equal(events.at(-1).event, "stopped");
    assert.ok(existsSync(join(dir, "export-gguf-q4_k_m", "model-q4_k_m.gguf")));
    assert.ok(existsSync(join(dir, "export-gguf-q4_k_m", "model-q4_k_m.check.md")));
    assert.ok(existsSync(join(dir, "export-ollama-q4_k_m", "Modelfile")));
    assert.ok(existsSync(join(dir, "export-ollama-q4_k_m", "model-q4_k_m.gguf")));
    const config = readFileSync(join(dir, "config.yaml"), "utf8");
    assert.match(config, /template: alpaca/);
  } finally {
    await call("DELETE", `/session/${s}`);
  }
});
