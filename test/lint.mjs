#!/usr/bin/env node
// Project lint rules that a type checker cannot express. Exit 1 with file:line on violation.
//  - no bare 'undici' import: under Bun it resolves to Bun's stand-in, which ignores TLS options
//  - agent/ never imports from plugins/ (plugins depend on the agent's API, not the reverse)
//  - no focused or skipped tests (they silently shrink the suite); a test that needs a tool
//    the host may lack goes through test/helpers/requires.ts, the only place that may skip
//    (outside CI, naming the Debian package; in CI it fails instead)
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const roots = ['agent', 'common', 'signing', 'plugins', 'test', 'bench'];
const rules = [
  { re: /from\s+['"]undici['"]|require\(\s*['"]undici['"]\s*\)|import\(\s*['"]undici['"]\s*\)/, msg: "bare 'undici' import; use 'undici/index.js'" },
  { re: /from\s+['"](\.\.\/)+plugins\//, msg: 'agent/ must not import from plugins/', only: 'agent/' },
  { re: /\b(it|test|describe)\.(only|skip)\(/, msg: 'focused or skipped test', only: 'test/' },
  { re: /\.(skipIf|runIf)\(|\b(ctx|context|t)\.skip\(/, msg: 'conditional skip: use requires() from test/helpers/requires.ts', only: 'test/', except: 'test/helpers/requires.ts' },
];
const problems = [];
const walk = (dir) => {
  let entries;
  try { entries = readdirSync(dir); } catch { return; }
  for (const name of entries) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (/\.(ts|mts|js|mjs)$/.test(name) && path !== 'test/lint.mjs') check(path);
  }
};
const check = (path) => {
  readFileSync(path, 'utf8').split('\n').forEach((line, i) => {
    for (const rule of rules) {
      if (rule.only && !path.startsWith(rule.only)) continue;
      if (rule.except && path === rule.except) continue;
      if (rule.re.test(line)) problems.push(`${path}:${i + 1}: ${rule.msg}`);
    }
  });
};
roots.forEach(walk);
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`lint: ok (${roots.join(', ')})`);
