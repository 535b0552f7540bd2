import type { PhaseOutput, RenderContext } from './types.js';

/** Phase "spire" for one cluster. */
export function renderSpire(_ctx: RenderContext): PhaseOutput {
  return {};
}
