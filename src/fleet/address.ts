/**
 * Host and host:port as peers dial them (a bundle endpoint, an east-west
 * gateway): a DNS name (RFC 1123: labels of 1-63 letters, digits and "-",
 * not starting or ending with "-", at most 253 characters), an IPv4 address,
 * or an IPv6 address in brackets; a port from 1 to 65535. The one rule used
 * by the fleet file and by `render --endpoint`, so that what reaches a
 * Kubernetes object or a SPIRE config is an address something can dial.
 */
import { isIPv4, isIPv6 } from 'node:net';

const DNS_LABEL = /^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?$/;

/** Why `host` is not a host (a DNS name, IPv4, or [IPv6]); undefined when it is. */
export function hostProblem(host: string): string | undefined {
  if (host.startsWith('[') && host.endsWith(']'))
    return isIPv6(host.slice(1, -1)) ? undefined : `${JSON.stringify(host)} is not an IPv6 address`;
  if (isIPv4(host)) return undefined;
  if (host.length === 0) return 'the host is empty';
  if (host.length > 253) return 'a host name must be at most 253 characters';
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  const labels = name.split('.');
  if (labels.some((l) => l.length === 0))
    return `${JSON.stringify(host)} has an empty label (".." or a leading ".")`;
  const bad = labels.find((l) => !DNS_LABEL.test(l));
  if (bad !== undefined)
    return `${JSON.stringify(host)} is not a DNS name: label ${JSON.stringify(bad)} must be 1-63 letters, digits and "-", starting and ending with a letter or digit`;
  if (/^\d+$/.test(labels.at(-1) ?? ''))
    return `${JSON.stringify(host)} is neither an IPv4 address nor a DNS name`;
  return undefined;
}

/** Why `text` is not HOST or HOST:PORT (PORT required when `needPort`); undefined when it is. */
export function hostPortProblem(text: string, o: { needPort?: boolean } = {}): string | undefined {
  const m = /^(\[[^\]]*\]|[^:[\]]*)(?::([^:]*))?$/.exec(text);
  if (!m) return `${JSON.stringify(text)} is not HOST or HOST:PORT (an IPv6 address goes in brackets)`;
  const [, host, port] = m;
  const hp = hostProblem(host!);
  if (hp) return hp;
  if (port === undefined) return o.needPort ? `${JSON.stringify(text)} has no :PORT` : undefined;
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535)
    return `port ${JSON.stringify(port)} is not a TCP port from 1 to 65535`;
  return undefined;
}
