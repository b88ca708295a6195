import { defineConfig } from "vitest/config";
import { svelte } from "@sveltejs/vite-plugin-svelte";

// Tauri serves the built files; the dev server is for `tauri dev`.
export default defineConfig({
  plugins: [svelte()],
  clearScreen: false,
  server: { port: 1420, strictPort: true },
  build: { target: "es2022", outDir: "dist", emptyOutDir: true },
  test: {
    include: ["tests/unit/**/*.test.ts"],
    environment: "happy-dom",
  },
  resolve: process.env.VITEST ? { conditions: ["browser"] } : undefined,
});
