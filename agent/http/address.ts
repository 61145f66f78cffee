/**
 * IP address classification for the SSRF guard: only addresses in publicly routed unicast
 * space may serve routine code. Everything else (loopback, RFC 1918, link-local, CGNAT,
 * documentation, multicast, transition prefixes that embed a non-public IPv4…) is refused.
 *
 * The parser is our own, not `net.isIP`, so the verdict is identical under Node and Bun and
 * never depends on a runtime's leniency (leading zeros, zone ids).
 *
 * @example
 *   classifyAddress('10.1.2.3')          // 'private'
 *   classifyAddress('::ffff:127.0.0.1')  // 'ipv4-mapped-private'
 *   classifyAddress('2606:4700::1111')   // 'public'
 */

export type AddressClass =
  | 'public'
  | 'private'
  | 'loopback'
  | 'link-local'
  | 'unique-local'
  | 'site-local'
  | 'unspecified'
  | 'multicast'
  | 'broadcast'
  | 'cgnat'
  | 'documentation'
  | 'reserved'
  | 'ipv4-mapped-private'
  | 'nat64-private'
  | '6to4-private'
  | 'invalid';

type V4Class = Exclude<AddressClass, 'unique-local' | 'site-local' | 'ipv4-mapped-private' | 'nat64-private' | '6to4-private' | 'invalid'>;

/** First match wins, so the narrow ranges come before the blocks that contain them. */
const V4_RANGES: ReadonlyArray<readonly [string, V4Class]> = [
  ['0.0.0.0/32', 'unspecified'],
  ['0.0.0.0/8', 'reserved'], // "this network" (RFC 791); Linux routes 0.x to loopback
  ['10.0.0.0/8', 'private'], // RFC 1918
  ['100.64.0.0/10', 'cgnat'], // RFC 6598 shared address space
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local'], // includes cloud metadata 169.254.169.254
  ['172.16.0.0/12', 'private'], // RFC 1918
  ['192.0.0.0/24', 'reserved'], // RFC 6890 IETF protocol assignments
  ['192.0.2.0/24', 'documentation'], // TEST-NET-1
  ['192.88.99.0/24', 'reserved'], // deprecated 6to4 relay anycast (RFC 7526)
  ['192.168.0.0/16', 'private'], // RFC 1918
  ['198.18.0.0/15', 'reserved'], // benchmarking (RFC 2544)
  ['198.51.100.0/24', 'documentation'], // TEST-NET-2
  ['203.0.113.0/24', 'documentation'], // TEST-NET-3
  ['224.0.0.0/4', 'multicast'],
  ['255.255.255.255/32', 'broadcast'],
  ['240.0.0.0/4', 'reserved'], // RFC 1112 class E
];

const V4_TABLE = V4_RANGES.map(([cidr, cls]) => {
  const [base, bits] = cidr.split('/') as [string, string];
  const prefix = Number(bits);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  // `>>> 0` keeps both sides unsigned: `&` yields a signed int32 for addresses ≥ 128.0.0.0.
  return { net: ((parseIPv4(base) as number) & mask) >>> 0, mask, cls };
});

/** Strict dotted-quad: four decimal octets, no leading zeros (so "010.0.0.1" is invalid, not octal). */
export function parseIPv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const part of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(part)) return undefined;
    const octet = Number(part);
    if (octet > 255) return undefined;
    value = value * 256 + octet;
  }
  return value;
}

/** RFC 4291 text form to eight 16-bit words, including a trailing dotted quad. */
export function parseIPv6(text: string): number[] | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(text)) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const toWords = (part: string): number[] | undefined => {
    if (part === '') return [];
    const groups = part.split(':');
    const words: number[] = [];
    for (let i = 0; i < groups.length; i++) {
      const group = groups[i] as string;
      if (i === groups.length - 1 && group.includes('.')) {
        const v4 = parseIPv4(group);
        if (v4 === undefined) return undefined;
        words.push(v4 >>> 16, v4 & 0xffff);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(group)) {
        words.push(parseInt(group, 16));
      } else {
        return undefined;
      }
    }
    return words;
  };
  const head = toWords(halves[0] as string);
  if (head === undefined) return undefined;
  if (halves.length === 1) return head.length === 8 ? head : undefined;
  const tail = toWords(halves[1] as string);
  if (tail === undefined || head.length + tail.length > 7) return undefined;
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}

function classifyV4(value: number): V4Class {
  for (const { net, mask, cls } of V4_TABLE) {
    if ((value & mask) >>> 0 === net) return cls;
  }
  return 'public';
}

const embedded = (high: number, low: number) => ((high << 16) >>> 0) + low;

function classifyV6(w: number[]): AddressClass {
  const [w0, w1, w2, w3, w4, w5, w6, w7] = w as [number, number, number, number, number, number, number, number];
  const zeroTo = (n: number) => w.slice(0, n).every((x) => x === 0);
  if (zeroTo(8)) return 'unspecified';
  if (zeroTo(7) && w7 === 1) return 'loopback';
  // ::ffff:a.b.c.d reaches the IPv4 host a.b.c.d through a dual-stack socket.
  if (zeroTo(5) && w5 === 0xffff) return classifyV4(embedded(w6, w7)) === 'public' ? 'public' : 'ipv4-mapped-private';
  // RFC 6052 well-known NAT64 prefix 64:ff9b::/96: a translator forwards to the embedded IPv4.
  if (w0 === 0x64 && w1 === 0xff9b && w2 === 0 && w3 === 0 && w4 === 0 && w5 === 0) {
    return classifyV4(embedded(w6, w7)) === 'public' ? 'public' : 'nat64-private';
  }
  // RFC 3056 6to4 2002:aabb:ccdd::/48 tunnels to the IPv4 aa.bb.cc.dd.
  if (w0 === 0x2002) return classifyV4(embedded(w1, w2)) === 'public' ? 'public' : '6to4-private';
  if (w0 === 0x2001 && w1 === 0x0db8) return 'documentation'; // RFC 3849
  if (w0 === 0x3fff && w1 < 0x1000) return 'documentation'; // RFC 9637 3fff::/20
  if (w0 === 0x2001 && w1 < 0x0200) return 'reserved'; // 2001::/23: Teredo, ORCHID, benchmarking
  if ((w0 & 0xfe00) === 0xfc00) return 'unique-local'; // fc00::/7
  if ((w0 & 0xffc0) === 0xfe80) return 'link-local'; // fe80::/10
  if ((w0 & 0xffc0) === 0xfec0) return 'site-local'; // fec0::/10, deprecated but still routed privately
  if ((w0 & 0xff00) === 0xff00) return 'multicast';
  // Only 2000::/3 is allocated global unicast; the rest (IPv4-compatible ::a.b.c.d,
  // 100::/64 discard, 64:ff9b:1::/48 local NAT64…) is not a place code comes from.
  if ((w0 & 0xe000) === 0x2000) return 'public';
  return 'reserved';
}

/**
 * Classifies an IPv4 or IPv6 address. Accepts "[v6]" brackets and "%zone" suffixes (as in
 * `socket.remoteAddress`); anything unparsable is 'invalid', never 'public'.
 */
export function classifyAddress(ip: string): AddressClass {
  const bare = ip
    .trim()
    .replace(/^\[(.*)\]$/, '$1')
    .replace(/%.*$/, '');
  const v4 = parseIPv4(bare);
  if (v4 !== undefined) return classifyV4(v4);
  const v6 = parseIPv6(bare);
  if (v6 !== undefined) return classifyV6(v6);
  return 'invalid';
}

export function isPublicAddress(ip: string): boolean {
  return classifyAddress(ip) === 'public';
}

/** Whether `host` (a URL hostname, brackets allowed) is an IP literal rather than a DNS name. */
export function isIpLiteral(host: string): boolean {
  return classifyAddress(host) !== 'invalid';
}
