import type { PhaseOutput, RenderContext } from './types.js';

/** Phase "istio" for one cluster. */
export function renderIstio(_ctx: RenderContext): PhaseOutput {
  return {};
}
