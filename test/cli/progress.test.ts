/** The engine's progress on a terminal and in a log. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CliIO } from '../../src/cli/io.js';
import { progressView } from '../../src/cli/progress.js';

function io(isTTY: boolean): { io: CliIO; text: () => string } {
  let out = '';
  return {
    io: {
      stdout: { write: () => true },
      stderr: { write: (s: string) => (out += s), isTTY },
      readStdin: async () => '',
      env: {},
      cwd: '/',
    },
    text: () => out,
  };
}

describe('progress view', () => {
  test('not a TTY: one plain line per event, with time, cluster and phase, and no escape codes', () => {
    const t = io(false);
    const v = progressView(t.io, ['cluster-1', 'cluster-2']);
    v.event({
      cluster: 'cluster-1',
      phase: 'spire',
      kind: 'progress',
      message: 'waiting for a load balancer address',
    });
    v.event({
      cluster: 'cluster-2',
      phase: 'spire',
      kind: 'phase-done',
      message: 'spire',
      counts: { created: 22, updated: 0, unchanged: 1 },
    });
    v.event({ phase: 'federation', kind: 'progress', message: 'bootstrapping 1 federated pairs' });
    const lines = t.text().trimEnd().split('\n');
    assert.equal(lines.length, 3);
    assert.match(lines[0]!, /^\s+\d+\.\ds cluster-1\s+spire\s+waiting for a load balancer address$/);
    assert.match(lines[1]!, /cluster-2\s+spire\s+done \(22 created, 0 updated, 1 unchanged\)$/);
    assert.match(lines[2]!, /fleet\s+federation\s+bootstrapping/);
    assert.ok(!t.text().includes('\u001b['), 'escape codes in a log');
  });

  test('a TTY: one live line per cluster, redrawn in place; completions stay above it', () => {
    const t = io(true);
    const v = progressView(t.io, ['cluster-1', 'cluster-2']);
    v.event({ cluster: 'cluster-1', phase: 'spire', kind: 'progress', message: 'waiting' });
    v.event({ cluster: 'cluster-1', phase: 'spire', kind: 'phase-done', message: 'spire' });
    v.close();
    const out = t.text();
    // The second draw moves up over the two live lines and clears them.
    assert.ok(out.includes('\u001b[2A\u001b[J'), 'no redraw in place');
    // The completion is printed above the live block, and the live line says it too.
    assert.equal(out.match(/cluster-1\s+spire\s+done/g)?.length, 2);
    assert.match(out, /cluster-2\s+waiting\n$/);
  });
});
