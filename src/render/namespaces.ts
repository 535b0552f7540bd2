import type { PhaseOutput, RenderContext } from './types.js';

/** Phase "namespaces" for one cluster. */
export function renderNamespaces(_ctx: RenderContext): PhaseOutput {
  return {};
}
