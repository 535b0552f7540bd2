import { parseArgs } from 'node:util';
import { parseGoDuration } from '../../fleet/durations.js';
import { type Bundle, BundleError, parseJwksBundle, parsePemBundle } from '../../spiffe/bundle.js';
import { SpiffeIdError } from '../../spiffe/id.js';
import { formatChainReport, InputError, inspectChain, parseCertInput } from '../../spiffe/inspect.js';
import { CertParseError } from '../../spiffe/x509.js';
import { readInput } from '../files.js';
import { type Command, EXIT_FAILED, EXIT_OK, UsageError } from '../io.js';
import { terminalSafe } from '../terminal.js';

export const certsCommand: Command = {
  name: 'certs',
  usage: `Usage: meshfed certs FILE|- [-o text|json] [--warn-within DURATION]
                     [--bundle FILE --trust-domain TD]

FILE is a PEM chain, an Envoy secrets config dump (istioctl proxy-config
secret -o json, or pilot-agent's config_dump) or a SPIFFE bundle (JWKS; give
--trust-domain). The chain is judged against --bundle (JWKS or PEM, of
--trust-domain) or else the trusted CAs in the config dump.
Exit 0 when valid, 1 when the chain is not a valid SVID, 2 for bad input.

Examples:
  meshfed certs chain.pem
  meshfed certs dump.json -o json
  meshfed certs svid.pem --bundle bundle.json --trust-domain foo.com`,
  async run(argv, io) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        output: { type: 'string', short: 'o', default: 'text' },
        'warn-within': { type: 'string', default: '168h' },
        bundle: { type: 'string' },
        'trust-domain': { type: 'string' },
      },
    });
    if (positionals.length !== 1)
      throw new UsageError('give exactly one input: a file, or - for standard input');
    if (values.output !== 'text' && values.output !== 'json') throw new UsageError('-o must be text or json');
    const warnMs = parseGoDuration(values['warn-within']);
    if (warnMs === undefined)
      throw new UsageError(`--warn-within "${values['warn-within']}" is not a duration like 168h`);
    if (values.bundle && !values['trust-domain'])
      throw new UsageError('--bundle needs --trust-domain (whose bundle it is)');
    if (positionals[0] === '-' && values.bundle === '-')
      throw new UsageError('only one of the input and --bundle can be standard input');
    const text = await readInput(positionals[0]!, io, 'certs');
    const bundleText = values.bundle ? await readInput(values.bundle, io, 'bundle') : undefined;
    const where = positionals[0] === '-' ? 'standard input' : positionals[0];
    let part = where;
    try {
      const input = parseCertInput(
        text,
        values['trust-domain'] ? { trustDomain: values['trust-domain'] } : {},
      );
      let bundles: Bundle[] | undefined;
      if (bundleText !== undefined) {
        const b = bundleText;
        part = `--bundle ${values.bundle}`;
        bundles = [
          b.trimStart().startsWith('{')
            ? parseJwksBundle(b, values['trust-domain']!)
            : parsePemBundle(b, values['trust-domain']!),
        ];
      }
      const report = inspectChain(input, {
        warnWithinSeconds: warnMs / 1000,
        ...(bundles ? { bundles } : {}),
      });
      io.stdout.write(
        values.output === 'json'
          ? `${JSON.stringify(report, null, 2)}\n`
          : terminalSafe(formatChainReport(report)),
      );
      return report.verdict && !report.verdict.valid ? EXIT_FAILED : EXIT_OK;
    } catch (e) {
      if (
        e instanceof InputError ||
        e instanceof BundleError ||
        e instanceof CertParseError ||
        e instanceof SpiffeIdError
      )
        throw new UsageError(`${part}: ${e.message}`);
      throw e;
    }
  },
};
