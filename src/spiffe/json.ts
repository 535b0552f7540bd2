/**
 * JSON from input, parsed without ever echoing it. V8's JSON.parse errors
 * quote the text around the mistake ("…"d":"5LxR…" is not valid JSON"), and
 * in a JWKS or a config dump that text can be a private key. `parseJsonText`
 * reports a syntax error by place only: line, column and what was expected,
 * found by a small scanner of its own that runs only after JSON.parse failed.
 */

export class JsonSyntaxError extends Error {
  override name = 'JsonSyntaxError';
  constructor(
    readonly line: number,
    readonly col: number,
    readonly reason: string,
  ) {
    super(`not valid JSON at line ${line}, column ${col}: ${reason}`);
  }
}

export function parseJsonText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    const { offset, reason } = firstJsonMistake(text);
    let line = 1;
    let lineStart = 0;
    for (let i = 0; i < offset; i++)
      if (text.charCodeAt(i) === 10) {
        line++;
        lineStart = i + 1;
      }
    throw new JsonSyntaxError(line, offset - lineStart + 1, reason);
  }
}

const WS = new Set([' ', '\t', '\n', '\r']);

/** Where a JSON text first goes wrong, and what was expected there (RFC 8259). Iterative: no depth limit. */
export function firstJsonMistake(t: string): { offset: number; reason: string } {
  let i = 0;
  const skip = () => {
    while (i < t.length && WS.has(t[i]!)) i++;
  };
  const fail = (reason: string) => ({ offset: Math.min(i, t.length), reason });
  // The containers still open: '{' or '['.
  const stack: string[] = [];
  const scalar = (): string | undefined => {
    const c = t[i];
    if (c === '"') {
      i++;
      while (i < t.length && t[i] !== '"') {
        const code = t.charCodeAt(i);
        if (code < 0x20) return 'found a raw control character inside a string; escape it';
        if (t[i] === '\\') {
          i++;
          const e = t[i];
          if (e === 'u') {
            if (!/^[0-9a-fA-F]{4}$/.test(t.slice(i + 1, i + 5))) return 'a \\u escape needs four hex digits';
            i += 4;
          } else if (e === undefined || !'"\\/bfnrt'.includes(e))
            return 'found an unknown escape in a string';
        }
        i++;
      }
      if (i >= t.length) return 'found a string that does not end';
      i++;
      return undefined;
    }
    for (const word of ['true', 'false', 'null'])
      if (t.startsWith(word, i)) {
        i += word.length;
        return undefined;
      }
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(t.slice(i, i + 400));
    if (m && m[0].length > 0) {
      i += m[0].length;
      return undefined;
    }
    return i >= t.length
      ? 'the text ends where a value was expected'
      : 'expected a value (object, array, string, number, true, false or null)';
  };
  /** A property name and its ":"; what is wrong, or undefined. */
  const member = (noName: string): string | undefined => {
    if (t[i] !== '"') return noName;
    const bad = scalar();
    if (bad) return bad;
    skip();
    if (t[i] !== ':') return 'expected ":" after the property name';
    i++;
    return undefined;
  };
  skip();
  for (;;) {
    // A value is expected here.
    skip();
    if (t[i] === '{') {
      i++;
      skip();
      if (t[i] === '}') i++;
      else {
        stack.push('{');
        const bad = member('expected a property name in double quotes, or "}"');
        if (bad) return fail(bad);
        continue;
      }
    } else if (t[i] === '[') {
      i++;
      skip();
      if (t[i] === ']') i++;
      else {
        stack.push('[');
        continue;
      }
    } else {
      const bad = scalar();
      if (bad) return fail(bad);
    }
    // A value ended: close containers or go on to the next member.
    for (;;) {
      skip();
      const top = stack.at(-1);
      if (top === undefined) {
        if (i < t.length) return fail('expected the end of the text after the value');
        return fail('nothing: the text parses (this is a bug in meshfed)');
      }
      if (t[i] === ',') {
        i++;
        skip();
        if (top === '{') {
          const bad = member('expected a property name in double quotes after ","');
          if (bad) return fail(bad);
        }
        break;
      }
      if ((top === '{' && t[i] === '}') || (top === '[' && t[i] === ']')) {
        i++;
        stack.pop();
        continue;
      }
      return fail(top === '{' ? 'expected "," or "}"' : 'expected "," or "]"');
    }
  }
}
