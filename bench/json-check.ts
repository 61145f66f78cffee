/**
 * Cost of refusing what JSON.parse would change (agent/codec/json-check.ts), per request body.
 * Run under Bun, as the agent runs:
 *   CBOR_NATIVE_ACCELERATION_DISABLED=true ./node_modules/.bin/bun bench/json-check.ts
 * Compares JSON.parse alone, JSON.parse + the checking pass (what the agent does), and a
 * JSON.parse reviver that reads `context.source` (Bun has it, Node 20 does not; it cannot
 * see duplicate keys either).
 */
import { isUtf8 } from 'node:buffer';
import { jsonProblem } from '../agent/codec/json-check.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 5);
const bodies: Record<string, string> = {
  'echo 100 B string': JSON.stringify({ args: ['x'.repeat(100)] }),
  'kwargs, 20 keys': JSON.stringify({ kwargs: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`key_${i}`, i * 1.5])) }),
  '1,000 numbers': JSON.stringify({ args: [Array.from({ length: 1000 }, (_, i) => i * 12345.678)] }),
  '100 KB mixed': JSON.stringify({ args: [Array.from({ length: 1000 }, (_, i) => ({ id: i, name: `item ${i} é\n"q"`, tags: ['a', 'b'], score: i / 7 }))] }),
};

function reviverCheck(this: unknown, _key: string, value: unknown, context?: { source?: string }): unknown {
  if (typeof value === 'number' && context?.source !== undefined && String(value) !== context.source && !Number.isFinite(value)) throw new Error('range');
  if (typeof value === 'string' && !(value as unknown as { isWellFormed(): boolean }).isWellFormed()) throw new Error('surrogate');
  return value;
}

const variants: Record<string, (bytes: Buffer) => unknown> = {
  'JSON.parse': (b) => JSON.parse(b.toString('utf8')),
  'isUtf8 + parse + check': (b) => {
    if (!isUtf8(b)) throw new Error('utf8');
    const text = b.toString('utf8');
    const v = JSON.parse(text);
    if (jsonProblem(text, 'body')) throw new Error('problem');
    return v;
  },
  'parse with source reviver': (b) => JSON.parse(b.toString('utf8'), reviverCheck as never),
};

for (const [name, text] of Object.entries(bodies)) {
  const bytes = Buffer.from(text);
  const n = Math.max(200, Math.floor(20_000_000 / bytes.length) > 50_000 ? 50_000 : Math.floor(20_000_000 / bytes.length));
  for (const [variant, fn] of Object.entries(variants)) {
    const perCall: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) fn(bytes);
      perCall.push(((performance.now() - t0) * 1000) / n);
    }
    perCall.sort((a, b) => a - b);
    console.log(`${name.padEnd(20)} ${String(bytes.length).padStart(7)} B  ${variant.padEnd(26)} ${perCall[Math.floor(ROUNDS / 2)]!.toFixed(2)} µs/call`);
  }
}
