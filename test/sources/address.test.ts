import { describe, expect, it } from 'vitest';
import { classifyAddress, isPublicAddress, parseIPv4, parseIPv6, type AddressClass } from '../../agent/http/address.ts';

// [address, expected class]. Every non-public row is a way an SSRF could reach inside.
const TABLE: Array<[string, AddressClass]> = [
  // IPv4 public
  ['8.8.8.8', 'public'],
  ['1.1.1.1', 'public'],
  ['93.184.216.34', 'public'],
  ['100.63.255.255', 'public'], // just below CGNAT
  ['100.128.0.0', 'public'], // just above CGNAT
  ['172.15.255.255', 'public'], // just below 172.16/12
  ['172.32.0.0', 'public'], // just above 172.16/12
  ['223.255.255.255', 'public'],
  // IPv4 special
  ['0.0.0.0', 'unspecified'],
  ['0.1.2.3', 'reserved'],
  ['10.0.0.1', 'private'],
  ['10.255.255.255', 'private'],
  ['172.16.0.1', 'private'],
  ['172.31.255.254', 'private'],
  ['192.168.1.1', 'private'],
  ['100.64.0.1', 'cgnat'],
  ['100.127.255.255', 'cgnat'],
  ['127.0.0.1', 'loopback'],
  ['127.255.255.254', 'loopback'],
  ['169.254.169.254', 'link-local'], // cloud metadata
  ['192.0.0.8', 'reserved'],
  ['192.0.2.1', 'documentation'],
  ['198.51.100.7', 'documentation'],
  ['203.0.113.9', 'documentation'],
  ['198.18.0.1', 'reserved'],
  ['192.88.99.1', 'reserved'],
  ['224.0.0.1', 'multicast'],
  ['239.255.255.250', 'multicast'],
  ['240.0.0.1', 'reserved'],
  ['255.255.255.255', 'broadcast'],
  // IPv6 public
  ['2606:4700:4700::1111', 'public'],
  ['2001:4860:4860::8888', 'public'],
  ['2a00:1450:4001:82a::200e', 'public'],
  ['[2606:4700::1]', 'public'], // URL-style brackets
  // IPv6 special
  ['::', 'unspecified'],
  ['0:0:0:0:0:0:0:0', 'unspecified'],
  ['::1', 'loopback'],
  ['0:0:0:0:0:0:0:1', 'loopback'],
  ['[::1]', 'loopback'],
  ['fe80::1', 'link-local'],
  ['fe80::1%eth0', 'link-local'], // zone id as in socket.remoteAddress
  ['febf:ffff::1', 'link-local'],
  ['fec0::1', 'site-local'],
  ['fc00::1', 'unique-local'],
  ['fd12:3456:789a::1', 'unique-local'],
  ['ff02::1', 'multicast'],
  ['ff05::1:3', 'multicast'],
  ['2001:db8::1', 'documentation'],
  ['3fff::1', 'documentation'],
  ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'reserved'], // Teredo
  ['2001:10::1', 'reserved'], // ORCHID
  ['100::1', 'reserved'], // discard-only
  ['::7f00:1', 'reserved'], // deprecated IPv4-compatible ::127.0.0.1
  ['64:ff9b:1::a00:1', 'reserved'], // local-use NAT64
  // IPv4 embedded in IPv6
  ['::ffff:10.0.0.1', 'ipv4-mapped-private'],
  ['::ffff:127.0.0.1', 'ipv4-mapped-private'],
  ['::ffff:7f00:1', 'ipv4-mapped-private'], // same, hex form
  ['::FFFF:169.254.169.254', 'ipv4-mapped-private'],
  ['::ffff:0.0.0.0', 'ipv4-mapped-private'],
  ['::ffff:8.8.8.8', 'public'],
  ['64:ff9b::10.0.0.1', 'nat64-private'],
  ['64:ff9b::7f00:1', 'nat64-private'],
  ['64:ff9b::192.168.0.1', 'nat64-private'],
  ['64:ff9b::8.8.8.8', 'public'],
  ['2002:a00:1::1', '6to4-private'], // 6to4 of 10.0.0.1
  ['2002:7f00:1::', '6to4-private'], // 6to4 of 127.0.0.1
  ['2002:c0a8:101::1', '6to4-private'], // 6to4 of 192.168.1.1
  ['2002:808:808::1', 'public'], // 6to4 of 8.8.8.8
  // Not addresses: never 'public'
  ['', 'invalid'],
  ['localhost', 'invalid'],
  ['010.0.0.1', 'invalid'], // leading zero (octal in some parsers)
  ['0x7f.0.0.1', 'invalid'],
  ['2130706433', 'invalid'],
  ['256.0.0.1', 'invalid'],
  ['1.2.3', 'invalid'],
  ['1:2:3:4:5:6:7:8:9', 'invalid'],
  ['1::2::3', 'invalid'],
  [':::1', 'invalid'],
  ['::ffff:1.2.3.256', 'invalid'],
  ['12345::1', 'invalid'],
];

describe('classifyAddress', () => {
  it('has a table of at least 30 addresses', () => {
    expect(TABLE.length).toBeGreaterThanOrEqual(30);
  });

  it.each(TABLE)('%s is %s', (ip, expected) => {
    expect(classifyAddress(ip)).toBe(expected);
    expect(isPublicAddress(ip)).toBe(expected === 'public');
  });

  it('covers every boundary of the IPv4 private blocks', () => {
    for (const [first, last] of [
      ['10.0.0.0', '10.255.255.255'],
      ['172.16.0.0', '172.31.255.255'],
      ['192.168.0.0', '192.168.255.255'],
    ] as const) {
      expect(classifyAddress(first)).toBe('private');
      expect(classifyAddress(last)).toBe('private');
    }
  });
});

describe('address parsers', () => {
  it('parses IPv4 strictly', () => {
    expect(parseIPv4('192.168.1.2')).toBe(0xc0a80102);
    expect(parseIPv4('0.0.0.0')).toBe(0);
    expect(parseIPv4('255.255.255.255')).toBe(0xffffffff);
    expect(parseIPv4('1.2.3.04')).toBeUndefined();
  });

  it('expands IPv6 forms to eight words', () => {
    expect(parseIPv6('::')).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(parseIPv6('1::')).toEqual([1, 0, 0, 0, 0, 0, 0, 0]);
    expect(parseIPv6('1:2:3:4:5:6:7::')).toEqual([1, 2, 3, 4, 5, 6, 7, 0]);
    expect(parseIPv6('::ffff:1.2.3.4')).toEqual([0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304]);
    expect(parseIPv6('1:2:3:4:5:6:7:8')).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(parseIPv6('1:2:3:4:5:6:7')).toBeUndefined();
    expect(parseIPv6('1:2:3:4:5:6:7:8::')).toBeUndefined();
  });
});
