/** Shared by the cli-plugins suites: an in-memory Io and temp dirs removed after the run. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { Io } from '../../agent/cli/io.ts';
import { SkeinError, type ErrorCode } from '../../common/errors/index.ts';

export function memoryIo(): { io: Io; out: string[]; err: string[]; text: () => string } {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (s) => void out.push(s), err: (s) => void err.push(s) }, out, err, text: () => out.join('\n') };
}

const roots: string[] = [];
export function tempDir(prefix = 'skein-cli-plugins-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  roots.push(dir);
  return dir;
}
export function removeTempDirs(): void {
  for (const dir of roots.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** Awaits `call` and returns the SkeinError it throws, checking its code. */
export async function expectCode(call: () => unknown, code: ErrorCode): Promise<SkeinError> {
  try {
    await call();
  } catch (err) {
    expect(err).toBeInstanceOf(SkeinError);
    expect((err as SkeinError).code).toBe(code);
    return err as SkeinError;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}
