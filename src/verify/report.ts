/**
 * `meshfed report`: one self-contained HTML file (no script, no external
 * resource) with a picture of the fleet (clusters with their trust domains,
 * networks and gateway addresses; federation edges coloured by the health
 * of both directions' bundles) and every check and verify result. Pure.
 */
import type { Fleet } from '../fleet/model.js';
import { type CheckResult, type Status, worst } from './catalog.js';
import { counts } from './format.js';

/** The one HTML escape: every value in the page that is not a literal of this file goes through it. */
export const esc = (s: unknown) =>
  String(s).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );

/** A status colour; an unknown status (a hand-edited results file) is grey, never text from the file. */
const colour = (s: string) => STATUS_COLOUR[s as Status] ?? STATUS_COLOUR.unknown;

export const STATUS_COLOUR: Record<Status | 'unknown', string> = {
  passed: '#1a7f37',
  warning: '#bf8700',
  failed: '#cf222e',
  'not-run': '#8250df',
  skipped: '#6e7781',
  unknown: '#8c959f',
};

export type EdgeHealth = { a: string; b: string; status: Status | 'unknown'; detail: string };

/** Federation edges from MF205's findings (holder ← peer states); unknown where it did not run. */
export function edgesOf(fleet: Fleet, results: CheckResult[]): EdgeHealth[] {
  const mf205 = results.find((r) => r.code === 'MF205');
  return fleet.federation.pairs.map(([a, b]) => {
    if (!mf205) return { a, b, status: 'unknown', detail: 'not checked' };
    const dirs = mf205.findings.filter((f) => {
      const d = f.data as { holder?: string; peer?: string } | undefined;
      return d && ((d.holder === a && d.peer === b) || (d.holder === b && d.peer === a));
    });
    if (!dirs.length) {
      const notRun = mf205.findings.filter(
        (f) => f.status === 'not-run' && (f.cluster === a || f.cluster === b),
      );
      return notRun.length
        ? {
            a,
            b,
            status: 'not-run',
            detail: `not checked: ${notRun.map((f) => `${f.cluster} ${f.message}`).join('; ')}`,
          }
        : { a, b, status: 'failed', detail: 'no bundle state (a server or endpoint unreachable)' };
    }
    const bad = dirs.filter((f) => f.status !== 'passed');
    return bad.length
      ? { a, b, status: 'failed', detail: bad.map((f) => f.message).join('; ') }
      : { a, b, status: 'passed', detail: 'bundles current both ways' };
  });
}

function clusterStatus(cluster: string, results: CheckResult[]): Status {
  return worst(results.flatMap((r) => r.findings.filter((f) => f.cluster === cluster).map((f) => f.status)));
}

function addressesOf(cluster: string, results: CheckResult[]): { be?: string; ew?: string } {
  const f = results.find((r) => r.code === 'MF210')?.findings.find((x) => x.cluster === cluster);
  const d = (f?.data ?? {}) as { bundleEndpoint?: string; eastWestGateway?: string };
  return {
    ...(d.bundleEndpoint ? { be: d.bundleEndpoint } : {}),
    ...(d.eastWestGateway ? { ew: d.eastWestGateway } : {}),
  };
}

/** The fleet as an SVG: clusters on a circle, federation edges between them. */
export function fleetSvg(fleet: Fleet, results: CheckResult[]): string {
  const n = fleet.clusters.length;
  const W = 960;
  const H = n <= 2 ? 300 : 560;
  const boxW = 260;
  const boxH = 134;
  const pos = fleet.clusters.map((_, i) => {
    if (n <= 2) return { x: i === 0 ? 180 : W - 180, y: H / 2 };
    const t = (2 * Math.PI * i) / n - Math.PI / 2;
    return { x: W / 2 + (W / 2 - 170) * Math.cos(t), y: H / 2 + (H / 2 - 80) * Math.sin(t) };
  });
  const idx = new Map(fleet.clusters.map((c, i) => [c.name, i]));
  const edges = edgesOf(fleet, results)
    .map((e) => {
      const p = pos[idx.get(e.a)!]!;
      const q = pos[idx.get(e.b)!]!;
      return `<g class="edge" data-a="${esc(e.a)}" data-b="${esc(e.b)}" data-status="${esc(e.status)}"><line x1="${p.x.toFixed(1)}" y1="${p.y.toFixed(1)}" x2="${q.x.toFixed(1)}" y2="${q.y.toFixed(1)}" stroke="${colour(e.status)}" stroke-width="8"${e.status === 'passed' ? '' : ' stroke-dasharray="18 10"'}/><title>${esc(`${e.a} ⇄ ${e.b}: ${e.detail}`)}</title></g>`;
    })
    .join('\n');
  const boxes = fleet.clusters
    .map((c, i) => {
      const p = pos[i]!;
      const st = clusterStatus(c.name, results);
      const a = addressesOf(c.name, results);
      const x = p.x - boxW / 2;
      const y = p.y - boxH / 2;
      const line = (k: number, text: string, cls = '') =>
        `<text x="${(x + 14).toFixed(1)}" y="${(y + 26 + k * 21).toFixed(1)}"${cls ? ` class="${cls}"` : ''}>${esc(text)}</text>`;
      return `<g class="cluster" data-cluster="${esc(c.name)}" data-status="${esc(st)}"><rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${boxW}" height="${boxH}" rx="10" fill="#ffffff" stroke="${colour(st)}" stroke-width="6"/>${line(0, c.name, 'name')}${line(1, `trust domain ${c.trustDomain}`)}${line(2, `network ${c.network}`)}${line(3, `east-west ${a.ew ?? '—'}`, 'small')}${line(4, `bundle endpoint ${a.be ?? '—'}`, 'small')}</g>`;
    })
    .join('\n');
  return `<svg id="fleet" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="fleet ${esc(fleet.name)}">
${edges}
${boxes}
</svg>`;
}

export function reportHtml(fleet: Fleet, results: CheckResult[], o: { at: Date; title?: string }): string {
  const c = counts(results);
  const rows = results
    .map(
      (r) => `<tr class="result" data-code="${esc(r.code)}" data-status="${esc(r.status)}">
<td><span class="badge" style="background:${colour(r.status)}">${esc(r.status)}</span></td>
<td class="code">${esc(r.code)}</td><td>${esc(r.title)}</td><td>${esc(r.category)}</td>
<td>${esc(r.summary)}${r.hint ? `<div class="hint">fix: ${esc(r.hint)}</div>` : ''}${
        r.findings.length > 1
          ? `<details><summary>${r.findings.length} findings</summary><ul>${r.findings
              .map(
                (f) =>
                  `<li><b style="color:${colour(f.status)}">${esc(f.status)}</b> ${f.cluster ? `${esc(f.cluster)}: ` : ''}${esc(f.message)}</li>`,
              )
              .join('')}</ul></details>`
          : ''
      }</td></tr>`,
    )
    .join('\n');
  const title = o.title ?? `meshfed report: ${fleet.name}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>${esc(title)}</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:24px;color:#1f2328;background:#f6f8fa}
h1{font-size:22px;margin:0 0 4px} .meta{color:#57606a;margin-bottom:16px}
.counts span{display:inline-block;margin-right:14px;font-weight:600}
svg{background:#fff;border:1px solid #d0d7de;border-radius:8px;margin:12px 0;max-width:100%;height:auto}
svg text{font:15px system-ui,sans-serif;fill:#1f2328} svg text.name{font-weight:700;font-size:17px} svg text.small{font-size:12px;fill:#57606a}
table{border-collapse:collapse;width:100%;background:#fff} td,th{border-bottom:1px solid #d0d7de;padding:6px 8px;text-align:left;vertical-align:top}
.badge{color:#fff;border-radius:10px;padding:1px 8px;font-size:13px} .code{font-family:ui-monospace,monospace}
.hint{color:#57606a;font-size:13px;margin-top:2px} details{font-size:13px}
</style></head>
<body>
<h1>${esc(title)}</h1>
<div class="meta">${esc(`${fleet.clusters.length} clusters · profile ${fleet.profile} · Istio ${fleet.versions.istio} · SPIRE ${fleet.versions.spire} · ${o.at.toISOString()}`)}</div>
<div class="counts"><span style="color:${STATUS_COLOUR.passed}">${c.passed} passed</span><span style="color:${STATUS_COLOUR.warning}">${c.warning} warnings</span><span style="color:${STATUS_COLOUR.failed}">${c.failed} failed</span><span style="color:${STATUS_COLOUR['not-run']}">${c['not-run']} not run</span><span style="color:${STATUS_COLOUR.skipped}">${c.skipped} skipped</span></div>
${fleetSvg(fleet, results)}
<table><thead><tr><th>status</th><th>code</th><th>check</th><th>category</th><th>result</th></tr></thead>
<tbody>
${rows}
</tbody></table>
</body></html>
`;
}
