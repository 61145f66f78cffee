/**
 * skein's own lint rules, the boundaries a type checker cannot express:
 *  - layers: imports point down the layering of eslint/layers.mjs (no folder cycle);
 *  - plugins: a plugin imports only ./skein-plugin.ts (the agent loads it from disk, where
 *    nothing else resolves), and nothing but tests and the build imports plugins/;
 *  - signing/ imports only common/ (it is a library the agent uses, not part of it).
 */
import { dirname, normalize, relative, resolve } from 'node:path';
import { LAYERS, UNLAYERED, folderOf } from './layers.mjs';

const ROOT = resolve(import.meta.dirname, '..');
const rank = new Map(LAYERS.map((f, i) => [f, i]));

/** Calls `check(node, spec)` for every static import/export-from and dynamic import() of a string. */
function eachImport(context, check) {
  const visit = (node) => {
    const source = node.source;
    if (source && source.type === 'Literal' && typeof source.value === 'string') check(source, source.value);
  };
  return { ImportDeclaration: visit, ExportNamedDeclaration: visit, ExportAllDeclaration: visit, ImportExpression: visit };
}

const layers = {
  meta: { type: 'problem', docs: { description: 'imports point down the folder layering (eslint/layers.mjs)' }, schema: [] },
  create(context) {
    const file = relative(ROOT, context.filename);
    const from = folderOf(file);
    if (UNLAYERED.includes(from) || from === 'plugins') return {};
    return eachImport(context, (node, spec) => {
      if (!spec.startsWith('.')) return;
      const target = relative(ROOT, normalize(resolve(dirname(context.filename), spec)));
      const to = folderOf(target);
      if (to === from || to === '.' || !/\.(ts|mts|js|mjs)$/.test(target)) return; // same folder; package.json, data files
      if (to === 'plugins')
        return context.report({ node, message: `${from} imports ${target}: nothing but tests imports plugins/ (first-party plugins are built in as text, agent/plugin-host/builtin.ts)` });
      if (from === 'signing' && to !== 'common') return context.report({ node, message: `signing/ imports ${target}: signing/ uses only common/` });
      if (!rank.has(from)) return context.report({ node, message: `${file} is in ${from}, which eslint/layers.mjs does not place: add it to LAYERS` });
      if (!rank.has(to)) return context.report({ node, message: `${target} is in ${to}, which eslint/layers.mjs does not place: add it to LAYERS` });
      if (rank.get(to) > rank.get(from)) {
        context.report({
          node,
          message: `${from} imports ${to} (${target}), a higher layer: imports point down eslint/layers.mjs (${from} is layer ${rank.get(from)}, ${to} is ${rank.get(to)}); move the shared part down`,
        });
      }
    });
  },
};

const pluginImports = {
  meta: { type: 'problem', docs: { description: 'a plugin imports only ./skein-plugin.ts' }, schema: [] },
  create(context) {
    const file = relative(ROOT, context.filename);
    if (!file.startsWith('plugins/') || file === 'plugins/skein-plugin.ts') return {};
    return eachImport(context, (node, spec) => {
      if (spec !== './skein-plugin.ts')
        context.report({ node, message: `a plugin imports only './skein-plugin.ts' (the agent loads it from disk, where ${spec} does not resolve; the host's facilities come through ctx)` });
    });
  },
};

export default { rules: { layers, 'plugin-imports': pluginImports } };
