// Runs the page's copy of the meeting rules (Sources/ParleyWeb/Public/js/meeting/state.js)
// over traces the Swift rules wrote: random op sequences with the state after each op. The
// two are written apart (design diversity), so each checks the other. Driven by
// Tests/ParleyWebTests/StateAgreementTests.swift; by hand: node Tests/js/check-state-agreement.mjs TRACES.json
//
// Exits 1 at the first op after which the states differ, naming the trace, the op and the
// first field that differs.
import { readFileSync } from 'node:fs';
import { applyOp, normalizeMeeting } from '../../Sources/ParleyWeb/Public/js/meeting/state.js';

const [file] = process.argv.slice(2);
if (!file) {
  console.error('usage: node check-state-agreement.mjs TRACES.json');
  process.exit(2);
}
const traces = JSON.parse(readFileSync(file, 'utf8'));
let ops = 0;
for (const trace of traces) {
  const meeting = normalizeMeeting(trace.initial);
  for (const step of trace.steps) {
    const { op, issuer, at, seq } = step.event;
    ops += 1;
    try {
      applyOp(meeting, op, issuer, at, seq);
    } catch (error) {
      disagree(trace, step, `state.js refused it: ${error.message}`);
    }
    const difference = firstDifference(plain(normalizeMeeting(step.state)), plain(meeting), 'state');
    if (difference) disagree(trace, step, difference);
  }
}
console.log(`${traces.length} traces, ${ops} ops: state.js agrees with the Swift rules after every op`);

function disagree(trace, step, what) {
  const { op, issuer, seq } = step.event;
  console.error(`trace ${trace.name}, seq ${seq}: after ${JSON.stringify(op)} by ${issuer}, ${what}`);
  process.exit(1);
}

/** The value as JSON holds it: no undefined fields. */
function plain(value) {
  return JSON.parse(JSON.stringify(value));
}

/** Where `actual` (state.js) first differs from `expected` (Swift), in words; null if nowhere. */
function firstDifference(expected, actual, path) {
  if (Array.isArray(expected) || Array.isArray(actual)) {
    if (!Array.isArray(expected) || !Array.isArray(actual)) return `${path} is ${show(actual)} in state.js, ${show(expected)} in Swift`;
    for (let index = 0; index < Math.max(expected.length, actual.length); index += 1) {
      if (index >= actual.length) return `${path} lacks [${index}] = ${show(expected[index])} in state.js`;
      if (index >= expected.length) return `${path} has an extra [${index}] = ${show(actual[index])} in state.js`;
      const inner = firstDifference(expected[index], actual[index], `${path}[${index}]`);
      if (inner) return inner;
    }
    return null;
  }
  if (isObject(expected) && isObject(actual)) {
    for (const key of new Set([...Object.keys(expected), ...Object.keys(actual)].sort())) {
      if (!(key in actual)) return `${path}.${key} is missing in state.js (Swift: ${show(expected[key])})`;
      if (!(key in expected)) return `${path}.${key} is ${show(actual[key])} in state.js, absent in Swift`;
      const inner = firstDifference(expected[key], actual[key], `${path}.${key}`);
      if (inner) return inner;
    }
    return null;
  }
  return expected === actual ? null : `${path} is ${show(actual)} in state.js, ${show(expected)} in Swift`;
}

function isObject(value) {
  return value !== null && typeof value === 'object';
}

function show(value) {
  const text = JSON.stringify(value);
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}
