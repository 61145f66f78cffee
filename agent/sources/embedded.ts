/**
 * Routine sources compiled into the binary, so `skein agent` run with the embedded default
 * config (no agent.config.json on disk) still has its example routines.
 */
import EXAMPLES from '../../routines/examples.py' with { type: 'text' };

const EMBEDDED: Record<string, string> = { 'routines/examples.py': EXAMPLES };

/** The embedded source for a path the default config names, if it is one of ours. */
export function embeddedRoutineSource(file: string): string | undefined {
  const normalized = file.replaceAll('\\', '/');
  for (const [suffix, source] of Object.entries(EMBEDDED)) if (normalized.endsWith(`/${suffix}`)) return source;
  return undefined;
}
