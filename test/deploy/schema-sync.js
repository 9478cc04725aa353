#!/usr/bin/env node
// Compares the keys values.schema.json allows under ringside.config with the keys the
// ringside binary accepts, section by section, so the chart cannot drift from ringside.
// ringside names the keys it expects when it refuses an unknown one; this script puts an
// unknown key in a section and reads that list. Then it gives each accepted key a
// mapping, and a list of one mapping where ringside asks for a list: where ringside
// answers with the keys it expects in there, the key is a section of its own (cache,
// redis, routes[], routes[].cache, routes[].cache.key...) and is compared the same way.
// So a section added to ringside, at any depth, shows up here without changes to this
// script.
//
//   node schema-sync.js SCRATCH_DIR [SCHEMA]
// SCHEMA defaults to helm/ringside/values.schema.json (another file: to prove a drift is
// caught). The environment gives the checker: bash function check_config (exported),
// called as check_config FILE.
"use strict";

const fs = require("fs");
const path = require("path");
const { spawnSync } = require("child_process");
const YAML = require("yaml");

const [scratch, schemaFile = path.join(__dirname, "../../helm/ringside/values.schema.json")] = process.argv.slice(2);
if (!scratch) {
  console.error("usage: schema-sync.js SCRATCH_DIR [SCHEMA]");
  process.exit(2);
}
fs.mkdirSync(scratch, { recursive: true });

const schema = JSON.parse(fs.readFileSync(schemaFile, "utf8"));
const config = schema.properties.ringside.properties.config;

const PROBE = "zz_probe";
const BASE = { upstream: { address: "127.0.0.1:1" } }; // the one required key

// A path is a list of keys and list indexes: ["routes", 0, "cache"]. Its name as ringside
// prints it ("routes[0].cache") and as this report prints it ("routes[].cache").
const ringsideName = (p) => p.map((s, i) => (typeof s === "number" ? `[${s}]` : i ? `.${s}` : s)).join("");
const sectionName = (p) => (p.length ? ringsideName(p).replace(/\[\d+\]/g, "[]") : "(top level)");

// The smallest config with value at path p (mappings merged into BASE's).
function configWith(p, value) {
  const cfg = structuredClone(BASE);
  let node = cfg;
  p.forEach((seg, i) => {
    const last = i === p.length - 1;
    const next = last ? value : typeof p[i + 1] === "number" ? [] : {};
    if (last && node[seg] && typeof node[seg] === "object") Object.assign(node[seg], value);
    else if (node[seg] === undefined || last) node[seg] = next;
    node = node[seg];
  });
  return p.length ? cfg : Object.assign(cfg, value);
}

let runs = 0;
function check(cfg) {
  const file = path.join(scratch, `probe-${runs++}.yaml`);
  fs.writeFileSync(file, YAML.stringify(cfg));
  const r = spawnSync("bash", ["-c", 'check_config "$1"', "_", file], { encoding: "utf8" });
  return { status: r.status, out: `${r.stdout}${r.stderr}`.trim() };
}

// The keys ringside accepts in the mapping at path p, or null with why not.
function acceptedKeys(p) {
  const { status, out } = check(configWith(p, { [PROBE]: 1 }));
  const m = /(\S+): unknown key \(expected one of: ([^)]*)\)/.exec(out);
  const want = ringsideName([...p, PROBE]);
  if (status === 0 || !m || m[1] !== want) return { why: out || `exit ${status}` };
  return { keys: m[2].split(",").map((s) => s.trim()) };
}

// How ringside reads key k in the mapping at path p: "mapping" or "list" (of mappings)
// when it is a section with keys of its own, else null.
function sectionKind(p, k) {
  const { out } = check(configWith([...p, k], { [PROBE]: 1 }));
  if (out.includes(`${ringsideName([...p, k, PROBE])}: unknown key`)) return "mapping";
  if (!/expected a list/.test(out)) return null;
  const list = check(configWith([...p, k, 0], { [PROBE]: 1 }));
  return list.out.includes(`${ringsideName([...p, k, 0, PROBE])}: unknown key`) ? "list" : null;
}

const report = [];
let problems = 0;
const problem = (msg) => {
  report.push(msg);
  problems++;
};

// Compares the section at path p with its schema node (null: the schema lacks it).
function compare(p, node) {
  const name = sectionName(p);
  const got = acceptedKeys(p);
  if (!got.keys) return problem(`${name}: cannot read ringside's key list from: ${got.why}`);
  const accepted = [...got.keys].sort();
  if (!node) problem(`${name}: ringside accepts ${accepted.join(", ")}; values.schema.json has no such section`);
  else {
    if (node.type !== "object" || !node.properties || node.additionalProperties !== false)
      problem(`${name}: values.schema.json does not list this section's keys (object with properties, additionalProperties: false)`);
    const allowed = Object.keys(node.properties || {}).sort();
    const onlyRingside = accepted.filter((k) => !allowed.includes(k));
    const onlySchema = allowed.filter((k) => !accepted.includes(k));
    if (onlyRingside.length) problem(`${name}: ringside accepts ${onlyRingside.join(", ")}; values.schema.json does not`);
    if (onlySchema.length) problem(`${name}: values.schema.json allows ${onlySchema.join(", ")}; ringside refuses it`);
    if (!onlyRingside.length && !onlySchema.length) report.push(`${name}: ${accepted.join(", ")}`);
  }

  for (const k of got.keys) {
    const kind = sectionKind(p, k);
    const child = node?.properties?.[k];
    const schemaKind = child?.type === "object" && child.properties ? "mapping" : child?.type === "array" && child.items?.properties ? "list" : null;
    if (kind === null) {
      if (schemaKind) problem(`${sectionName([...p, k])}: values.schema.json describes a section; ringside reads a value`);
      continue;
    }
    if (child && schemaKind !== kind)
      problem(`${sectionName([...p, k])}: ringside reads a ${kind === "list" ? "list of mappings" : "mapping"}; values.schema.json describes ${schemaKind ?? `no keys (${JSON.stringify(child.type)})`}`);
    if (kind === "mapping") compare([...p, k], child?.type === "object" ? child : null);
    else compare([...p, k, 0], child?.type === "array" ? child.items : null);
  }
}

compare([], config);
for (const line of report) console.log(line);
console.log(`(${runs} configs checked)`);
process.exit(problems ? 1 : 0);
