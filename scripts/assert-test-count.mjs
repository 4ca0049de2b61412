// Fails a subset run (scripts/node-lts.sh, scripts/nest11.sh) that ran fewer tests than it
// expects: the subsets select files by path, and a renamed file or a filter that matches nothing
// must not pass as green.
//
//   node scripts/assert-test-count.mjs <jest --json output file> <expected count> <label>
import { readFileSync } from 'node:fs';

const [file, expectedText, label = 'subset'] = process.argv.slice(2);
const expected = Number(expectedText);
if (!file || !Number.isInteger(expected) || expected < 1) {
  console.error('assert-test-count: Cannot check the test count because the arguments are wrong. Please use: <jest json file> <expected count> <label>.');
  process.exit(2);
}
const result = JSON.parse(readFileSync(file, 'utf8'));
const passed = result.numPassedTests;
if (passed < expected) {
  console.error(
    `${label}: Cannot accept the run because ${passed} tests passed (${result.numTotalTests} found in ${result.numTotalTestSuites} files), ` +
      `expected at least ${expected}. Please make sure that the subset's file patterns still match its files, or update the expected count.`,
  );
  process.exit(1);
}
console.log(`${label}: ${passed} tests passed (at least ${expected} expected).`);
