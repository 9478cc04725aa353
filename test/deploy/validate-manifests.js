#!/usr/bin/env node
// Validates rendered Kubernetes manifests (helm template / kustomize build output).
//
//   node validate-manifests.js [--configs-out DIR] [--expect-sidecar native|classic] FILE...
//   (--expect-sidecar applies to the files after it; it may be repeated)
//
// For every object:
//  1. the Kubernetes OpenAPI schema of its kind (kubernetes-models, and
//     @kubernetes-models/prometheus-operator for ServiceMonitor): types, required
//     fields, enums, formats;
//  2. unknown fields, which those schemas let through and the API server's strict field
//     validation refuses: the object is walked against the TypeScript declarations that
//     kubernetes-models generates from the same OpenAPI document;
//  3. what ringside's deployment needs: the sidecar's probes, ports, security context,
//     config volume, shutdown timing, and Service/ServiceMonitor/PDB/HPA wiring.
// Each ConfigMap's ringside.yaml is written to --configs-out for `ringside --check-config`.
// Exit status 1 when anything is wrong; every problem is printed as FILE: PATH: message.
"use strict";

const fs = require("fs");
const path = require("path");
const YAML = require("yaml");
const ts = require("typescript");
const crypto = require("crypto");

// ---- where each kind's model and declarations live ---------------------------------------

function modelModule(apiVersion, kind) {
  if (apiVersion.startsWith("monitoring.coreos.com/"))
    return `@kubernetes-models/prometheus-operator/${apiVersion}/${kind}`;
  return `kubernetes-models/${apiVersion}/${kind}`;
}

// ---- unknown-field detection from the TypeScript declarations ----------------------------

const here = __dirname;
const typeIndex = new Map(); // "apiVersion/kind" -> ts.Type
let checker = null;

// Builds one TypeScript program for every kind not loaded yet (a few seconds: do it once
// for all the files at hand).
function loadTypes(wanted) {
  const kinds = wanted.filter((k) => !typeIndex.has(`${k.apiVersion}/${k.kind}`) && hasModel(k));
  if (kinds.length === 0) return;
  // One program holds every kind seen so far, so all types come from one checker.
  for (const key of typeIndex.keys()) {
    const cut = key.lastIndexOf("/");
    kinds.push({ apiVersion: key.slice(0, cut), kind: key.slice(cut + 1) });
  }
  typeIndex.clear();
  const virtualName = path.join(here, "__kinds__.ts");
  const lines = [];
  kinds.forEach((k, i) => {
    lines.push(`import { I${k.kind} as T${i} } from "${modelModule(k.apiVersion, k.kind)}";`);
    lines.push(`export declare const v${i}: T${i};`);
  });
  const source = lines.join("\n");
  const options = {
    noEmit: true,
    skipLibCheck: true,
    module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10,
    target: ts.ScriptTarget.ES2020,
    types: [],
    baseUrl: here,
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang) =>
    path.resolve(name) === virtualName ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => path.resolve(name) === virtualName || fileExists(name);
  const program = ts.createProgram([virtualName], options, host);
  const diags = ts.getPreEmitDiagnostics(program).filter((d) => d.file && path.resolve(d.file.fileName) === virtualName);
  for (const d of diags) console.error("type loading:", ts.flattenDiagnosticMessageText(d.messageText, "\n"));
  checker = program.getTypeChecker();
  const sf = program.getSourceFile(virtualName);
  const decls = new Map();
  sf.statements.forEach((st) => {
    if (ts.isVariableStatement(st)) for (const d of st.declarationList.declarations) decls.set(d.name.text, d);
  });
  kinds.forEach((k, i) => {
    const t = checker.getTypeAtLocation(decls.get(`v${i}`).name);
    if (t.flags & ts.TypeFlags.Any) return; // import failed; reported above
    typeIndex.set(`${k.apiVersion}/${k.kind}`, t);
  });
}

function modelOf(apiVersion, kind) {
  try {
    return require(modelModule(apiVersion, kind))[kind];
  } catch (e) {
    return undefined;
  }
}

function hasModel(k) {
  return typeof k.apiVersion === "string" && typeof k.kind === "string" && modelOf(k.apiVersion, k.kind) !== undefined;
}

function unknownFields(value, type, where, out) {
  if (value === null || value === undefined) return;
  type = checker.getNonNullableType(type);
  if (type.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return;
  const members = type.isUnion() ? type.types : [type];
  if (Array.isArray(value)) {
    const arrays = members.filter((t) => checker.isArrayType(t));
    if (arrays.length === 0) return; // a type mismatch: the schema check reports it
    const elem = checker.getTypeArguments(arrays[0])[0];
    value.forEach((v, i) => unknownFields(v, elem, `${where}[${i}]`, out));
    return;
  }
  if (typeof value !== "object") return;
  const objects = members.filter((t) => t.flags & ts.TypeFlags.Object && !checker.isArrayType(t));
  if (objects.length === 0) return;
  for (const [key, v] of Object.entries(value)) {
    let propType = null;
    for (const t of objects) {
      const prop = checker.getPropertyOfType(t, key);
      if (prop) {
        propType = checker.getTypeOfSymbol(prop);
        break;
      }
      const index = checker.getIndexTypeOfType(t, ts.IndexKind.String);
      if (index) {
        propType = index;
        break;
      }
    }
    if (propType === null) out.push(`${where}.${key}: unknown field`);
    else unknownFields(v, propType, `${where}.${key}`, out);
  }
}

// ---- ringside-specific checks --------------------------------------------------------------

function durationSeconds(text) {
  if (text === undefined || text === null) return 25; // ringside's default drain
  const s = String(text);
  if (s === "0") return 0;
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$/.exec(s);
  if (!m) return null;
  return Math.ceil(parseFloat(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2]]);
}

function portOf(address, fallback) {
  const m = /:([0-9]+)$/.exec(String(address ?? fallback));
  return m ? parseInt(m[1], 10) : null;
}

function sleepSeconds(container) {
  const pre = container?.lifecycle?.preStop;
  if (!pre) return 0;
  if (pre.sleep) return pre.sleep.seconds;
  const cmd = pre.exec?.command || [];
  if (cmd.length === 2 && /(^|\/)sleep$/.test(cmd[0])) return parseInt(cmd[1], 10);
  return null; // some other hook: timing unknown
}

// A ringside size ("32MiB", "512", 1048576) in bytes; null when it is not one (a ${NAME}).
function sizeBytes(value) {
  const m = /^([0-9]+(?:\.[0-9]+)?)(B|KiB|MiB|GiB|kB|MB|GB)?$/.exec(String(value));
  if (!m) return null;
  const unit = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, kB: 1e3, MB: 1e6, GB: 1e9 }[m[2] || "B"];
  return Math.round(parseFloat(m[1]) * unit);
}

// A Kubernetes quantity ("128Mi", "1G", "500m", "2") as a number; null when unreadable.
function quantity(value) {
  const m = /^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(String(value ?? ""));
  if (!m) return null;
  const scale = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 };
  return parseFloat(m[1]) * (scale[m[2]] ?? 1);
}

const mib = (bytes) => `${Math.round(bytes / 1024 ** 2)}MiB`;

// Every string in a parsed config, for ${NAME} references.
function configStrings(value, out = []) {
  if (typeof value === "string") out.push(value);
  else if (value && typeof value === "object") for (const v of Object.values(value)) configStrings(v, out);
  return out;
}

// What ringside needs from its container: the variables its config names without a
// fallback (ringside refuses to start without them), and memory for the cache plus the
// receive buffers it allocates up front.
function checkConfigNeeds(cfg, rs, p) {
  const names = new Set();
  for (const s of configStrings(cfg))
    for (const m of s.replace(/\$\$/g, "").matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}/g)) if (!m[2]) names.add(m[1]);
  const given = new Set((rs.env || []).map((e) => e.name));
  for (const name of names)
    if (!given.has(name) && !(rs.envFrom || []).length)
      p(`ringside.yaml uses \${${name}} without a fallback, and the ringside container does not set ${name}: ringside would refuse to start`);

  if (!(cfg.routes || []).some((r) => r && r.cache !== undefined)) return;
  const limit = quantity(rs.resources?.limits?.memory);
  const cache = sizeBytes(cfg.cache?.memory ?? "256MiB");
  const cpus = Math.max(1, Math.ceil(quantity(rs.resources?.limits?.cpu) ?? 1));
  const workers = cfg.workers === undefined || cfg.workers === "auto" ? cpus : Number(cfg.workers);
  const buffers = sizeBytes(cfg.limits?.recv_buffers ?? 256);
  const bufferSize = sizeBytes(cfg.limits?.recv_buffer_size ?? "16KiB");
  if ([limit, cache, buffers, bufferSize].includes(null) || !Number.isFinite(workers)) return; // from the environment
  const recv = buffers * bufferSize;
  const fixed = cache + workers * recv;
  // The rest of the limit is for connections, queued output and the allocator.
  if (fixed > 0.75 * limit)
    p(`cache.memory ${mib(cache)} + receive buffers ${mib(workers * recv)} (${workers} workers) is more than 3/4 of ringside's memory limit ${rs.resources.limits.memory}: lower cache.memory or raise the limit`);
}

function podSpecOf(obj) {
  if (["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"].includes(obj.kind)) return obj.spec?.template?.spec;
  if (obj.kind === "Pod") return obj.spec;
  return null;
}

function checkRingsidePod(obj, objects, problems, where, expectSidecar) {
  const spec = podSpecOf(obj);
  const inits = spec.initContainers || [];
  const mains = spec.containers || [];
  const asInit = inits.find((c) => c.name === "ringside");
  const asMain = mains.find((c) => c.name === "ringside");
  const rs = asInit || asMain;
  if (!rs) return false;
  const p = (msg) => problems.push(`${where}: ${msg}`);
  const native = Boolean(asInit);
  if (asInit && asInit.restartPolicy !== "Always")
    p("ringside is an init container without restartPolicy: Always (it would block the pod)");
  if (asInit && inits.indexOf(asInit) !== 0) p("the native ringside sidecar should be the first init container");
  if (expectSidecar && expectSidecar !== (native ? "native" : "classic"))
    p(`expected a ${expectSidecar} sidecar, found a ${native ? "native" : "classic"} one`);

  // The config it mounts.
  const mount = (rs.volumeMounts || []).find((m) => m.mountPath === "/etc/ringside");
  const vol = mount && (spec.volumes || []).find((v) => v.name === mount.name);
  const cm = vol?.configMap && objects.find((o) => o.kind === "ConfigMap" && o.metadata?.name === vol.configMap.name);
  let cfg = null;
  if (!cm) p("no ConfigMap with ringside.yaml mounted at /etc/ringside in this render");
  else {
    try {
      cfg = YAML.parse(cm.data?.["ringside.yaml"] ?? "");
    } catch (e) {
      p(`ConfigMap ${cm.metadata.name}: ringside.yaml is not YAML: ${e.message}`);
    }
  }
  // The chart's checksum annotation must be the hash of the config the pod mounts, or a
  // config change would not roll the pods.
  const checksum = obj.spec?.template?.metadata?.annotations?.["checksum/ringside-config"];
  if (checksum !== undefined && cm) {
    const text = (cm.data?.["ringside.yaml"] ?? "").replace(/\n$/, "");
    if (crypto.createHash("sha256").update(text).digest("hex") !== checksum)
      p("checksum/ringside-config is not the sha256 of the mounted ringside.yaml");
  }
  const argsText = (rs.args || []).join(" ");
  if (!/--config \/etc\/ringside\/ringside\.yaml/.test(argsText)) p("ringside is not started with --config /etc/ringside/ringside.yaml");

  if (cfg) checkConfigNeeds(cfg, rs, p);

  // Ports agree with the listeners; probes use the metrics port.
  const ports = Object.fromEntries((rs.ports || []).map((x) => [x.name, x.containerPort]));
  if (cfg) {
    const http = portOf(cfg.listen, "0.0.0.0:8080");
    const metrics = portOf(cfg.metrics?.listen, "0.0.0.0:9090");
    if (http !== null && ports.http !== http) p(`container port "http" is ${ports.http}, ringside listens on ${http}`);
    if (metrics !== null && ports.metrics !== metrics)
      p(`container port "metrics" is ${ports.metrics}, the metrics listener is on ${metrics}`);
  }
  const probe = (name, wantPath) => {
    const pr = rs[name];
    if (!pr?.httpGet) return p(`ringside has no httpGet ${name}`);
    if (pr.httpGet.path !== wantPath) p(`ringside ${name} path is ${pr.httpGet.path}, want ${wantPath}`);
    if (pr.httpGet.port !== "metrics" && pr.httpGet.port !== ports.metrics) p(`ringside ${name} is not on the metrics port`);
  };
  probe("readinessProbe", "/readyz");
  probe("livenessProbe", "/healthz");
  if (rs.startupProbe?.httpGet?.path === "/readyz" && native)
    p("a native sidecar's startupProbe on /readyz waits for a backend that cannot start before it: use /healthz");

  // Hardening.
  const sc = rs.securityContext || {};
  const psc = spec.securityContext || {};
  if (!(sc.runAsNonRoot ?? psc.runAsNonRoot)) p("ringside may run as root (runAsNonRoot not set)");
  if (sc.readOnlyRootFilesystem !== true) p("ringside's root filesystem is writable");
  if (sc.allowPrivilegeEscalation !== false) p("ringside allows privilege escalation");
  if (!(sc.capabilities?.drop || []).includes("ALL")) p("ringside does not drop ALL capabilities");
  if (!(sc.seccompProfile || psc.seccompProfile)) p("no seccomp profile for ringside");
  for (const kind of ["requests", "limits"])
    for (const r of ["cpu", "memory"]) if (!rs.resources?.[kind]?.[r]) p(`ringside has no ${kind}.${r}`);

  // Shutdown timing: the pod's grace period covers the endpoint-removal delay and the drain.
  const drain = durationSeconds(cfg?.timeouts?.drain);
  const grace = spec.terminationGracePeriodSeconds ?? 30;
  const backends = mains.filter((c) => c.name !== "ringside");
  if (drain === null) {
    if (spec.terminationGracePeriodSeconds === undefined) p("drain comes from the environment but terminationGracePeriodSeconds is not set");
  } else if (native) {
    // Backends stop first (after their preStop), then ringside drains.
    const hold = Math.max(0, ...backends.map((c) => sleepSeconds(c) ?? 0));
    if (grace < hold + drain) p(`terminationGracePeriodSeconds ${grace} < backend preStop ${hold} + drain ${drain}`);
  } else {
    const delay = sleepSeconds(rs) ?? 0;
    if (grace < delay + drain) p(`terminationGracePeriodSeconds ${grace} < ringside preStop ${delay} + drain ${drain}`);
    for (const c of backends) {
      const hold = sleepSeconds(c);
      if (hold !== null && hold < delay + drain)
        p(`backend ${c.name} preStop sleeps ${hold}s, less than ringside's ${delay}s + drain ${drain}s: it would stop mid-drain`);
    }
  }
  return true;
}

function labelsMatch(selector, labels) {
  return Object.entries(selector || {}).every(([k, v]) => labels?.[k] === v);
}

function checkWiring(objects, problems, file) {
  const workloads = objects.filter((o) => podSpecOf(o));
  for (const svc of objects.filter((o) => o.kind === "Service")) {
    const pods = workloads.filter((w) => labelsMatch(svc.spec.selector, w.spec.template.metadata.labels));
    if (pods.length === 0) problems.push(`${file}: Service ${svc.metadata.name} selects no pod template in this render`);
    for (const port of svc.spec.ports || []) {
      if (typeof port.targetPort !== "string") continue;
      const found = pods.some((w) => {
        const s = podSpecOf(w);
        return [...(s.initContainers || []), ...s.containers].some((c) => (c.ports || []).some((x) => x.name === port.targetPort));
      });
      if (!found) problems.push(`${file}: Service ${svc.metadata.name} targetPort ${port.targetPort} names no container port`);
    }
  }
  for (const sm of objects.filter((o) => o.kind === "ServiceMonitor")) {
    const svcs = objects.filter((o) => o.kind === "Service" && labelsMatch(sm.spec.selector?.matchLabels, o.metadata.labels));
    if (svcs.length === 0) problems.push(`${file}: ServiceMonitor ${sm.metadata.name} selects no Service`);
    for (const ep of sm.spec.endpoints || [])
      if (!svcs.some((s) => s.spec.ports.some((x) => x.name === ep.port)))
        problems.push(`${file}: ServiceMonitor ${sm.metadata.name} scrapes port ${ep.port}, which the Service lacks`);
  }
  for (const pdb of objects.filter((o) => o.kind === "PodDisruptionBudget"))
    if (!workloads.some((w) => labelsMatch(pdb.spec.selector?.matchLabels, w.spec.template.metadata.labels)))
      problems.push(`${file}: PodDisruptionBudget ${pdb.metadata.name} selects no pod template`);
  for (const hpa of objects.filter((o) => o.kind === "HorizontalPodAutoscaler")) {
    const ref = hpa.spec.scaleTargetRef;
    const target = workloads.find((w) => w.kind === ref.kind && w.metadata.name === ref.name);
    if (!target) problems.push(`${file}: HorizontalPodAutoscaler ${hpa.metadata.name} targets a missing ${ref.kind} ${ref.name}`);
    else if (target.spec.replicas !== undefined)
      problems.push(`${file}: ${ref.kind} ${ref.name} sets replicas although an HPA scales it (every apply would reset the scale)`);
    else {
      const s = podSpecOf(target);
      const resources = hpa.spec.metrics.filter((m) => m.type === "Resource").map((m) => m.resource.name);
      for (const r of resources)
        for (const c of [...(s.initContainers || []).filter((c) => c.restartPolicy === "Always"), ...s.containers])
          if (!c.resources?.requests?.[r])
            problems.push(`${file}: HPA on ${r} but container ${c.name} has no ${r} request (utilization is undefined)`);
    }
  }
}

// ---- main ------------------------------------------------------------------------------------

// Validates every file (a path, or {file, expectSidecar: "native"|"classic"}); returns the
// problems as "FILE: WHERE: message" lines and prints a summary line per file unless quiet.
function validateFiles(files, { configsOut = null, quiet = false } = {}) {
  const problems = [];
  const loaded = [];
  for (const entry of files) {
    const { file, expectSidecar = null } = typeof entry === "string" ? { file: entry } : entry;
    const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"), { uniqueKeys: true });
    const objects = [];
    for (const doc of docs) {
      for (const e of doc.errors) problems.push(`${file}: YAML: ${e.message}`);
      const obj = doc.toJS();
      if (obj !== null && obj !== undefined) objects.push(obj);
    }
    loaded.push({ file, objects, expectSidecar });
  }
  loadTypes(loaded.flatMap(({ objects }) => objects.map((o) => ({ apiVersion: o.apiVersion, kind: o.kind }))));

  for (const { file, objects, expectSidecar } of loaded) {
    let sidecars = 0;
    for (const obj of objects) {
      const where = `${file}: ${obj.kind}/${obj.metadata?.name}`;
      const Model = modelOf(obj.apiVersion, obj.kind);
      const type = typeIndex.get(`${obj.apiVersion}/${obj.kind}`);
      if (!Model || !type) {
        problems.push(`${where}: no schema for apiVersion ${obj.apiVersion} kind ${obj.kind}`);
        continue;
      }
      try {
        new Model(obj).validate();
      } catch (e) {
        problems.push(`${where}: schema: ${e.message}`);
      }
      const unknown = [];
      unknownFields(obj, type, "", unknown);
      for (const u of unknown) problems.push(`${where}: ${u.replace(/^\./, "")}`);
      if (podSpecOf(obj) && checkRingsidePod(obj, objects, problems, where, expectSidecar)) sidecars++;
    }
    checkWiring(objects, problems, file);
    if (sidecars === 0) problems.push(`${file}: no workload with a ringside container`);
    if (configsOut) {
      fs.mkdirSync(configsOut, { recursive: true });
      for (const cm of objects.filter((o) => o.kind === "ConfigMap" && o.data?.["ringside.yaml"] !== undefined)) {
        const name = `${path.basename(file).replace(/\.[^.]*$/, "")}--${cm.metadata.name}.yaml`;
        fs.writeFileSync(path.join(configsOut, name), cm.data["ringside.yaml"]);
      }
    }
    if (!quiet) console.log(`${file}: ${objects.length} objects (${objects.map((o) => o.kind).join(", ")})`);
  }
  return problems;
}

module.exports = { validateFiles };

if (require.main === module) {
  const args = process.argv.slice(2);
  const options = {};
  const files = [];
  let expectSidecar = null; // applies to the files after it
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--expect-sidecar") expectSidecar = args[++i];
    else if (args[i] === "--configs-out") options.configsOut = args[++i];
    else files.push({ file: args[i], expectSidecar });
  }
  if (files.length === 0) {
    console.error("usage: validate-manifests.js [--expect-sidecar native|classic] [--configs-out DIR] FILE...");
    process.exit(2);
  }
  const problems = validateFiles(files, options);
  for (const p of problems) console.log(`  PROBLEM ${p}`);
  process.exit(problems.length ? 1 : 0);
}
