/** Types of eslint/layers.mjs (plain JavaScript, loaded by ESLint's config). */
export declare const LAYERS: readonly string[];
export declare const UNLAYERED: readonly string[];
export declare function folderOf(path: string): string;
