// logwarden dashboards: poll the JSON API every few seconds and redraw with Plotly.react.
"use strict";
const body = document.body;
const PAGE = body.dataset.page;
const REFRESH_MS = Number(body.dataset.refreshMs || 3000);
const rangeSel = document.getElementById("range");
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];
window.lwUpdates = 0;  // how many refreshes landed (the browser tests watch it)
const ISO_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$/;

function esc(v) {
  return String(v === null || v === undefined ? "" : v).replace(/[&<>"']/g,
    c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
function num(v, digits) {
  if (v === null || v === undefined || Number.isNaN(Number(v))) return "";
  return Number(v).toFixed(digits === undefined ? 1 : digits);
}
function pct(v) { return v === null || v === undefined ? "" : (100 * v).toFixed(2) + "%"; }
function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) u.set(k, v);
  return u.toString();
}
async function api(path, params) {
  const url = path + (params ? "?" + qs(params) : "");
  const r = await fetch(url, {headers: authHeaders()});
  // UTC timestamps without their offset: plotly.js reads "YYYY-MM-DD HH:MM:SS" as-is.
  const b = JSON.parse(await r.text(), (k, v) => typeof v === "string" && ISO_UTC.test(v) ? v.slice(0, -6).replace("T", " ") : v);
  if (!r.ok) throw new Error((b.error && b.error.message) || r.statusText);
  return b;
}
function authHeaders() {
  const t = localStorage.getItem("lw_token");
  return t ? {"Authorization": "Bearer " + t} : {};
}
function fillTable(id, rows, cells) {
  const tb = document.querySelector("#" + id + " tbody");
  const cols = document.querySelectorAll("#" + id + " thead th").length || 1;
  tb.innerHTML = rows.length ? rows.map(r => "<tr>" + cells(r).map(c => "<td>" + c + "</td>").join("") + "</tr>").join("")
    : '<tr><td colspan="' + cols + '" class="empty">no data yet</td></tr>';
}
const LAYOUT = (title, extra) => Object.assign({
  title: {text: title, font: {size: 14}}, margin: {l: 50, r: 10, t: 36, b: 36},
  legend: {font: {size: 10}}, hovermode: "closest", xaxis: {type: "date"}}, extra || {});
function draw(id, traces, title, extra) {
  const el = document.getElementById(id);
  if (!el) return;
  if (!traces.length) { Plotly.purge(el); el._lwClick = false; el.innerHTML = '<div class="nodata">' + esc(title) + ": no data yet</div>"; return; }
  if (el.querySelector(".nodata")) el.innerHTML = "";
  Plotly.react(el, traces, LAYOUT(title, extra), {displaylogo: false, responsive: true});
  if (el.dataset.jump !== undefined && !el._lwClick) { jumpToLogs(el, el.dataset.jump); el._lwClick = true; }
}
function groupBy(rows, key) {
  const out = {};
  for (const r of rows) (out[r[key]] = out[r[key]] || []).push(r);
  return out;
}
// Expected band: rolling median ± 3 MAD over the previous 10 points.
function band(xs, ys) {
  const lo = [], hi = [];
  for (let i = 0; i < ys.length; i++) {
    const w = ys.slice(Math.max(0, i - 10), i).filter(v => v !== null).sort((a, b) => a - b);
    if (w.length < 3) { lo.push(null); hi.push(null); continue; }
    const med = w[Math.floor(w.length / 2)];
    const dev = w.map(v => Math.abs(v - med)).sort((a, b) => a - b);
    const mad = Math.max(dev[Math.floor(dev.length / 2)] * 1.4826, Math.abs(med) * 0.05);
    lo.push(Math.max(0, med - 3 * mad)); hi.push(med + 3 * mad);
  }
  return [lo, hi];
}
function seriesTraces(rows, field, anomalies, feature, withBand) {
  const traces = [];
  Object.entries(groupBy(rows, "service")).forEach(([svc, rs], i) => {
    const xs = rs.map(r => r.start), ys = rs.map(r => r[field]);
    const color = COLORS[i % COLORS.length];
    if (withBand) {
      const [lo, hi] = band(xs, ys);
      traces.push({x: xs, y: lo, mode: "lines", line: {width: 0}, showlegend: false, hoverinfo: "skip", legendgroup: svc});
      traces.push({x: xs, y: hi, mode: "lines", line: {width: 0}, fill: "tonexty", fillcolor: "rgba(120,120,120,0.15)", showlegend: false, hoverinfo: "skip", legendgroup: svc});
    }
    traces.push({x: xs, y: ys, name: svc, mode: "lines", line: {color: color, width: 1.5}, legendgroup: svc, customdata: rs.map(() => svc)});
  });
  const marks = anomalies.filter(a => a.scope === "service" && (!feature || a.feature === feature));
  if (marks.length) traces.push({x: marks.map(a => a.ts), y: marks.map(a => a.observed), mode: "markers", name: "anomaly",
    marker: {symbol: "x", size: 10, color: "#cf222e"}, text: marks.map(a => a.service + " " + a.feature), customdata: marks.map(a => a.service)});
  return traces;
}
function jumpToLogs(el, level) {
  el.on("plotly_click", ev => {
    const pt = ev.points[0], t = new Date(pt.x.replace(" ", "T") + "Z").getTime();
    location.href = "/logs?" + qs({service: pt.customdata || "", level: level || "",
      since: new Date(t - 60000).toISOString(), until: new Date(t + 120000).toISOString()});
  });
}
const range = () => ({range: rangeSel ? rangeSel.value : "1h"});

const pages = {
  async fleet() {
    const [svcs, m, an] = await Promise.all([api("/api/services", range()), api("/api/metrics", range()),
      api("/api/anomalies", Object.assign({limit: 500}, range()))]);
    fillTable("services", svcs.items, r => {
      const cls = r.open_alerts > 0 || r.error_rate > 0.05 ? "bad" : r.error_rate > 0.01 ? "warn" : "ok";
      return ['<span class="dot ' + cls + '"></span>', '<a href="/service/' + encodeURIComponent(r.service) + '">' + esc(r.service) + "</a>",
        num(r.rate_per_s, 2), pct(r.error_rate), num(r.p95_ms), String(r.open_alerts), esc(r.last_seen)];
    });
    const a = an.items;
    draw("chart-rate", seriesTraces(m.items, "rate_per_s", a, "rate_per_s", true), "Request rate (events/s)");
    draw("chart-errors", seriesTraces(m.items, "error_rate", a, "error_rate", true), "Error rate");
    draw("chart-p95", seriesTraces(m.items, "p95", a, "p95", true), "Latency p95 (ms)");
  },
  async service() {
    const svc = body.dataset.service;
    const [d, m, an] = await Promise.all([api("/api/services/" + encodeURIComponent(svc), range()),
      api("/api/metrics", Object.assign({service: svc}, range())), api("/api/anomalies", Object.assign({service: svc, limit: 500}, range()))]);
    const traces = seriesTraces(m.items, "rate_per_s", an.items, "", true);
    const shapes = d.changes.map(c => ({type: "line", x0: c.ts, x1: c.ts, yref: "paper", y0: 0, y1: 1, line: {color: "#9467bd", dash: "dot"}}));
    const notes = d.changes.map(c => ({x: c.ts, yref: "paper", y: 1, text: esc(c.kind), showarrow: false, font: {size: 10, color: "#9467bd"}}));
    draw("chart-svc", traces, "Request rate with changes", {shapes: shapes, annotations: notes});
    fillTable("routes", d.routes, r => [esc(r.route), String(r.requests), pct(r.error_rate), num(r.p95_ms)]);
    fillTable("deps", d.dependencies, r => [esc(r.caller), esc(r.callee), String(r.calls), pct(r.error_rate), num(r.p95_ms)]);
    fillTable("templates", d.top_templates, r => ['<a href="/logs?' + qs({service: svc, template_id: r.template_id}) + '">' + esc(r.template_id) + "</a>", String(r.lines), esc(r.levels.join(" ")), esc(r.example)]);
    fillTable("tevents", d.template_events, r => [esc(r.ts), esc(r.kind), esc(r.template), num(r.value), num(r.baseline)]);
    drawGraph(d.dependencies);
  },
  async logs() {
    const f = new FormData(document.getElementById("logform"));
    const params = Object.assign(range(), Object.fromEntries(f.entries()), {limit: logLimit});
    const res = await api("/api/logs", params);
    const thead = document.querySelector("#logrows thead");
    if (params.group === "template") {
      thead.innerHTML = "<tr><th>service</th><th>template</th><th>lines</th><th>levels</th><th>example</th></tr>";
      fillTable("logrows", res.items, r => [esc(r.service), '<a href="/logs?' + qs({service: r.service, template_id: r.template_id}) + '">' + esc(r.template_id) + "</a>", String(r.lines), esc(r.levels.join(" ")), esc(r.example)]);
      draw("chart-logs", [{type: "bar", x: res.items.slice(0, 20).map(r => r.template_id), y: res.items.slice(0, 20).map(r => r.lines)}], "Lines per template", {xaxis: {type: "category"}});
    } else {
      thead.innerHTML = "<tr><th>time</th><th>service</th><th>level</th><th>route</th><th>status</th><th>template</th><th>message</th></tr>";
      fillTable("logrows", res.items, r => [esc(r.ts), esc(r.service), esc(r.level), esc(r.http_route), String(r.http_status || ""), esc(r.template_id), esc(r.message)]);
      const per = {};
      for (const r of res.items) { const k = r.ts.slice(0, 16); per[k] = (per[k] || 0) + 1; }
      const ks = Object.keys(per).sort();
      draw("chart-logs", ks.length ? [{type: "bar", x: ks, y: ks.map(k => per[k]), name: "lines"}] : [], "Matching lines per minute (this page)");
    }
    document.getElementById("more").style.display = res.next_offset === null ? "none" : "";
  },
  async security() {
    const d = await api("/api/security", range());
    const lab = (r, k) => (r.labels || {})[k] || "";
    fillTable("sec-alerts", d.alerts, r => [esc(r.state), esc(r.severity), esc(r.rule), esc(lab(r, "ip")), esc(lab(r, "user")), esc(r.summary), esc(r.starts_at)]);
    fillTable("sec-by-address", d.failures_by_address, r => [esc(r.ip), String(r.failures), String(r.users), esc((r.sample_users || []).join(", ")), esc(r.last)]);
    fillTable("sec-by-user", d.failures_by_user, r => [esc(r.user), String(r.failures), String(r.addresses), esc((r.sample_addresses || []).join(", ")), esc(r.last)]);
    fillTable("sec-new-addresses", d.new_addresses, r => [esc(r.user), esc(r.ip), esc(r.first_seen), String(r.logins)]);
    fillTable("sec-privilege", d.privilege_changes, r => [esc(r.ts), esc(r.service), esc(r.user), esc(r.ip), esc(r.action), esc(r.outcome), esc(r.message)]);
    const top = d.failures_by_address.slice(0, 15);
    draw("chart-sec-failures", top.length ? [{type: "bar", x: top.map(r => r.ip), y: top.map(r => r.failures), name: "failures"}] : [], "Failed logins by address (top 15)", {xaxis: {type: "category"}});
  },
  async alerts() {
    const [al, oc, no, si] = await Promise.all([api("/api/alerts", {limit: 200}), api("/api/oncall"),
      api("/api/notifications", Object.assign({limit: 100}, {range: "24h"})), api("/api/silences", {limit: 100})]);
    // The worker serves these from the alerting stage's live state ({alerts}, {schedules},
    // {silences}); `logwarden api` from ClickHouse ({items}). Both shapes are read here.
    const open = (al.items || al.alerts).filter(a => a.state === "firing" || a.state === "acknowledged");
    const label = (r, k) => r[k] || (r.labels || {})[k] || "";
    const when = v => typeof v === "number" ? new Date(v * 1000).toISOString().slice(0, 19).replace("T", " ") : v;
    fillTable("alerts", open, r => [esc(r.state), esc(label(r, "severity")), esc(label(r, "service")), esc(r.rule), esc(r.summary), esc(when(r.starts_at)), esc(r.acked_by),
      (r.state === "firing" ? '<button class="act" data-act="ack" data-fp="' + esc(r.fingerprint) + '">ack</button>' : "") +
      '<button class="act" data-act="resolve" data-fp="' + esc(r.fingerprint) + '">resolve</button>' +
      '<button class="verdict" data-verdict="useful" data-fp="' + esc(r.fingerprint) + '">useful</button>' +
      '<button class="verdict" data-verdict="false_alarm" data-fp="' + esc(r.fingerprint) + '">false alarm</button>']);
    const oncall = oc.items || Object.entries(oc.schedules || {}).map(([k, v]) => ({schedule: k, on_call: v}));
    fillTable("oncall", oncall, r => [esc(r.schedule), esc(r.on_call.join(", "))]);
    fillTable("notifications", no.items, r => [esc(r.ts), esc(r.kind), esc(r.receiver), esc(r.channel), esc(r.status), String(r.attempt), esc(r.error)]);
    const sil = si.items || (si.silences || []).filter(x => x.active);
    fillTable("silences", sil, r => [esc(JSON.stringify(r.matchers)), esc(when(r.ends_at)), esc(r.created_by), esc(r.comment)]);
  },
  async intelligence() {
    const d = await api("/api/intelligence", {range: rangeSel.value === "1h" ? "7d" : rangeSel.value});
    const acc = Object.entries(groupBy(d.categorisation, "service")).map(([s, rs]) => ({x: rs.map(r => r.period_start), y: rs.map(r => r.category_accuracy), name: s, mode: "lines+markers"}));
    draw("chart-accuracy", acc, "Categorisation accuracy");
    const fb = Object.entries(groupBy(d.feedback_volume, "verdict")).map(([v, rs]) => ({type: "bar", x: rs.map(r => r.hour), y: rs.map(r => r.n), name: v}));
    draw("chart-feedback", fb, "Feedback volume per hour", {barmode: "stack"});
    const quality = Object.entries(groupBy(d.detectors_by_day.map(r => ({...r, key: `${r.detector} ${r.variant}`})), "key")).flatMap(([k, rs]) =>
      [["precision", "solid"], ["recall", "dot"], ["false_alert_rate", "dash"]].map(([f, dash]) => ({x: rs.map(r => r.day), y: rs.map(r => r[f]), name: `${k} ${f.replaceAll("_", " ")}`, mode: "lines+markers", line: {dash}})));
    draw("chart-detectors", quality, "Detector precision, recall and false-alert rate per day", {yaxis: {tickformat: ".0%", range: [0, 1.05]}});
    fillTable("detectors", d.detectors, r => [esc(r.detector), esc(r.variant), String(r.true_alerts), String(r.false_alerts), pct(r.precision), pct(r.recall), pct(r.false_alert_rate), (r.threshold_offset >= 0 ? "+" : "") + Number(r.threshold_offset || 0).toFixed(2)]);
  },
  async pipeline() {
    const d = await api("/api/pipeline", range());
    draw("chart-throughput", d.throughput.length ? [{x: d.throughput.map(r => r.minute), y: d.throughput.map(r => r.lines), type: "bar", name: "lines"}] : [], "Lines stored per minute");
    draw("chart-latency", d.throughput.length ? [{x: d.throughput.map(r => r.minute), y: d.throughput.map(r => r.sink_latency_ms), name: "ms"}] : [], "Sink latency (event → stored, ms)");
    draw("chart-dead", Object.entries(groupBy(d.dead_letters, "stage")).map(([s, rs]) => ({type: "bar", x: rs.map(r => r.minute), y: rs.map(r => r.n), name: s})), "Dead letters per minute");
    const lag = (d.health && d.health.consumer_lag) || {};
    fillTable("lag", Object.entries(lag), ([k, v]) => [esc(k), esc(v)]);
    const writers = (d.health && d.health.writers) || {};
    fillTable("writers", Object.entries(writers), ([k, v]) => [esc(k), esc(JSON.stringify(v))]);
  },
};
let logLimit = 100;
function drawGraph(edges) {
  const names = [...new Set(edges.flatMap(e => [e.caller, e.callee]))];
  const pos = {};
  names.forEach((n, i) => { const a = 2 * Math.PI * i / names.length; pos[n] = [Math.cos(a), Math.sin(a)]; });
  const traces = edges.map(e => ({x: [pos[e.caller][0], pos[e.callee][0]], y: [pos[e.caller][1], pos[e.callee][1]], mode: "lines",
    line: {width: 1 + Math.min(6, Math.log10(1 + e.calls)), color: e.error_rate > 0.05 ? "#cf222e" : "#8a93a3"}, hoverinfo: "text",
    text: e.caller + " → " + e.callee + ": " + e.calls + " calls, " + pct(e.error_rate) + " errors, p95 " + num(e.p95_ms) + " ms", showlegend: false}));
  if (names.length) traces.push({x: names.map(n => pos[n][0]), y: names.map(n => pos[n][1]), mode: "markers+text", text: names, textposition: "top center",
    marker: {size: 14, color: names.map(n => n === body.dataset.service ? "#1f77b4" : "#c9d1e0")}, hoverinfo: "text", showlegend: false});
  draw("chart-graph", traces, "Call graph (edge colour: error rate)", {xaxis: {visible: false}, yaxis: {visible: false}});
}
async function refresh() {
  const st = document.getElementById("status");
  try {
    await pages[PAGE]();
    window.lwUpdates += 1;
    document.getElementById("updated").textContent = new Date().toLocaleTimeString();
    st.textContent = "";
  } catch (e) { st.textContent = "⚠ " + e.message; }
}
document.addEventListener("click", async ev => {
  const v = ev.target.closest("button.verdict");
  if (v) {  // Useful / False alarm: recorded as feedback (POST /api/verdicts)
    const out = document.getElementById("action-status");
    const r = await fetch("/api/verdicts", {method: "POST", headers: Object.assign({"Content-Type": "application/json"}, authHeaders()),
      body: JSON.stringify({kind: "alert", target: v.dataset.fp, verdict: v.dataset.verdict, via: "page"})});
    const res = await r.json().catch(() => ({}));
    out.textContent = r.ok ? "verdict recorded: " + v.dataset.verdict.replace("_", " ") : "⚠ " + ((res.error && res.error.message) || r.statusText);
    return;
  }
  const b = ev.target.closest("button.act");
  if (!b) return;
  const out = document.getElementById("action-status");
  const r = await fetch("/api/alerts/" + encodeURIComponent(b.dataset.fp) + "/" + b.dataset.act,
    {method: "POST", headers: Object.assign({"Content-Type": "application/json"}, authHeaders()), body: "{}"});
  const res = await r.json().catch(() => ({}));
  out.textContent = r.ok ? b.dataset.act + " sent" : "⚠ " + ((res.error && res.error.message) || r.statusText);
  refresh();
});
const tok = document.getElementById("token");
if (tok) { tok.value = localStorage.getItem("lw_token") || ""; tok.addEventListener("change", () => localStorage.setItem("lw_token", tok.value.trim())); }
const form = document.getElementById("logform");
if (form) form.addEventListener("submit", ev => { ev.preventDefault(); logLimit = 100; refresh(); });
const more = document.getElementById("more");
if (more) more.addEventListener("click", () => { logLimit = Math.min(1000, logLimit + 100); refresh(); });
if (rangeSel) rangeSel.addEventListener("change", refresh);
refresh();
setInterval(refresh, REFRESH_MS);
