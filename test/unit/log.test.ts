import { describe, expect, it } from 'vitest';
import { createLogger } from '../../agent/log/index.ts';

const capture = (format: 'json' | 'text', level: 'debug' | 'info' = 'info') => {
  const lines: string[] = [];
  return { lines, log: createLogger({ format, level, write: (l) => lines.push(l), now: () => new Date('2026-11-23T10:00:00.123Z') }) };
};

describe('logger', () => {
  it('writes one JSON object per line with bound fields', () => {
    const { lines, log } = capture('json');
    log.child({ requestId: 'r1' }).warn('worker stderr', { line: 'a\nb' });
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toEqual({ ts: '2026-11-23T10:00:00.123Z', level: 'warn', msg: 'worker stderr', requestId: 'r1', line: 'a\nb' });
  });

  it('drops lines below the level', () => {
    const { lines, log } = capture('json');
    log.debug('hidden');
    expect(lines).toEqual([]);
    expect(log.enabled('debug')).toBe(false);
  });

  it('text format escapes control characters so one event stays one line', () => {
    const { lines, log } = capture('text');
    log.warn('worker stderr', { line: 'forged\n10:00:00.000 INFO  all good\u001b[2K\r' });
    expect(lines).toHaveLength(1);
    expect(lines[0]!.trimEnd().split('\n')).toHaveLength(1);
    expect(lines[0]).toContain('line=forged\\n10:00:00.000 INFO  all good\\u001b[2K\\r');
  });
});
