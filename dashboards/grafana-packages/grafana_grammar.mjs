// Ask Grafana's own npm packages (pinned in package.json here) what Grafana 12.2 accepts.
//
//   node grafana_grammar.mjs logql < exprs.json  -> [{expr, errors: [{at, near}]}, ...]
//   node grafana_grammar.mjs schema-version      -> the schemaVersion Grafana 12.2 writes
//
// LogQL is parsed with @grafana/lezer-logql, the grammar Grafana's Loki editor uses: Loki itself
// cannot run on the build machines. The parser never throws; it marks what it cannot read with
// error nodes, which are reported with their offset and the text around them.
import { readFileSync } from 'node:fs';

import { parser } from '@grafana/lezer-logql';
import { defaultDashboard } from '@grafana/schema';

function logqlErrors(expr) {
  const errors = [];
  const tree = parser.parse(expr);
  tree.iterate({
    enter(node) {
      if (node.type.isError) {
        errors.push({ at: node.from, near: expr.slice(Math.max(0, node.from - 15), node.to + 15) });
      }
    },
  });
  // An empty tree (nothing recognised) is an error too, though it has no error node.
  if (!tree.topNode.firstChild) {
    errors.push({ at: 0, near: expr.slice(0, 30) });
  }
  return errors;
}

const command = process.argv[2];
if (command === 'logql') {
  const exprs = JSON.parse(readFileSync(0, 'utf8'));
  process.stdout.write(JSON.stringify(exprs.map((expr) => ({ expr, errors: logqlErrors(expr) }))));
} else if (command === 'schema-version') {
  process.stdout.write(String(defaultDashboard.schemaVersion));
} else {
  process.stderr.write('usage: grafana_grammar.mjs logql|schema-version\n');
  process.exit(2);
}
