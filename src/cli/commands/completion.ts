/**
 * `meshfed completion bash|zsh|fish`: a shell completion script for the
 * commands and each command's flags, as their usage texts name them (so the
 * script stays true as flags come and go).
 */
import { COMMANDS } from '../commands.js';
import { type CliIO, type Command, EXIT_OK, UsageError } from '../io.js';

const USAGE = `Usage: meshfed completion bash|zsh|fish

Prints a completion script for the shell: meshfed's commands, then each
command's flags.

  bash  source <(meshfed completion bash)            (or save it under
        ~/.local/share/bash-completion/completions/meshfed)
  zsh   source <(meshfed completion zsh)             (in ~/.zshrc)
  fish  meshfed completion fish > ~/.config/fish/completions/meshfed.fish

Examples:
  meshfed completion bash > ~/.local/share/bash-completion/completions/meshfed
  meshfed completion zsh > "\${fpath[1]}/_meshfed"`;

/** The flags a usage text names (--long and -x), in order, once each. */
export function flagsOf(usage: string): string[] {
  const found = usage.match(/(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])/g) ?? [];
  return [...new Set(found)];
}

/** Every command with its summary and flags (every command's module is loaded: this is not on a hot path). */
async function catalog(): Promise<Array<{ name: string; summary: string; flags: string[] }>> {
  const out: Array<{ name: string; summary: string; flags: string[] }> = [];
  for (const c of COMMANDS) {
    const command = await c.load();
    out.push({ name: c.name, summary: c.summary, flags: [...flagsOf(command.usage), '--help'] });
  }
  out.push({
    name: 'version',
    summary: "meshfed's version and each profile's upstream versions",
    flags: ['-o'],
  });
  return out;
}

const shellWord = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function bash(cmds: Awaited<ReturnType<typeof catalog>>): string {
  const cases = cmds
    .map((c) => `    ${c.name}) words=${shellWord([...new Set(c.flags)].join(' '))} ;;`)
    .join('\n');
  return `# meshfed completion for bash (meshfed completion bash)
_meshfed() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" words
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W ${shellWord(cmds.map((c) => c.name).join(' '))} -- "$cur"))
    return
  fi
  case "$cur" in -*) ;; *) return ;; esac
  case "\${COMP_WORDS[1]}" in
${cases}
    *) return ;;
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _meshfed meshfed
`;
}

function fish(cmds: Awaited<ReturnType<typeof catalog>>): string {
  const lines = ['# meshfed completion for fish (meshfed completion fish)', 'complete -c meshfed -f'];
  for (const c of cmds)
    lines.push(`complete -c meshfed -n __fish_use_subcommand -a ${c.name} -d ${shellWord(c.summary)}`);
  for (const c of cmds)
    for (const f of c.flags)
      lines.push(
        f.startsWith('--')
          ? `complete -c meshfed -n '__fish_seen_subcommand_from ${c.name}' -l ${f.slice(2)}`
          : `complete -c meshfed -n '__fish_seen_subcommand_from ${c.name}' -s ${f.slice(1)}`,
      );
  return `${lines.join('\n')}\n`;
}

export const completionCommand: Command = {
  name: 'completion',
  usage: USAGE,
  async run(argv: string[], io: CliIO) {
    const [shell, ...rest] = argv;
    if (rest.length || !shell || !['bash', 'zsh', 'fish'].includes(shell))
      throw new UsageError(`give one shell: bash, zsh or fish${shell ? `, not "${argv.join(' ')}"` : ''}`);
    const cmds = await catalog();
    if (shell === 'fish') io.stdout.write(fish(cmds));
    else if (shell === 'bash') io.stdout.write(bash(cmds));
    // zsh runs the bash function through its bash completion layer.
    else
      io.stdout.write(
        `# meshfed completion for zsh (meshfed completion zsh)\nautoload -U +X bashcompinit && bashcompinit\n${bash(cmds)}`,
      );
    return EXIT_OK;
  },
};
