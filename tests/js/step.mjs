// What a workflow step of the action sees, for the JS tests: the inputs and outputs action.yml
// declares, and the step outputs in a $GITHUB_OUTPUT file. Not a test file itself.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The names action.yml declares under `section` (inputs or outputs). */
export function declared(section) {
  const text = fs.readFileSync(path.join(repo, 'action.yml'), 'utf8');
  const block = new RegExp(`^${section}:\\n([\\s\\S]*?)(?=^\\S)`, 'm').exec(text)[1];
  return [...block.matchAll(/^ {2}([a-z][a-z-]*):\s*$/gm)].map(m => m[1]);
}

/** `name<<DELIMITER\nvalue\nDELIMITER` entries of a $GITHUB_OUTPUT file. */
export function parseOutputs(text) {
  const outputs = {};
  for (const m of text.matchAll(/^([^<\n]+)<<(\S+)\n([\s\S]*?)\n\2$/gm)) outputs[m[1]] = m[3];
  return outputs;
}
