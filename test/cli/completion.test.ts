import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { flagsOf } from '../../src/cli/commands/completion.js';
import { COMMANDS } from '../../src/cli/commands.js';
import { runMeshfed } from '../helpers/cli.js';

/** What bash completes for the words typed so far (the last one being completed), with the script loaded. */
function bashComplete(script: string, words: string[]): string[] {
  const out = execFileSync(
    'bash',
    [
      '-c',
      `eval "$MESHFED_COMPLETION"; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _meshfed; printf '%s\\n' "\${COMPREPLY[@]}"`,
    ],
    { env: { ...process.env, MESHFED_COMPLETION: script }, encoding: 'utf8' },
  );
  return out.split('\n').filter((l) => l !== '');
}

test('completion bash completes commands, then the flags of the command typed', async () => {
  const r = await runMeshfed(['completion', 'bash']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(
    bashComplete(r.stdout, ['meshfed', '']).sort(),
    [...COMMANDS.map((c) => c.name), 'version'].sort(),
  );
  assert.deepEqual(bashComplete(r.stdout, ['meshfed', 've']), ['verify', 'version']);
  assert.deepEqual(bashComplete(r.stdout, ['meshfed', 'lab', '--p']).sort(), [
    '--pod-ready-delay',
    '--pod-stop-delay',
    '--pods',
    '--profile',
  ]);
  assert.ok(bashComplete(r.stdout, ['meshfed', 'up', '--']).includes('--dry-run'));
  // Not a flag being typed: the shell's own (file names).
  assert.deepEqual(bashComplete(r.stdout, ['meshfed', 'certs', 'x']), []);
});

test('completion zsh and fish name every command and its flags; a wrong shell exits 2', async () => {
  const zsh = await runMeshfed(['completion', 'zsh']);
  assert.equal(zsh.code, 0);
  assert.match(zsh.stdout, /bashcompinit/);
  assert.match(zsh.stdout, /complete -o default -F _meshfed meshfed/);
  const fish = await runMeshfed(['completion', 'fish']);
  assert.equal(fish.code, 0);
  for (const c of COMMANDS)
    assert.match(fish.stdout, new RegExp(`-n __fish_use_subcommand -a ${c.name} -d `), c.name);
  assert.match(fish.stdout, /__fish_seen_subcommand_from lab' -l pods\n/);
  assert.match(fish.stdout, /__fish_seen_subcommand_from render' -s o\n/);
  for (const bad of [[], ['powershell'], ['bash', 'zsh']]) {
    const r = await runMeshfed(['completion', ...bad]);
    assert.equal(r.code, 2, bad.join(' '));
    assert.match(r.stderr, /give one shell: bash, zsh or fish/);
  }
});

test("flagsOf reads a usage text's flags once each, not words with dashes", () => {
  assert.deepEqual(
    flagsOf('Usage: x [-f FILE] [--lab] [--pods real|simulated]\n  --lab  the lab (re-read, -o-less)'),
    ['-f', '--lab', '--pods'],
  );
});
