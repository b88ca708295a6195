// Typed wrappers over the Tauri commands in src-tauri/src/commands.rs.
// The types mirror the engine's serde output field for field.
import { invoke } from "@tauri-apps/api/core";

export interface DeviceReport {
  os: string;
  arch: string;
  cpu_model: string;
  physical_cores: number | null;
  logical_cores: number;
  total_memory_bytes: number;
  available_memory_bytes: number;
  mlx_version: string;
  default_device: "cpu" | "gpu";
  backends: { cpu: boolean; metal: boolean; cuda: boolean };
  gpu: { name: string; architecture: string | null; memory_bytes: number | null } | null;
  matmul_library: string;
  matmul: { size: number; iterations: number; seconds: number; gflops: number };
}

/** A file the app starts with: the bundled model or the sample dataset. */
export interface DefaultFile {
  label: string;
  path: string;
  present: boolean;
  size_bytes: number | null;
}

export function deviceReport(): Promise<DeviceReport> {
  return invoke<DeviceReport>("device_report");
}

export function defaultFiles(): Promise<DefaultFile[]> {
  return invoke<DefaultFile[]>("default_files");
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}
