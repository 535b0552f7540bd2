/**
 * Text from input on the terminal. A fleet key, a certificate subject, a
 * YAML snippet or a results file can carry control characters; written raw
 * they move the cursor, clear the screen, retitle the window or hide text
 * (ESC sequences, C1 controls such as CSI U+009B, bidirectional overrides).
 * Everything meshfed prints that came from input passes through
 * `terminalSafe`, which keeps newline and tab and shows every other control
 * character as a visible escape (`\x1b`, `\u202e`). meshfed's own progress
 * drawing is written directly, never through here.
 */

// C0 except \t and \n, DEL, C1, and the Unicode bidirectional controls.
// biome-ignore lint/suspicious/noControlCharactersInRegex: the control characters are what this matches
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

export function terminalSafe(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const n = c.charCodeAt(0);
    return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
  });
}
