#!/usr/bin/env node
// Checks the Grafana dashboard and the Prometheus rules against PromQL and against what
// ringside really exposes.
//
//   node check-observability.js dashboard-rules OUT.yaml
//       Writes every dashboard query (panel targets and variable queries, with Grafana's
//       $variables replaced) as a recording rule, for `promtool check rules OUT.yaml`.
//   node check-observability.js metrics METRICS.txt [--without-redis]
//       Every ringside_* series the dashboard and the alert rules select must exist in
//       METRICS.txt (a /metrics scrape), with the label names they match on and the label
//       values they match with "=". --without-redis: the scrape is of a ringside with no
//       redis section, so the Redis-only families may not be there, and must not be.
//   node check-observability.js grafana
//       The dashboard is well formed for Grafana's file provisioning, and the provisioning
//       files point where docker-compose.yml mounts things.
"use strict";

const fs = require("fs");
const path = require("path");
const YAML = require("yaml");

const root = path.resolve(__dirname, "..", "..");
const dashboardFile = path.join(root, "deploy/grafana/dashboards/ringside.json");
const rulesDir = path.join(root, "deploy/prometheus/rules");

// Families ringside exports only with a redis section (docs/cache.md, "Metrics").
const REDIS_ONLY = (name) => name.startsWith("ringside_redis_") || name === "ringside_cache_l2_requests_total";

// ---- collecting the queries ------------------------------------------------------------------

function dashboardQueries() {
  const dash = JSON.parse(fs.readFileSync(dashboardFile, "utf8"));
  const out = [];
  const walk = (panels) => {
    for (const p of panels || []) {
      for (const t of p.targets || []) if (t.expr) out.push({ where: `dashboard panel "${p.title}" ${t.refId}`, expr: t.expr });
      walk(p.panels);
    }
  };
  walk(dash.panels);
  for (const v of dash.templating?.list || []) {
    if (v.type !== "query") continue;
    const q = typeof v.query === "string" ? v.query : v.query?.query;
    // label_values(SELECTOR, label) and query_result(EXPR) wrap PromQL.
    const m = /^\s*(?:label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)|query_result\((.*)\))\s*$/.exec(q || "");
    if (!m) throw new Error(`dashboard variable ${v.name}: cannot read query ${JSON.stringify(q)}`);
    out.push({ where: `dashboard variable ${v.name}`, expr: m[1] ?? m[2] });
  }
  return out;
}

function ruleQueries() {
  const out = [];
  for (const f of fs.readdirSync(rulesDir).filter((f) => /\.ya?ml$/.test(f))) {
    const doc = YAML.parse(fs.readFileSync(path.join(rulesDir, f), "utf8"));
    for (const g of doc.groups || [])
      for (const r of g.rules || []) out.push({ where: `${f} ${r.alert || r.record}`, expr: r.expr });
  }
  return out;
}

// Grafana's variables as PromQL can read them.
function substitute(expr) {
  return expr
    .replace(/\$__(rate_interval|interval|range)\b/g, "5m")
    .replace(/\$\{__(rate_interval|interval|range)\}/g, "5m")
    .replace(/\$\{?[A-Za-z_][A-Za-z0-9_]*(:[a-z]+)?\}?/g, ".*");
}

// ---- reading selectors ------------------------------------------------------------------------

// Every ringside_* metric a query selects, with its label matchers.
function selectors(expr) {
  const out = [];
  const re = /\b(ringside_[a-zA-Z0-9_]+)\s*(\{([^}]*)\})?/g;
  let m;
  while ((m = re.exec(expr)) !== null) {
    const matchers = [];
    const body = m[3] || "";
    const mre = /([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g;
    let mm;
    while ((mm = mre.exec(body)) !== null) matchers.push({ label: mm[1], op: mm[2], value: mm[3] });
    out.push({ name: m[1], matchers });
  }
  return out;
}

// name -> [labels...] from the Prometheus text format, plus the names declared by TYPE.
function readExposition(text) {
  const series = new Map();
  const declared = new Map();
  for (const line of text.split("\n")) {
    const t = /^# TYPE (\S+) (\S+)/.exec(line);
    if (t) {
      declared.set(t[1], t[2]);
      continue;
    }
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+\S+/.exec(line);
    if (!m) throw new Error(`unreadable /metrics line: ${line}`);
    const labels = {};
    const lre = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    let l;
    while ((l = lre.exec(m[3] || "")) !== null) labels[l[1]] = l[2];
    if (!series.has(m[1])) series.set(m[1], []);
    series.get(m[1]).push(labels);
  }
  return { series, declared };
}

// The family a sample name belongs to: histograms expose NAME_bucket, _sum and _count.
function familyOf(name, declared) {
  for (const suffix of ["_bucket", "_sum", "_count"])
    if (name.endsWith(suffix) && declared.get(name.slice(0, -suffix.length)) === "histogram") return name.slice(0, -suffix.length);
  return name;
}

// ---- commands -----------------------------------------------------------------------------

function dashboardRules(outFile) {
  const queries = dashboardQueries();
  const rules = queries.map((q, i) => ({
    record: `dashboard:query_${i}`,
    expr: substitute(q.expr),
    labels: { source: q.where },
  }));
  fs.writeFileSync(outFile, YAML.stringify({ groups: [{ name: "dashboard-queries", rules }] }));
  console.log(`${queries.length} dashboard queries written to ${outFile}`);
}

function checkMetrics(metricsFile, withoutRedis) {
  const { series, declared } = readExposition(fs.readFileSync(metricsFile, "utf8"));
  const problems = [];
  const used = new Set();
  const missingAllowed = new Set();
  for (const q of [...dashboardQueries(), ...ruleQueries()]) {
    for (const sel of selectors(q.expr)) {
      const family = familyOf(sel.name, declared);
      used.add(family);
      const samples = series.get(sel.name);
      if (!samples && !declared.has(sel.name) && !declared.has(family)) {
        if (withoutRedis && REDIS_ONLY(family)) missingAllowed.add(family);
        else problems.push(`${q.where}: ${sel.name} is not in /metrics`);
        continue;
      }
      if (!samples) continue; // declared, no sample yet: nothing to compare labels with
      for (const { label, op, value } of sel.matchers) {
        if (label === "__name__") continue;
        const hasLabel = samples.some((s) => label in s);
        // job, instance, namespace... come from the scrape, not from ringside.
        const fromScrape = ["job", "instance", "namespace", "pod", "container", "service", "endpoint"].includes(label);
        if (!hasLabel && !fromScrape) {
          problems.push(`${q.where}: ${sel.name} has no label ${label}`);
          continue;
        }
        if (op === "=" && !fromScrape && !value.includes("$") && !samples.some((s) => s[label] === value))
          problems.push(`${q.where}: no ${sel.name} series with ${label}="${value}" (values seen: ${[...new Set(samples.map((s) => s[label]))].join(", ")})`);
      }
    }
  }
  if (withoutRedis)
    for (const name of new Set([...series.keys(), ...declared.keys()].map((n) => familyOf(n, declared))))
      if (REDIS_ONLY(name)) problems.push(`${name} is in a scrape said to be without Redis`);
  const unused = [...declared.keys()].filter((n) => n.startsWith("ringside_") && !used.has(n));
  console.log(`${used.size} ringside metrics used by the dashboard and rules; ${series.size} sample names in /metrics`);
  if (missingAllowed.size) console.log(`not in this scrape (ringside without Redis): ${[...missingAllowed].join(", ")}`);
  if (unused.length) console.log(`exposed but on no dashboard or rule: ${unused.join(", ")}`);
  for (const p of problems) console.log(`  PROBLEM ${p}`);
  return problems.length === 0;
}

function checkGrafana() {
  const problems = [];
  const dash = JSON.parse(fs.readFileSync(dashboardFile, "utf8"));
  for (const key of ["uid", "title", "panels", "templating", "schemaVersion"])
    if (dash[key] === undefined) problems.push(`dashboard: no ${key}`);
  const ids = new Set();
  const cells = new Map();
  for (const p of dash.panels || []) {
    if (ids.has(p.id)) problems.push(`dashboard: panel id ${p.id} used twice`);
    ids.add(p.id);
    const g = p.gridPos || {};
    if (!(g.w > 0 && g.h > 0 && g.x >= 0 && g.x + g.w <= 24)) problems.push(`dashboard: panel "${p.title}" has gridPos ${JSON.stringify(g)}`);
    for (let x = g.x; x < g.x + g.w; x++)
      for (let y = g.y; y < g.y + g.h; y++) {
        const other = cells.get(`${x},${y}`);
        if (other) problems.push(`dashboard: panels "${other}" and "${p.title}" overlap`);
        cells.set(`${x},${y}`, p.title);
      }
    if (p.type !== "row") {
      if (p.datasource?.uid !== "${datasource}") problems.push(`dashboard: panel "${p.title}" does not use the $datasource variable`);
      if (!(p.targets || []).length) problems.push(`dashboard: panel "${p.title}" has no query`);
    }
  }
  const vars = (dash.templating?.list || []).map((v) => v.name);
  for (const v of ["datasource", "job", "instance", "route"]) if (!vars.includes(v)) problems.push(`dashboard: no $${v} variable`);

  // Provisioning against docker-compose.yml.
  const compose = YAML.parse(fs.readFileSync(path.join(root, "docker-compose.yml"), "utf8"));
  const mounts = Object.fromEntries((compose.services.grafana?.volumes || []).map((v) => {
    const [src, dst] = v.split(":");
    return [path.normalize(src), dst];
  }));
  const dashMount = mounts[path.normalize("./deploy/grafana/dashboards")];
  const provMount = mounts[path.normalize("./deploy/grafana/provisioning")];
  if (provMount !== "/etc/grafana/provisioning") problems.push(`compose mounts deploy/grafana/provisioning at ${provMount}`);
  const providers = YAML.parse(fs.readFileSync(path.join(root, "deploy/grafana/provisioning/dashboards/ringside.yaml"), "utf8")).providers;
  if (!providers?.some((p) => p.options?.path === dashMount))
    problems.push(`no dashboard provider reads ${dashMount}, where compose mounts deploy/grafana/dashboards`);
  const sources = YAML.parse(fs.readFileSync(path.join(root, "deploy/grafana/provisioning/datasources/prometheus.yaml"), "utf8")).datasources;
  const promUrl = sources?.find((d) => d.type === "prometheus")?.url;
  if (!compose.services.prometheus || promUrl !== "http://prometheus:9090")
    problems.push(`the Prometheus data source points at ${promUrl}, not the compose service prometheus:9090`);
  for (const p of problems) console.log(`  PROBLEM ${p}`);
  if (!problems.length) console.log(`dashboard: ${dash.panels.length} panels, variables ${vars.join(", ")}; provisioning matches docker-compose.yml`);
  return problems.length === 0;
}

const [command, arg, option] = process.argv.slice(2);
if (command === "dashboard-rules" && arg) dashboardRules(arg);
else if (command === "grafana") process.exit(checkGrafana() ? 0 : 1);
else if (command === "metrics" && arg && (option === undefined || option === "--without-redis"))
  process.exit(checkMetrics(arg, option === "--without-redis") ? 0 : 1);
else {
  console.error("usage: check-observability.js dashboard-rules OUT.yaml | metrics METRICS.txt [--without-redis] | grafana");
  process.exit(2);
}
