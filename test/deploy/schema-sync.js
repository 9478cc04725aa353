#!/usr/bin/env node
// Compares the keys values.schema.json allows under ringside.config with the keys the
// ringside binary accepts, section by section, so the chart cannot drift from ringside.
// ringside names the keys it expects when it refuses an unknown one; this script puts an
// unknown key in each section and reads that list.
//
//   node schema-sync.js SCRATCH_DIR
// The environment gives the checker: bash function check_config (exported), called as
// check_config FILE.
"use strict";

const fs = require("fs");
const path = require("path");
const { spawnSync } = require("child_process");

const scratch = process.argv[2];
if (!scratch) {
  console.error("usage: schema-sync.js SCRATCH_DIR");
  process.exit(2);
}
fs.mkdirSync(scratch, { recursive: true });

const schema = JSON.parse(fs.readFileSync(path.join(__dirname, "../../helm/ringside/values.schema.json"), "utf8"));
const config = schema.properties.ringside.properties.config;

const upstream = "upstream: {address: 127.0.0.1:1}\n";
// section -> [schema node, config text with an unknown key "zz_probe" in that section]
const probes = {
  "(top level)": [config, "zz_probe: 1\n" + upstream],
  routes: [config.properties.routes.items, upstream + "routes: [{zz_probe: 1}]\n"],
  "routes[].match": [config.properties.routes.items.properties.match, upstream + "routes: [{match: {zz_probe: 1}}]\n"],
};
for (const [name, node] of Object.entries(config.properties))
  if (node.type === "object" && name !== "upstream") probes[name] = [node, `${upstream}${name}: {zz_probe: 1}\n`];
probes.upstream = [config.properties.upstream, "upstream: {address: 127.0.0.1:1, zz_probe: 1}\n"];

let problems = 0;
for (const [section, [node, text]] of Object.entries(probes)) {
  const file = path.join(scratch, `probe-${section.replace(/[^a-z]/g, "_")}.yaml`);
  fs.writeFileSync(file, text);
  const r = spawnSync("bash", ["-c", 'check_config "$1"', "_", file], { encoding: "utf8" });
  const out = `${r.stdout}${r.stderr}`;
  const m = /unknown key \(expected one of: ([^)]*)\)/.exec(out);
  if (r.status === 0 || !m) {
    console.log(`${section}: cannot read ringside's key list from: ${out.trim() || `exit ${r.status}`}`);
    problems++;
    continue;
  }
  const accepted = m[1].split(",").map((s) => s.trim()).sort();
  const allowed = Object.keys(node.properties).sort();
  const onlyRingside = accepted.filter((k) => !allowed.includes(k));
  const onlySchema = allowed.filter((k) => !accepted.includes(k));
  if (onlyRingside.length || onlySchema.length) {
    problems++;
    if (onlyRingside.length) console.log(`${section}: ringside accepts ${onlyRingside.join(", ")}; values.schema.json does not`);
    if (onlySchema.length) console.log(`${section}: values.schema.json allows ${onlySchema.join(", ")}; ringside refuses it`);
  } else console.log(`${section}: ${accepted.join(", ")}`);
}
process.exit(problems ? 1 : 0);
