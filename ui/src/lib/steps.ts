// The steps of the job, as the sidebar lists them (in order: Ctrl+1…7).
export type Step = "model" | "data" | "template" | "train" | "runs" | "chat" | "machine";

export const STEPS: { id: Step; label: string }[] = [
  { id: "model", label: "Model" },
  { id: "data", label: "Dataset" },
  { id: "template", label: "Template" },
  { id: "train", label: "Train" },
  { id: "runs", label: "Runs" },
  { id: "chat", label: "Chat" },
  { id: "machine", label: "This machine" },
];

/** The last part of a path or hub id ("/a/b/train.jsonl" -> "train.jsonl"). */
export function fileName(path: string): string {
  return path.split(/[\\/]/).filter(Boolean).pop() ?? path;
}
