/**
 * Live reload as part of the contract: a component that can apply some config keys while the
 * agent runs says which (`reloadKeys`) and how (`stage`). The reloader (runtime/reload.ts)
 * keeps no list of its own: a changed key that some component covers is applied, every other
 * changed key is reported as pending (it needs a restart). Why: the list kept in the
 * reloader drifted from what the components could actually do.
 *
 * A reload is all or nothing. Every component stages the new config first (reads and checks
 * files, loads plugins); one that cannot throws, what others staged is undone, and the
 * running configuration stays. Only when all have staged are the stagings committed.
 */

export interface Staged {
  /** Makes the staged change the running one (cannot fail). */
  commit?(): void;
  /** Reverts or discards what stage() prepared or already applied; a later component refused. */
  undo?(): Promise<void> | void;
}

export interface Reloadable<C> {
  /** For logs: which component this is. */
  readonly name: string;
  /** Config paths this component applies live; a path covers itself and every key below it ("plugins" covers "plugins.enabled"). */
  readonly reloadKeys: readonly string[];
  /**
   * Checks and prepares `next`. `changed` holds the changed paths (joined by ".") that this
   * component covers, possibly none: a component may act anyway (TLS files are re-read on
   * every reload). Throws to refuse the reload; then nothing of this component changed.
   */
  stage(next: C, changed: readonly string[]): Promise<Staged | undefined> | Staged | undefined;
}

/** True when one of `keys` is `path` or a dotted prefix of it. */
export function covers(keys: readonly string[], path: string): boolean {
  return keys.some((k) => path === k || path.startsWith(`${k}.`));
}
