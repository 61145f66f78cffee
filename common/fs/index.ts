/**
 * Crash-safe writes for certificates, keys and signatures (used by agent/pki and signing/;
 * depends on nothing else in the project). Both write a temp file in the target's directory, created O_EXCL with
 * its final mode (so a private key is never readable by others, not even for a moment) and
 * fsynced, then publish it in one step, so a reader never sees a partial file.
 */
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

function writeTemp(path: string, data: string, mode: number): string {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', mode);
  try {
    try {
      writeSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  return tmp;
}

/** Replaces `path` atomically (rename). */
export function writeFileAtomic(path: string, data: string, mode: number): void {
  const tmp = writeTemp(path, data, mode);
  try {
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * Creates `path` atomically and only if it does not exist: link(2) fails with EEXIST instead
 * of replacing, and unlike open(O_EXCL) a crash cannot leave a half-written file in place.
 */
export function writeFileExclusive(path: string, data: string, mode: number): void {
  const tmp = writeTemp(path, data, mode);
  try {
    linkSync(tmp, path);
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** Creates dir (and parents) with 0700; an existing directory keeps its mode. */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}
