/**
 * Every command's --help ends its description with examples, and every
 * example is a call of that command with flags its usage lists (so an
 * example cannot name a flag that was renamed or never existed).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { flagsOf } from '../../src/cli/commands/completion.js';
import { COMMANDS } from '../../src/cli/commands.js';
import { runMeshfed } from '../helpers/cli.js';

test('every command has examples in its --help, each calling it with flags it has', async () => {
  for (const entry of COMMANDS) {
    const help = await runMeshfed([entry.name, '--help']);
    assert.equal(help.code, 0, `${entry.name} --help: ${help.stderr}`);
    const [usage, after] = help.stdout.split('\nExamples:\n');
    assert.ok(after, `meshfed ${entry.name} --help has no "Examples:" section`);
    const lines = after
      .split('\n\n')[0]!
      .split('\n')
      .filter((l) => l.trim());
    assert.ok(lines.length >= 1, entry.name);
    const known = new Set(flagsOf(usage!));
    let calls = 0;
    for (const line of lines) {
      assert.match(line, /^ {2}\S/, `${entry.name}: an example line is indented by two spaces: ${line}`);
      // Each shell segment that calls this command (an example may chain others, pipe or redirect).
      for (const segment of line.trim().split(/&&|\||;/)) {
        const words = segment.trim().split(/\s+/);
        const at = words.findIndex((w, i) => w === 'meshfed' && words[i + 1] === entry.name);
        if (at < 0) continue;
        calls++;
        for (const w of words.slice(at + 2)) {
          if (w === '>' || w.startsWith('>')) break;
          if (/^--?[a-zA-Z]/.test(w))
            assert.ok(
              known.has(w.split('=')[0]!),
              `meshfed ${entry.name}: the example "${line.trim()}" uses ${w}, which its usage does not list`,
            );
        }
      }
    }
    assert.ok(calls >= 1, `meshfed ${entry.name}: no example calls it`);
  }
});
