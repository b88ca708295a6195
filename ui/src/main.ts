import { mount } from "svelte";
import "./app.css";

// If the UI cannot start, say why in the window instead of showing nothing.
function showFatal(error: unknown) {
  const box = document.createElement("pre");
  box.setAttribute("role", "alert");
  box.className = "fatal";
  box.textContent = `FineTune's window failed to start:\n${error instanceof Error ? `${error.message}\n${error.stack ?? ""}` : String(error)}`;
  document.body.prepend(box);
}

window.addEventListener("error", (e) => showFatal(e.error ?? e.message));
window.addEventListener("unhandledrejection", (e) => showFatal(e.reason));

// WebKitGTK reports the POSIX locale of servers and containers as "C", which
// is not a BCP 47 tag: `Intl` (used by the chart library as it loads) throws
// on it. Fall back to English there.
try {
  Intl.getCanonicalLocales(navigator.language);
} catch {
  Object.defineProperty(navigator, "language", { value: "en-US", configurable: true });
  Object.defineProperty(navigator, "languages", { value: ["en-US"], configurable: true });
}

const target = document.getElementById("app");
if (!target) throw new Error("index.html has no #app element");
// Loaded dynamically so that a failure while evaluating the UI's modules
// reaches showFatal too.
import("./App.svelte").then(({ default: App }) => mount(App, { target })).catch(showFatal);
