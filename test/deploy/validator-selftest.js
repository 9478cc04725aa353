#!/usr/bin/env node
// Proves validate-manifests.js can fail: takes a render that passes (kustomize build of
// deploy/k8s/base), breaks it one way at a time, and expects each break to be reported.
//
//   node validator-selftest.js GOOD_RENDER.yaml SCRATCH_DIR
"use strict";

const fs = require("fs");
const path = require("path");
const YAML = require("yaml");
const { validateFiles } = require("./validate-manifests.js");

const [good, scratch] = process.argv.slice(2);
if (!good || !scratch) {
  console.error("usage: validator-selftest.js GOOD_RENDER.yaml SCRATCH_DIR");
  process.exit(2);
}
const base = YAML.parseAllDocuments(fs.readFileSync(good, "utf8")).map((d) => d.toJS());
const find = (objs, kind) => objs.find((o) => o.kind === kind);
const pod = (objs) => find(objs, "Deployment").spec.template.spec;
const sidecar = (objs) => pod(objs).initContainers[0];

const cases = [
  ["misspelt field", "unknown field", (o) => { sidecar(o).securityContext.readOnlyRootFileSystem = true; }],
  ["string port", "must be integer", (o) => { sidecar(o).ports[0].containerPort = "8080"; }],
  ["unknown ServiceMonitor field", "unknown field", (o) => { find(o, "ServiceMonitor").spec.endpoints[0].scrapeInterval = "10s"; }],
  ["missing required field", "must have required property", (o) => { delete find(o, "Deployment").spec.selector; }],
  ["grace shorter than drain", "terminationGracePeriodSeconds", (o) => { pod(o).terminationGracePeriodSeconds = 20; }],
  ["init container without restartPolicy", "restartPolicy: Always", (o) => { delete sidecar(o).restartPolicy; }],
  ["readiness on /healthz", "readinessProbe path", (o) => { sidecar(o).readinessProbe.httpGet.path = "/healthz"; }],
  ["metrics port disagrees with config", 'container port "metrics"', (o) => {
    const cm = find(o, "ConfigMap");
    cm.data["ringside.yaml"] = cm.data["ringside.yaml"].replace("0.0.0.0:9090", "0.0.0.0:9191");
  }],
  ["Service targets a missing port", "names no container port", (o) => { find(o, "Service").spec.ports[0].targetPort = "htpp"; }],
  ["writable root filesystem", "root filesystem is writable", (o) => { sidecar(o).securityContext.readOnlyRootFilesystem = false; }],
  ["capabilities kept", "drop ALL", (o) => { delete sidecar(o).securityContext.capabilities; }],
  ["no memory limit", "limits.memory", (o) => { delete sidecar(o).resources.limits.memory; }],
  ["stale config checksum", "checksum/ringside-config", (o) => {
    find(o, "Deployment").spec.template.metadata.annotations = { "checksum/ringside-config": "0".repeat(64) };
  }],
  ["unknown kind", "no schema", (o) => { o.push({ apiVersion: "v1", kind: "Podd", metadata: { name: "x" } }); }],
  ["cache larger than the memory limit", "memory limit", (o) => {
    const cm = find(o, "ConfigMap");
    if (!/^ {2}memory: 32MiB$/m.test(cm.data["ringside.yaml"])) throw new Error("the good render has no cache.memory: 32MiB");
    cm.data["ringside.yaml"] = cm.data["ringside.yaml"].replace(/^ {2}memory: 32MiB$/m, "  memory: 128MiB");
  }],
  ["variable the container does not set", "REDIS_URL", (o) => {
    const cm = find(o, "ConfigMap");
    cm.data["ringside.yaml"] += "redis:\n  url: ${REDIS_URL}\n";
  }],
];

fs.mkdirSync(scratch, { recursive: true });
let failed = 0;
const check = (name, file, expect) => {
  const problems = validateFiles([file], { quiet: true });
  const caught = problems.some((p) => (expect instanceof RegExp ? expect.test(p) : p.includes(expect)));
  if (caught) console.log(`caught: ${name}`);
  else {
    failed++;
    console.log(`NOT CAUGHT: ${name} (wanted "${expect}")\n  ${problems.join("\n  ") || "(no problems reported)"}`);
  }
};
cases.forEach(([name, expect, mutate], i) => {
  const objs = structuredClone(base);
  mutate(objs);
  const file = path.join(scratch, `bad-${i}.yaml`);
  fs.writeFileSync(file, objs.map((o) => YAML.stringify(o)).join("---\n"));
  check(name, file, expect);
});

// Duplicate keys are YAML the API server would read differently from a reviewer.
const dup = path.join(scratch, "bad-duplicate-key.yaml");
fs.writeFileSync(dup, fs.readFileSync(good, "utf8").replace(/^kind: Service$/m, "kind: Service\nkind: Service"));
check("duplicate key", dup, /unique/i);

// And the unbroken render passes, so the catches above are not noise.
const clean = validateFiles([good], { quiet: true });
if (clean.length) {
  failed++;
  console.log(`the good render fails:\n  ${clean.join("\n  ")}`);
}
process.exit(failed ? 1 : 0);
