// End-to-end: a run spread over two ranks in the real FineTune window
// (Tauri + WebKitGTK), driven through tauri-driver. A hostfile of two
// entries on this machine is named in Train → Advanced; the window must
// list its ranks, train over them (the ranks are `ft train rank` processes
// the app starts, over MLX's ring backend on loopback), show each rank's
// state, and draw rank 0's loss chart. Screenshots go to E2E_OUT
// (target/e2e/spread-*.png).
import { strict as assert } from "node:assert";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { OUT, call, click, drop, openWithModel, run, screenshot, setInput, show, waitFor, waitUntil } from "./webdriver.mjs";

const APP = process.env.FINETUNE_APP;
const RUNS = process.env.FINETUNE_RUNS;
const TINY = process.env.FINETUNE_TINY_MODEL;
const STEPS = 4;

function writeChats(path) {
  const lines = Array.from({ length: 16 }, (_, i) =>
    JSON.stringify({ messages: [{ role: "user", content: `Count to ${i + 2}.` }, { role: "assistant", content: Array.from({ length: i + 2 }, (_, k) => k + 1).join(", ") }] }),
  );
  writeFileSync(path, lines.join("\n") + "\n");
}

test("a run spread over a hostfile's two ranks shows each rank and rank 0's charts", { timeout: 600_000 }, async () => {
  assert.ok(APP, "FINETUNE_APP must point at the built app");
  assert.ok(TINY && existsSync(TINY), "FINETUNE_TINY_MODEL must point at a tiny model");
  mkdirSync(OUT, { recursive: true });
  const data = resolve(join(OUT, "spread-chats.jsonl"));
  writeChats(data);
  const hostfile = resolve(join(OUT, "spread-hosts.json"));
  writeFileSync(hostfile, JSON.stringify([{ ssh: "localhost", ips: ["127.0.0.1"] }, { ssh: "localhost", ips: ["127.0.0.1"] }]));

  const s = await openWithModel(APP, TINY);
  try {
    drop(data);
    await waitFor(s, '[data-testid="summary-data"]', 30_000, (t) => t.includes("spread-chats.jsonl"));
    await show(s, "train");
    await setInput(s, "Steps", STEPS);
    await setInput(s, "Batch", 4);
    await setInput(s, "Validate every", 0);
    await click(s, ".advanced > summary");
    await waitUntil(s, "the Advanced settings to open", 5_000, "return document.querySelector('.advanced').open;");
    await setInput(s, "Spread over machines", hostfile);
    // The setting is read when the field is left.
    await run(s, "document.activeElement.blur();");
    const ranks = await waitFor(s, '[data-testid="hostfile-ranks"]', 30_000);
    assert.equal(ranks.text, "2 ranks, data parallel: 0 on 127.0.0.1 (this machine) · 1 on 127.0.0.1 (this machine)");
    await click(s, '[data-testid="start"]');

    const end = await waitUntil(
      s,
      "the run to end",
      300_000,
      `const text = (sel) => document.querySelector(sel)?.textContent ?? "";
       const phase = document.querySelector('[data-testid="train-status"] strong')?.textContent ?? "";
       const alert = text('#step-train [role="alert"]');
       if (alert) return { phase: "error", message: alert };
       return ["finished", "stopped", "failed"].includes(phase) ? { phase, status: text('[data-testid="train-status"]'), message: text('[data-testid="train-message"]') } : null;`,
    );
    assert.equal(end.phase, "finished", `the run ended ${end.phase}: ${end.message} (${end.status})`);
    assert.match(end.status, new RegExp(`step ${STEPS}/${STEPS}`));
    // Each rank's state: both finished once the launcher saw them leave.
    const hosts = await waitUntil(
      s,
      "both ranks to be shown finished",
      30_000,
      `const rows = [...document.querySelectorAll('[data-testid="hosts"] tbody tr')].map((r) => [...r.querySelectorAll("td")].map((td) => td.textContent));
       return rows.length === 2 && rows.every((r) => r[2] === "finished") ? rows : null;`,
    );
    assert.deepEqual(hosts.map((r) => r[0]), ["0", "1"]);
    await waitUntil(
      s,
      "rank 0's loss chart to be drawn",
      30_000,
      `const c = document.querySelector('[data-testid="loss-chart"]');
       const canvas = c && c.querySelector("canvas");
       return canvas && canvas.width > 0 && canvas.getBoundingClientRect().height > 0 && Number(c.getAttribute("data-points")) >= arguments[0];`,
      STEPS,
    );
    await screenshot(s, "spread-training", '[data-testid="hosts"]');

    // Rank 0 recorded the run once, split over the two ranks.
    if (RUNS && existsSync(RUNS)) {
      const mine = readdirSync(RUNS)
        .map((id) => join(RUNS, id))
        .filter((dir) => existsSync(join(dir, "events.jsonl")))
        .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
      const events = readFileSync(join(mine, "events.jsonl"), "utf8").trim().split("\n").map(JSON.parse);
      assert.equal(events.filter((e) => e.event === "started").length, 1);
      assert.ok(events[0].warnings.some((w) => w.includes("data parallel over ring: 2 rank(s)")), JSON.stringify(events[0].warnings));
      assert.equal(events.filter((e) => e.event === "step").length, STEPS);
      assert.equal(events.at(-1).event, "finished");
    }
  } finally {
    await call("DELETE", `/session/${s}`);
  }
});
