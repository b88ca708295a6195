// What the panels share: the chosen model, dataset, template and mask.
// null paths mean the bundled defaults.
import type { Mask } from "./api";

export const selection = $state({
  model: null as string | null,
  data: null as string | null,
  template: "model",
  mask: "completions" as Mask,
  skipBadRecords: false,
  maxLength: 256,
});
