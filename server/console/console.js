// server/console/console.js - the console's behaviour: reads recd's admin
// port (/metrics and the read-only /api/ routes) and draws what it reads.
// Every text from recd goes into the page through textContent, never as
// markup. The admin token, when this port needs one, lives in this tab's
// sessionStorage and travels only in the Authorization header.
"use strict";

const TOKEN_KEY = "recd-admin-token";
const LIVE_MS = 5000;
const HISTORY = 24;
const SOURCES = {
  SOURCE_ANN: "ann", SOURCE_ITEM_CF: "item-CF", SOURCE_POPULARITY: "popularity", SOURCE_EASE: "EASE",
};
// Reasons that say what was asked rather than how recd served it: left out
// of the degraded rate, as deploy/prometheus's alert and the gateway leave them out.
const ASKED = new Set(["unknown_user", "short_catalog"]);

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "title") e.title = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function fmt(x, digits = 3) {
  return Number.isFinite(x) ? x.toFixed(digits) : "–";
}

// ---- the admin port ----

class Unauthorized extends Error {}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

async function get(path) {
  const headers = {}, sent = token();
  if (sent) headers.Authorization = "Bearer " + sent;
  const r = await fetch(path, { headers, cache: "no-store", credentials: "omit" });
  if (r.status === 401) {
    // An answer to a token since replaced says nothing about the new one.
    if (token() === sent) askToken(sent ? "that token was refused" : "");
    throw new Unauthorized("this port needs the admin token");
  }
  return r;
}

async function getJSON(path) {
  const r = await get(path);
  let body;
  try {
    body = await r.json();
  } catch (e) {
    throw new Error("HTTP " + r.status + ": not JSON");
  }
  if (!r.ok) throw new Error("HTTP " + r.status + ": " + (body.error || "error"));
  return body;
}

function askToken(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (why || $("token-form").hidden) $("token-error").textContent = why;
  $("token-form").hidden = false;
  $("token").focus();
}

function useToken(ev) {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  $("token-form").hidden = true;
  refreshAll();
}

// ---- live numbers from /metrics ----

let last = null;
const history = [];

// Prometheus text into [{name, labels, value}].
function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) continue;
    const labels = {};
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    let l;
    while ((l = re.exec(m[3] || "")) !== null) labels[l[1]] = l[2].replace(/\\(.)/g, "$1");
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

function snapshot(series) {
  const s = { t: performance.now(), calls: 0, errors: 0, recOK: 0, degraded: 0, buckets: new Map() };
  for (const x of series) {
    if (x.name === "recd_requests_total" && x.labels.method.startsWith("/rec.v1.")) {
      s.calls += x.value;
      if (x.labels.status !== "OK") s.errors += x.value;
      if (x.labels.method === "/rec.v1.Ranking/Recommend" && x.labels.status === "OK") s.recOK += x.value;
    } else if (x.name === "recd_degraded_total" && !ASKED.has(x.labels.reason)) {
      s.degraded += x.value;
    } else if (x.name === "recd_request_duration_seconds_bucket" &&
               x.labels.method === "/rec.v1.Ranking/Recommend") {
      s.buckets.set(x.labels.le === "+Inf" ? Infinity : Number(x.labels.le), x.value);
    }
  }
  return s;
}

// The 0.99 quantile of the calls between two snapshots, interpolated in
// its bucket as Prometheus's histogram_quantile does.
function p99(a, b) {
  const les = [...b.buckets.keys()].sort((x, y) => x - y);
  const d = les.map((le) => (b.buckets.get(le) || 0) - (a.buckets.get(le) || 0));
  const total = d[d.length - 1];
  if (!total) return NaN;
  const rank = 0.99 * total;
  for (let i = 0; i < les.length; i++) {
    if (d[i] < rank) continue;
    if (les[i] === Infinity) return les[i - 1];
    const lo = i ? les[i - 1] : 0, below = i ? d[i - 1] : 0;
    return lo + (les[i] - lo) * ((rank - below) / Math.max(d[i] - below, 1e-12));
  }
  return NaN;
}

async function refreshLive() {
  let text;
  try {
    text = await (await get("/metrics")).text();
  } catch (e) {
    if (!(e instanceof Unauthorized)) $("live-note").textContent = "cannot read /metrics: " + e.message;
    return;
  }
  const now = snapshot(parseMetrics(text));
  if (last) {
    const dt = (now.t - last.t) / 1000, calls = now.calls - last.calls, ok = now.recOK - last.recOK;
    const rate = calls / dt;
    $("live-rate").textContent = fmt(rate, 1);
    const q = p99(last, now);
    $("live-p99").textContent = Number.isFinite(q) ? fmt(q * 1000, 2) + " ms" : "no calls";
    $("live-degraded").textContent = ok > 0 ? fmt((100 * (now.degraded - last.degraded)) / ok, 1) + " %" : "no calls";
    $("live-errors").textContent = calls > 0 ? fmt((100 * (now.errors - last.errors)) / calls, 1) + " %" : "no calls";
    history.push(rate);
    if (history.length > HISTORY) history.shift();
    drawHistory();
    $("live-note").textContent = "over the last " + fmt(dt, 1) + " s; " + now.calls + " calls since start";
  } else {
    $("live-note").textContent = "first sample taken; rates follow in " + LIVE_MS / 1000 + " s";
  }
  last = now;
}

function drawHistory() {
  const box = $("live-history");
  const top = Math.max(...history, 1e-9);
  box.replaceChildren(...history.map((r) => {
    const b = el("span", { class: "spark-bar", title: fmt(r, 1) + " requests/s" });
    b.style.height = Math.max(2, (100 * r) / top) + "%";
    return b;
  }));
}

// ---- bundle and settings ----

async function refreshBundle() {
  const b = await getJSON("/api/bundle");
  $("head-bundle").textContent = "bundle " + (b.bundle_version || "(none)") + " · role " + b.role;
  $("head-serving").textContent = b.serving ? "serving" : "not serving";
  $("head-serving").className = "badge " + (b.serving ? "ok" : "bad");
  const rows = [
    ["bundle version", b.bundle_version], ["bundle path", b.bundle_path],
    ["items", b.items + (b.items_added_live ? " (" + b.items_added_live + " added live)" : "")],
    ["users", b.users], ["embedding dim", b.dim], ["index", b.index_type],
    ["item tower", b.item_tower ? "yes" : "no"], ["EASE weights", b.ease ? "yes" : "no"],
    ["catalog generation", b.catalog_generation], ["recd", b.recd_version + ", role " + b.role],
    ["max_k", b.max_k], ["ranking settings", b.ranking_config],
    ["experiments file", b.experiments || "(none)"], ["uptime", b.uptime_seconds + " s"],
  ];
  const info = el("table", { class: "kv" }, ...rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));
  const settings = el("table", { class: "kv settings", id: "settings" },
    ...b.settings.map((s) => el("tr", {}, el("th", {}, s.key), el("td", {}, s.value))));
  $("bundle-result").replaceChildren(info,
    el("details", {}, el("summary", {}, "ranking settings in force (" + b.settings.length + ")"), settings));
  for (const k of ["user-k", "item-k"]) $(k).max = b.max_k;
}

// ---- experiments ----

function ratio(a, n) {
  return n > 0 ? a / n : NaN;
}

// Difference of two proportions with its 95% interval (normal approximation).
function diff(a, n, a0, n0) {
  const p = ratio(a, n), p0 = ratio(a0, n0);
  if (!(n > 0 && n0 > 0)) return "–";
  const se = Math.sqrt((p * (1 - p)) / n + (p0 * (1 - p0)) / n0);
  const d = p - p0;
  return (d >= 0 ? "+" : "") + fmt(100 * d, 2) + " pp [" + fmt(100 * (d - 1.96 * se), 2) + ", " +
         fmt(100 * (d + 1.96 * se), 2) + "]";
}

async function refreshExperiments() {
  const e = await getJSON("/api/experiments");
  const box = $("experiments-result");
  if (!e.layers.length) {
    box.replaceChildren(el("p", { class: "muted" }, e.file ? "no layers in " + e.file : "this recd runs without --experiments"));
    return;
  }
  const parts = [];
  for (const l of e.layers) {
    const control = l.arms.find((a) => a.control) || l.arms[0];
    const head = el("tr", {}, ...["arm", "share", "", "slates", "CTR", "Δ CTR vs control [95%]",
      "conversion", "Δ conversion [95%]", "revenue / slate", "settings"].map((h) => el("th", {}, h)));
    const rows = l.arms.map((a) => el("tr", { "data-arm": a.arm },
      el("td", {}, a.arm), el("td", {}, fmt(a.share_bp / 100, 2) + " %"),
      el("td", {}, [a.control ? "control" : "", a.holdout ? "holdout" : "", a.bundle ? "bundle " + a.bundle : ""]
        .filter(Boolean).join(", ")),
      el("td", {}, a.slates),
      el("td", {}, fmt(100 * ratio(a.clicked_slates, a.slates), 2) + " %"),
      el("td", {}, a === control ? "" : diff(a.clicked_slates, a.slates, control.clicked_slates, control.slates)),
      el("td", {}, fmt(100 * ratio(a.purchased_slates, a.slates), 2) + " %"),
      el("td", {}, a === control ? "" : diff(a.purchased_slates, a.slates, control.purchased_slates, control.slates)),
      el("td", {}, fmt(ratio(a.revenue, a.slates), 2)),
      el("td", { class: "small" }, a.settings.join("; "))));
    parts.push(el("h3", {}, l.experiment + " ", el("span", { class: "muted small" },
      "unit " + l.unit + ", salt " + l.salt + (l.stopped ? ", STOPPED" : ""))),
    el("table", { class: "grid" }, head, ...rows));
  }
  if (e.changes.length)
    parts.push(el("p", { class: "small muted" }, "runtime changes in force: " +
      e.changes.map((c) => c.experiment + " " + c.action + (c.arm ? " " + c.arm : "") + " by " + c.who).join("; ")));
  box.replaceChildren(...parts);
}

// ---- user look-up ----

// Each source's part of the blended score: recd blends weight x normalised
// score over the sources present, weights scaled to sum to 1, so an item's
// parts are in proportion to weight x normalised score.
function parts(item, weights) {
  const blended = item.explanation ? item.explanation.blended : item.score;
  const raw = item.sources.map((s) => ({ source: s.source, w: (weights[s.source] || 0) * s.normalized, s }));
  let sum = raw.reduce((a, x) => a + x.w, 0);
  if (!(sum > 0)) {
    raw.forEach((x) => (x.w = x.s.normalized || 1));
    sum = raw.reduce((a, x) => a + x.w, 0);
  }
  return raw.map((x) => ({ source: x.source, value: sum > 0 ? (blended * x.w) / sum : 0, s: x.s }));
}

function scoreBar(item, weights, scale) {
  const ex = item.explanation || { blended: item.score, final_score: item.score, adjustments: [] };
  const bar = el("div", { class: "bar" });
  const shrink = ex.final_score < ex.blended && ex.blended > 0 ? ex.final_score / ex.blended : 1;
  for (const p of parts(item, weights)) {
    const seg = el("span", {
      class: "seg src-" + p.source.toLowerCase(),
      title: (SOURCES[p.source] || p.source) + ": " + fmt(p.value, 4) + " of the blend (normalised " +
             fmt(p.s.normalized, 3) + ", raw " + fmt(p.s.raw, 3) + ")",
    });
    seg.style.width = (100 * p.value * shrink) / scale + "%";
    bar.append(seg);
  }
  const delta = ex.final_score - ex.blended;
  if (Math.abs(delta) > 1e-6) {
    const adj = ex.adjustments.map((a) => a.rule + " ×" + fmt(a.factor, 3) + (a.note ? " (" + a.note + ")" : "")).join(", ");
    const seg = el("span", { class: "seg " + (delta > 0 ? "rule-up" : "rule-down"),
                             title: "rules " + (delta > 0 ? "+" : "") + fmt(delta, 4) + ": " + (adj || "adjustments") });
    seg.style.width = (100 * Math.abs(delta)) / scale + "%";
    bar.append(seg);
  }
  return bar;
}

function legend(weights) {
  const keys = Object.keys(SOURCES).filter((k) => k in weights);
  return el("div", { class: "legend small" },
    ...keys.map((k) => el("span", {}, el("span", { class: "swatch src-" + k.toLowerCase() }), SOURCES[k] + " (weight " + fmt(weights[k], 2) + ")")),
    el("span", {}, el("span", { class: "swatch rule-up" }), "rules raise"),
    el("span", {}, el("span", { class: "swatch rule-down" }), "rules lower"));
}

function renderSlate(r) {
  const weights = r.blend_weights || {};
  const scale = Math.max(1e-9, ...r.items.map((i) => Math.max(i.score, i.explanation ? i.explanation.blended : 0)));
  const meta = el("p", { class: "meta" },
    "bundle " + r.bundle_version + " · " + r.strategy.replace("STRATEGY_", "").toLowerCase() +
    (r.arms.length ? " · arms " + r.arms.map((a) => a.experiment + "/" + a.arm).join(", ") : "") +
    (r.timings ? " · " + r.timings.total_us + " µs" : ""));
  const out = [meta];
  if (r.degraded_reasons.length)
    out.push(el("p", { class: "warn" }, "degraded: " + r.degraded_reasons.join(", ")));
  out.push(legend(weights));
  const list = el("ol", { id: "slate", class: "slate" }, ...r.items.map((it) => el("li", { "data-item": it.item_id },
    el("span", { class: "id" }, it.item_id),
    el("span", { class: "cat muted" }, it.category + " · " + fmt(it.price, 2)),
    scoreBar(it, weights, scale),
    el("span", { class: "score" }, fmt(it.score, 4)),
    el("span", { class: "adj small muted" },
      (it.explanation && it.explanation.adjustments.length)
        ? it.explanation.adjustments.map((a) => a.rule + " ×" + fmt(a.factor, 3)).join(", ") : ""))));
  out.push(list);
  if (!r.items.length) out.push(el("p", { class: "muted" }, "no items"));
  for (const v of r.verdicts)
    out.push(el("p", { class: "verdict", "data-verdict": v.item_id }, el("b", {}, "why not " + v.item_id + ": "),
      v.stage + " — " + v.reason));
  return out;
}

let userSeq = 0;

async function lookupUser(user, k, why) {
  const box = $("user-result");
  const seq = ++userSeq;
  box.dataset.state = "loading";
  box.replaceChildren(el("p", { class: "muted" }, "asking recd…"));
  const q = new URLSearchParams({ user, k: String(k) });
  if (why) q.append("why", why);
  try {
    const r = await getJSON("/api/recommend?" + q.toString());
    if (seq !== userSeq) return;
    box.replaceChildren(...renderSlate(r));
    box.dataset.state = "done";
  } catch (e) {
    if (seq !== userSeq) return;
    box.replaceChildren(el("p", { class: "error" }, e.message));
    box.dataset.state = "error";
  }
}

// ---- item look-up ----

async function lookupItem(item, k) {
  const box = $("item-result");
  box.dataset.state = "loading";
  box.replaceChildren(el("p", { class: "muted" }, "asking recd…"));
  const q = new URLSearchParams({ item, k: String(k) });
  try {
    const r = await getJSON("/api/similar?" + q.toString());
    box.replaceChildren(el("p", { class: "meta" }, "bundle " + r.bundle_version),
      el("ol", { id: "similar", class: "slate" }, ...r.items.map((it) => el("li", { "data-item": it.item_id },
        el("span", { class: "id" }, it.item_id),
        el("span", { class: "cat muted" }, it.category + " · " + fmt(it.price, 2)),
        el("span", { class: "small" }, it.sources.map((s) => SOURCES[s.source] || s.source).join(", ")),
        el("span", { class: "score" }, fmt(it.score, 4))))));
    box.dataset.state = "done";
  } catch (e) {
    box.replaceChildren(el("p", { class: "error" }, e.message));
    box.dataset.state = "error";
  }
}

// ---- the fragment: #user=U&k=10&why=X or #item=I&k=10 ----

function fromHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  const k = Number(h.get("k")) || 10;
  if (h.get("user")) {
    $("user-id").value = h.get("user");
    $("user-k").value = k;
    $("user-why").value = h.get("why") || "";
    lookupUser(h.get("user"), k, h.get("why") || "");
  }
  if (h.get("item")) {
    $("item-id").value = h.get("item");
    $("item-k").value = k;
    lookupItem(h.get("item"), k);
  }
}

function setHash(params) {
  const next = "#" + new URLSearchParams(params).toString();
  if (location.hash === next) fromHash();
  else location.hash = next;
}

function onUser(ev) {
  ev.preventDefault();
  const p = { user: $("user-id").value.trim(), k: $("user-k").value };
  if ($("user-why").value.trim()) p.why = $("user-why").value.trim();
  setHash(p);
}

function onItem(ev) {
  ev.preventDefault();
  setHash({ item: $("item-id").value.trim(), k: $("item-k").value });
}

function report(where) {
  return (e) => {
    if (!(e instanceof Unauthorized)) $(where).replaceChildren(el("p", { class: "error" }, e.message));
  };
}

function refreshAll() {
  refreshBundle().catch(report("bundle-result"));
  refreshExperiments().catch(report("experiments-result"));
  refreshLive();
  fromHash();
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", useToken);
  $("user-form").addEventListener("submit", onUser);
  $("item-form").addEventListener("submit", onItem);
  window.addEventListener("hashchange", fromHash);
  refreshAll();
  setInterval(refreshLive, LIVE_MS);
  setInterval(() => refreshExperiments().catch(report("experiments-result")), 6 * LIVE_MS);
});
