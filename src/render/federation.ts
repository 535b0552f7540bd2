import type { PhaseOutput, RenderContext } from './types.js';

/** Phase "federation" for one cluster. */
export function renderFederation(_ctx: RenderContext): PhaseOutput {
  return {};
}
