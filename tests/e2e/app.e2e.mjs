// End-to-end: drives the real FineTune window (Tauri + WebKitGTK) through
// tauri-driver and WebKitWebDriver with plain W3C WebDriver calls.
// Opens the app, waits for the measured device report, trains the bundled
// default model on the sample data for a few steps from the Train panel, and
// checks the live chart, the summary and the run folder. Saves a screenshot.
//
// Run by scripts/e2e.sh (which starts Xvfb and tauri-driver).
import { strict as assert } from "node:assert";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

const DRIVER = process.env.TAURI_DRIVER_URL ?? "http://127.0.0.1:4444";
const APP = process.env.FINETUNE_APP;
const RUNS = process.env.FINETUNE_RUNS;
const OUT = process.env.E2E_OUT ?? "target/e2e";
const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";

async function call(method, path, body) {
  const response = await fetch(`${DRIVER}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json.value)}`);
  return json.value;
}

async function waitFor(session, selector, timeoutMs, predicate = () => true) {
  const deadline = Date.now() + timeoutMs;
  let last = null;
  while (Date.now() < deadline) {
    try {
      const el = await call("POST", `/session/${session}/element`, { using: "css selector", value: selector });
      last = await call("GET", `/session/${session}/element/${el[ELEMENT]}/text`);
      if (predicate(last)) return { id: el[ELEMENT], text: last };
    } catch {
      // not there yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${selector} (last text: ${last})`);
}

async function setInput(session, label, value) {
  const el = await call("POST", `/session/${session}/element`, {
    using: "xpath",
    value: `//label[contains(., '${label}')]/input`,
  });
  await call("POST", `/session/${session}/element/${el[ELEMENT]}/clear`, {});
  await call("POST", `/session/${session}/element/${el[ELEMENT]}/value`, { text: String(value) });
}

test("trains the default model from the window and shows live progress", { timeout: 600_000 }, async () => {
  assert.ok(APP, "FINETUNE_APP must point at the built app");
  const { sessionId } = await call("POST", "/session", {
    capabilities: { alwaysMatch: { "tauri:options": { application: APP } } },
  });
  try {
    const gflops = await waitFor(sessionId, '[data-testid="gflops"]', 60_000);
    assert.match(gflops.text, /GFLOP\/s/);
    const files = await waitFor(sessionId, '[data-testid="default-files"]', 10_000);
    assert.match(files.text, /SmolLM2-135M-Instruct/);

    await setInput(sessionId, "Steps", 3);
    await setInput(sessionId, "Max length", 64);
    await setInput(sessionId, "Validate every", 0);
    const start = await call("POST", `/session/${sessionId}/element`, {
      using: "css selector",
      value: '[data-testid="start"]',
    });
    await call("POST", `/session/${sessionId}/element/${start[ELEMENT]}/click`, {});

    const status = await waitFor(sessionId, '[data-testid="train-status"]', 60_000, (t) => /step [1-3]\/3/.test(t));
    assert.match(status.text, /loss \d/);
    const summary = await waitFor(sessionId, '[data-testid="train-summary"]', 400_000);
    assert.match(summary.text, /Done: 3 steps/);
    const chart = await call("POST", `/session/${sessionId}/element`, {
      using: "css selector",
      value: '[data-testid="loss-chart"] canvas',
    });
    assert.ok(chart[ELEMENT], "the chart draws on a canvas");

    mkdirSync(OUT, { recursive: true });
    const png = await call("GET", `/session/${sessionId}/screenshot`);
    writeFileSync(join(OUT, "train.png"), Buffer.from(png, "base64"));

    // The run folder the CLI also reads.
    const runs = readdirSync(RUNS);
    assert.equal(runs.length, 1);
    const events = readFileSync(join(RUNS, runs[0], "events.jsonl"), "utf8").trim().split("\n").map(JSON.parse);
    assert.equal(events[0].event, "started");
    assert.equal(events.at(-1).event, "finished");
    assert.equal(events.filter((e) => e.event === "step").length, 3);
  } finally {
    await call("DELETE", `/session/${sessionId}`);
  }
});
