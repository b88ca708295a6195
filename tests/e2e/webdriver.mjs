// Plain W3C WebDriver calls to tauri-driver, and the gestures the
// end-to-end tests share: waiting for text, opening a sidebar step, a real
// drag and drop onto the window, screenshots. Not a test file itself (the
// runner takes *.e2e.mjs).
import { strict as assert } from "node:assert";
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const DRIVER = process.env.TAURI_DRIVER_URL ?? "http://127.0.0.1:4444";
const DRAG = process.env.E2E_DRAG;
export const OUT = process.env.E2E_OUT ?? "target/e2e";
const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";

export async function call(method, path, body) {
  const response = await fetch(`${DRIVER}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json.value)}`);
  return json.value;
}

/** A session on the app. tauri-driver starts WebKitWebDriver for each one;
 * on a busy machine the first connection can be refused before it listens:
 * retried. */
export async function openSession(app) {
  for (let attempt = 1; ; attempt++) {
    try {
      const { sessionId } = await call("POST", "/session", {
        capabilities: { alwaysMatch: { "tauri:options": { application: app } } },
      });
      return sessionId;
    } catch (e) {
      if (attempt === 5) throw e;
      await new Promise((r) => setTimeout(r, 1000 * attempt));
    }
  }
}

export async function find(session, selector, using = "css selector") {
  const el = await call("POST", `/session/${session}/element`, { using, value: selector });
  return el[ELEMENT];
}

/** Runs `script` in the page (its `arguments` are `args`). */
export function run(session, script, ...args) {
  return call("POST", `/session/${session}/execute/sync`, { script, args });
}

export async function waitFor(session, selector, timeoutMs, predicate = () => true) {
  const deadline = Date.now() + timeoutMs;
  let last = null;
  while (Date.now() < deadline) {
    try {
      const id = await find(session, selector);
      last = await call("GET", `/session/${session}/element/${id}/text`);
      if (predicate(last)) return { id, text: last };
    } catch {
      // not there yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${selector} (last text: ${last})`);
}

/** Polls a page script until it returns something truthy. */
export async function waitUntil(session, what, timeoutMs, script, ...args) {
  const deadline = Date.now() + timeoutMs;
  let last = null;
  while (Date.now() < deadline) {
    try {
      last = await run(session, script, ...args);
      if (last) return last;
    } catch (e) {
      last = String(e);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

export async function attribute(session, selector, name) {
  const id = await find(session, selector);
  return call("GET", `/session/${session}/element/${id}/attribute/${name}`);
}

export async function click(session, selector, using) {
  await call("POST", `/session/${session}/element/${await find(session, selector, using)}/click`, {});
}

export async function type(session, selector, value) {
  const id = await find(session, selector);
  await call("POST", `/session/${session}/element/${id}/clear`, {});
  await call("POST", `/session/${session}/element/${id}/value`, { text: String(value) });
}

export async function setInput(session, label, value) {
  const id = await find(session, `//label[contains(., '${label}')]/input`, "xpath");
  await call("POST", `/session/${session}/element/${id}/clear`, {});
  await call("POST", `/session/${session}/element/${id}/value`, { text: String(value) });
}

export async function choose(session, selectTestId, value) {
  await click(session, `[data-testid="${selectTestId}"] option[value="${value}"]`);
}

/** Opens a step from the sidebar and waits until it is the one shown. */
export async function show(session, step) {
  await click(session, `[data-testid="nav-${step}"]`);
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline) {
    const [current, hidden] = await run(
      session,
      `return [document.querySelector('[data-testid="nav-' + arguments[0] + '"]').getAttribute("aria-current"),
               document.getElementById("step-" + arguments[0]).hidden];`,
      step,
    );
    if (current === "step" && !hidden) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`step ${step} was not shown`);
}

// Where the window sits on the virtual screen: right of the drag source's
// corner (scripts/e2e_drag.py opens at 0,0).
export const WINDOW = { x: 240, y: 0, width: 1280, height: 800 };

/**
 * A real drag and drop of `path` onto the window: an X drag source offering
 * it as a file URI, the pointer moved by xdotool, Tauri's native drop event.
 */
export function drop(path) {
  assert.ok(DRAG && process.env.DISPLAY, "E2E_DRAG and DISPLAY are set by scripts/e2e.sh");
  const x = WINDOW.x + WINDOW.width / 2;
  const y = WINDOW.y + WINDOW.height / 2;
  execFileSync("/usr/bin/python3", [DRAG, path, String(x), String(y)], { stdio: "inherit", timeout: 60_000 });
}

/** Scrolls `selector` into view, then saves the window as `name`.png. */
export async function screenshot(session, name, selector) {
  if (selector) await run(session, "document.querySelector(arguments[0])?.scrollIntoView({ block: 'start' });", selector);
  mkdirSync(OUT, { recursive: true });
  const png = await call("GET", `/session/${session}/screenshot`);
  writeFileSync(join(OUT, `${name}.png`), Buffer.from(png, "base64"));
}

/**
 * Opens the app in a session with its window where drops land, and the tiny
 * model dropped on it (once the default model has been looked at, so that
 * its answer cannot come after the drop's). Returns the session.
 */
export async function openWithModel(app, model) {
  const s = await openSession(app);
  try {
    await waitFor(s, '[data-testid="start"]', 60_000);
    await call("POST", `/session/${s}/window/rect`, WINDOW).catch(() => {});
    // Give the window a moment to settle where it was moved before dropping.
    await new Promise((r) => setTimeout(r, 500));
    await show(s, "model");
    await waitUntil(
      s,
      "the Model step to show the default model",
      60_000,
      `return document.querySelector('[data-testid="model-info"], [data-testid="model-offer"], #step-model [role="alert"]') !== null;`,
    ).catch(() => {});
    drop(model);
    await waitFor(s, '[data-testid="model-info"]', 120_000, (t) => /llama, 2 layers/.test(t));
  } catch (e) {
    await call("DELETE", `/session/${s}`).catch(() => {});
    throw e;
  }
  return s;
}
