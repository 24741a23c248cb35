/** Addresses as Go's `net.Listen` and `net.Dial` take them: `host:port`, `:port`, `[v6]:port`. */

/** A split address; `host` is '' for `:port` (every interface when listening). */
export interface HostPort {
  host: string;
  port: number;
}

/**
 * Split `host:port`. IPv6 hosts come in brackets (`[::1]:4321`), which are
 * removed from `host`.
 *
 * @throws Error for anything else, or a port above 65535.
 */
export function splitHostPort(address: string): HostPort {
  const match = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/.exec(address);
  if (!match) throw new Error(`invalid address ${JSON.stringify(address)}: want host:port`);
  const port = Number(match[3]);
  if (port > 65_535) throw new Error(`invalid port in address ${JSON.stringify(address)}`);
  return { host: match[1] ?? match[2] ?? '', port };
}

/** `host:port` with brackets around an IPv6 host. */
export function joinHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
