/**
 * One folder for everything a test run writes to the temporary directory: every `tmpdir()`
 * below this run (test files, the agents and tools they start) resolves inside it, and it is
 * removed when the run ends, pass or fail — a run used to leave thousands of folders in /tmp.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'skein-run-'));
  // Sandboxed workers run as other users and pass through to their folders below it.
  chmodSync(dir, 0o711);
  process.env.TMPDIR = dir;
  return () => rmSync(dir, { recursive: true, force: true });
}
