/** The synopsis block of docs/cli.md, regenerated from the commands' --help texts. */
import { synopsisBlock } from './commands.ts';

const BEGIN = /<!-- synopsis:[^>]*-->\n```\n[\s\S]*?```\n<!-- \/synopsis -->/;

export function cliDocWithSynopsis(doc: string): string {
  const marker = BEGIN.exec(doc);
  if (!marker) throw new Error('docs/cli.md has no <!-- synopsis: … --> block');
  const head = marker[0].slice(0, marker[0].indexOf('\n') + 1);
  return doc.replace(BEGIN, () => `${head}\`\`\`\n${synopsisBlock()}\n\`\`\`\n<!-- /synopsis -->`);
}
