// Checks an OpenRPC document the way third-party tools read it (run by tests/test_schemas.py).
// Input (argv[2], JSON): {"document": ..., "calls": {method: params}, "results": {method: value}}
// (for a streaming method, "x-ppy-stream", the value is the list of its items).
// Output: one JSON object {"methods": N, "errors": [...]} on stdout; exit 1 when there are errors.
"use strict";
const fs = require("fs");
const Ajv = require("ajv");
const addFormats = require("ajv-formats");
const { validateOpenRPCDocument, MethodCallValidator } = require("@open-rpc/schema-utils-js");

const input = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const doc = input.document;
const errors = [];

const valid = validateOpenRPCDocument(doc);
if (valid !== true) errors.push(`validateOpenRPCDocument: ${valid.message || JSON.stringify(valid)}`);

// ajv 8 in strict mode (its default) with ajv-formats: every schema must compile as written.
const ajv = new Ajv({ strict: true, allErrors: true });
addFormats(ajv);
function compile(where, schema) {
  try {
    return ajv.compile(schema);
  } catch (e) {
    errors.push(`${where}: ajv strict refuses the schema: ${e.message}`);
    return null;
  }
}

let validator = null;
try {
  validator = new MethodCallValidator(doc);
} catch (e) {
  errors.push(`MethodCallValidator: ${e.message}`);
}

for (const method of doc.methods) {
  const name = method.name;
  for (const param of method.params) compile(`${name} param ${param.name}`, param.schema);
  const result = compile(`${name} result`, method.result.schema);
  if (!(name in input.calls)) {
    errors.push(`${name}: no example call given`);
    continue;
  }
  const params = input.calls[name];
  if (validator !== null) {
    let problems;
    try {
      problems = validator.validate(name, params);
    } catch (e) {
      problems = [e];
    }
    if (!Array.isArray(problems) || problems.length) {
      const text = Array.isArray(problems) ? problems.map((p) => p.message).join("; ") : problems.message;
      errors.push(`${name}: MethodCallValidator refuses the correct call ${JSON.stringify(params)}: ${text}`);
    }
  }
  // A streaming method's result schema is its item type: each streamed item must match it.
  const actual = name in input.results ? (method["x-ppy-stream"] ? input.results[name] : [input.results[name]]) : [];
  for (const value of actual) {
    if (result !== null && !result(value)) {
      errors.push(`${name}: the actual result ${JSON.stringify(value)} does not match its schema: ` +
        ajv.errorsText(result.errors));
    }
  }
}
console.log(JSON.stringify({ methods: doc.methods.length, errors }));
process.exit(errors.length ? 1 : 0);
