import type { PhaseOutput, RenderContext } from './types.js';

/** Phase "apps" for one cluster. */
export function renderApps(_ctx: RenderContext): PhaseOutput {
  return {};
}
