import type { PhaseOutput, RenderContext } from './types.js';

/** Phase "cert-manager" for one cluster. */
export function renderCertManager(_ctx: RenderContext): PhaseOutput {
  return {};
}
