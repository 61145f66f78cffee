import pkg from '../../package.json' with { type: 'json' };

// Stamped by build.ts (Bun `define`); absent when the sources run unbuilt (tests, bun run).
declare const SKEIN_BUILD_COMMIT: string | undefined;
declare const SKEIN_BUILD_DATE: string | undefined;

export const VERSION: string = pkg.version;
export const COMMIT: string = typeof SKEIN_BUILD_COMMIT === 'string' ? SKEIN_BUILD_COMMIT : 'unknown';
export const BUILD_DATE: string = typeof SKEIN_BUILD_DATE === 'string' ? SKEIN_BUILD_DATE : 'unknown';

/** `skein --version`: what an operator pastes into a bug report. */
export const VERSION_LINE = `skein ${VERSION} (commit ${COMMIT}, built ${BUILD_DATE})`;
