#!/usr/bin/python3
"""bench/report.py - bench/run.sh's helper and report generator.

bench/run.sh records every step as one JSON object a line (load runs, slate
checks, recd-ann-bench and recd-pipeline-bench output, the machine); this
turns them into the summary printed at the end, and into OUT/REPORT.md,
OUT/results.json (every number, raw records included) and SVG charts drawn
by hand (no plotting library): latency against offered load per bundle, and
recall@100 against CPU per search.

Usage:
  report.py render RECORDS.jsonl OUT_DIR
  report.py ann-plan MANIFEST        -> "KIND DEFAULT WIDEST EF,EF,..." for recd-ann-bench
  report.py ann-ef KIND DEFAULT WIDEST  -> the --ef that gives the default breadth
  report.py set-nprobe MANIFEST N    -> the manifest with index.nprobe = N, on stdout
  report.py manifest-summary MANIFEST -> the manifest's size and index fields, as JSON
  report.py relabel-users CSV        -> the interactions CSV with user ids U00000.., on stdout
"""
import json
import math
import os
import re
import statistics
import sys

IVF_BREADTHS = (1, 2, 4, 8, 16, 32, 64)
HNSW_EFS = (16, 32, 64, 128, 256, 512)
FULL_EF = 128  # recd-ann-bench: an IVF index's nprobe is scaled by ef / 128 below this


# ---- helpers run.sh calls while it runs ----

def index_kind(ix):
    t = ix.get("type", "")
    if t.startswith("IVF") or ix.get("nprobe"):
        return "ivf"
    if t.startswith("HNSW"):
        return "hnsw"
    return "flat"


def ann_plan(manifest):
    ix = manifest["index"]
    kind = index_kind(ix)
    if kind == "ivf":
        nlist, default = int(ix.get("nlist") or 0), int(ix["nprobe"])
        nlist = nlist or max(IVF_BREADTHS + (default,))
        breadths = sorted({p for p in IVF_BREADTHS + (default,) if 1 <= p <= nlist})
        widest = breadths[-1]
        efs = sorted({ann_ef("ivf", p, widest) for p in breadths})
        return kind, default, widest, efs
    if kind == "hnsw":
        default = int(ix.get("ef_search") or 0)
        return kind, default, 0, sorted(set(HNSW_EFS) | ({default} if default else set()))
    return kind, 0, 0, [FULL_EF]


def ann_ef(kind, breadth, widest):
    """The --ef recd-ann-bench needs for 'breadth' (ef itself, or an nprobe of an index opened at 'widest')."""
    if kind == "ivf":
        return min(FULL_EF, -(-FULL_EF * breadth // widest))
    if kind == "hnsw":
        return breadth
    return FULL_EF


def ann_breadth(kind, ef, widest):
    """The breadth recd-ann-bench searched at for 'ef' (ann.c: nprobe * ef / 128, at least 1, below 128)."""
    if kind == "ivf":
        return widest if ef >= FULL_EF else max(1, widest * ef // FULL_EF)
    return ef


def relabel_users(path):
    """An interactions CSV on stdout with user ids replaced by U00000.. in order of first appearance."""
    import csv
    ids = {}
    with open(path, newline="") as f:
        rows = csv.reader(f)
        out = csv.writer(sys.stdout, lineterminator="\n")
        head = next(rows)
        col = head.index("user_id")
        out.writerow(head)
        for row in rows:
            if row:
                row[col] = ids.setdefault(row[col], "U%05d" % len(ids))
                out.writerow(row)
    return 0


def manifest_summary(m):
    ix = m.get("index", {})
    keep = {k: ix[k] for k in ("type", "ef_search", "nlist", "nprobe", "tuned_recall_at_100", "layout") if k in ix}
    return {"version": m.get("version"), "items": m.get("item_count"), "users": m.get("user_count"),
            "dim": m.get("dim"), "index": keep, "signals": sorted(k for k in ("item_cf", "popularity", "profiles",
                                                                                "purchases", "repurchase") if k in m)}


# ---- reading the records ----

def per_call_cpu_us(r):
    """Server CPU per call over the whole loadgen run (every server process; warm-up and drain included)."""
    lg = r.get("loadgen")
    if not lg:
        return None
    calls = lg["calls"] + lg.get("outside_window", {}).get("calls", 0)
    return r["cpu_ticks"] / r["clk_tck"] * 1e6 / calls if calls else None


def others_cores(r):
    """CPU the rest of the machine used during a run (not the server, not recd-loadgen), in cores."""
    lg = r.get("loadgen")
    if not lg:
        return None
    calls = lg["calls"] + lg.get("outside_window", {}).get("calls", 0)
    wall = lg["seconds"] + float(knob(r, "WARMUP_S", 1))
    loadgen_ticks = lg.get("loadgen_cpu_us_per_call", 0) * calls / 1e6 * r["clk_tck"]
    other = r["machine_busy_ticks"] - r["cpu_ticks"] - loadgen_ticks
    return max(0.0, other / r["clk_tck"] / wall) if wall > 0 else None


def steal_cores(r):
    """CPU the hypervisor took from this machine during a run, in cores."""
    lg_ = r.get("loadgen")
    if not lg_ or "steal_ticks" not in r:
        return None
    wall = lg_["seconds"] + float(knob(r, "WARMUP_S", 1))
    return r["steal_ticks"] / r["clk_tck"] / wall if wall > 0 else None


KNOBS = {}


def knob(_r, name, default):
    return KNOBS.get(name, default)


def spread(values):
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v), "values": v}


def parse_ann(text, kind, widest):
    rows = []
    for line in text.splitlines():
        f = line.split()
        if len(f) == 5 and re.fullmatch(r"\d+", f[0]):
            ef = int(f[0])
            rows.append({"ef": ef, "breadth": ann_breadth(kind, ef, widest), "recall": float(f[1]),
                         "us": float(f[2]), "faiss_recall": float(f[3]), "faiss_us": float(f[4])})
    m = re.search(r"(\d+) user-tower queries", text)
    return rows, int(m.group(1)) if m else None


def summarize(records):
    machine = next((r for r in records if r["type"] == "machine"), {})
    end = next((r for r in records if r["type"] == "end"), {})
    KNOBS.update(machine.get("knobs", {}))
    order, bundles = [], {}

    def b(name):
        if name not in bundles:
            order.append(name)
            bundles[name] = {"name": name, "status": "incomplete", "loads": [], "ann": {}, "compare": None,
                             "pipeline": None}
        return bundles[name]

    for r in records:
        t = r["type"]
        if t == "load":
            r["server_cpu_us_per_call"] = per_call_cpu_us(r)
            r["others_cores"] = others_cores(r)
            r["steal_cores"] = steal_cores(r)
            b(r["bundle"])["loads"].append(r)
        elif t == "compare":
            b(r["bundle"])["compare"] = r
        elif t == "ann":
            rows, nq = parse_ann(r["output"], r["index"], r["widest"])
            b(r["bundle"])["ann"][r["k"]] = dict(r, rows=rows, queries=nq)
        elif t == "pipeline":
            b(r["bundle"])["pipeline"] = r
        elif t == "bundle":
            x = b(r["bundle"])
            x["status"] = r["status"]
            x.update({k: v for k, v in r.items() if k not in ("type", "bundle", "status")})
    for x in bundles.values():
        derive(x)
    return machine, end, [bundles[n] for n in order]


def busy_cores(o):
    """Cores the server and the generator kept busy together at an open-loop
    point (medians of CPU per call, times the offered rate): the generator
    runs on the same machine, so '80 % of saturation' can be most of it."""
    s, g = o.get("server_cpu_us"), o.get("gen_cpu_us")
    if not s or not g or not o.get("rate"):
        return None
    return (s["median"] + g["median"]) * o["rate"] / 1e6


def lg(r, *path):
    d = r.get("loadgen") or {}
    for p in path:
        d = d.get(p) if isinstance(d, dict) else None
    return d


def derive(x):
    loads = x["loads"]
    sat = {s: [r for r in loads if r["kind"] == "saturation" and r["server"] == s] for s in ("recd", "py")}
    x["sat"] = {s: {"calls_per_s": spread([lg(r, "calls_per_s") for r in rs]),
                    "cpu_us": spread([r["server_cpu_us_per_call"] for r in rs]),
                    "cpu_us_window": spread([lg(r, "server_cpu_us_per_call") for r in rs]),
                    "p99_us": spread([lg(r, "latency_us", "p99") for r in rs]),
                    "errors": sum(lg(r, "errors") or 0 for r in rs)} for s, rs in sat.items()}
    rc, pc = x["sat"]["recd"]["cpu_us"], x["sat"]["py"]["cpu_us"]
    rr, pr = x["sat"]["recd"]["calls_per_s"], x["sat"]["py"]["calls_per_s"]
    # Ratios of the medians, and their range over the interleaved pairs.
    x["cpu_ratio"] = pc["median"] / rc["median"] if rc and pc and rc["median"] else None
    x["rate_ratio"] = rr["median"] / pr["median"] if rr and pr and pr["median"] else None
    pairs = [(a["server_cpu_us_per_call"], b2["server_cpu_us_per_call"]) for a, b2 in zip(sat["recd"], sat["py"])]
    x["cpu_ratio_pairs"] = spread([p / r for r, p in pairs if r and p])
    x["others_cores"] = spread([r["others_cores"] for r in loads])
    x["steal_cores"] = spread([r["steal_cores"] for r in loads])
    opens = {}
    for r in loads:
        if r["kind"] == "open":
            opens.setdefault((r["server"], r["fraction"]), []).append(r)
    x["open"] = []
    for (s, f), rs in sorted(opens.items(), key=lambda kv: (kv[0][0] != "recd", kv[0][1])):
        x["open"].append({"server": s, "fraction": f, "rate": lg(rs[0], "rate"),
                          "reps": len(rs), "calls_per_s": spread([lg(r, "calls_per_s") for r in rs]),
                          **{q: spread([lg(r, "latency_us", q) for r in rs]) for q in ("p50", "p90", "p99", "p99.9", "max")},
                          "errors": sum(lg(r, "errors") or 0 for r in rs), "calls": sum(lg(r, "calls") or 0 for r in rs),
                          "server_cpu_us": spread([r["server_cpu_us_per_call"] for r in rs]),
                          # The generator shares the machine: how late its own sends were (in the
                          # latencies) and the CPU it took per call, next to the server's.
                          "lag_p99": spread([lg(r, "send_lag_us", "p99") for r in rs]),
                          "gen_cpu_us": spread([lg(r, "loadgen_cpu_us_per_call") for r in rs])})
    x["single"] = {s: next((r for r in loads if r["kind"] == "single" and r["server"] == s), None)
                   for s in ("recd", "py")}
    matched = [r for r in loads if r["kind"] == "matched"]
    x["matched_cpu_us"] = spread([r["server_cpu_us_per_call"] for r in matched])
    x["matched_calls_per_s"] = spread([lg(r, "calls_per_s") for r in matched])
    pipe = (x["pipeline"] or {}).get("result")
    x["inproc_us"] = pipe["cpu_us"]["mean"] if pipe else None
    x["tax"] = (1 - x["inproc_us"] / x["matched_cpu_us"]["median"]) if pipe and x["matched_cpu_us"] else None
    x["tax_mixed"] = (1 - x["inproc_us"] / rc["median"]) if pipe and rc else None
    floor = [r["server_cpu_us_per_call"] for r in loads if r["kind"] == "floor" and r.get("server_cpu_us_per_call")]
    x["floor_us"] = spread(floor)
    a = x["ann"].get(100)
    x["recall"] = None
    if a:
        d = default_breadth(x)
        row = next((r for r in a["rows"] if r["breadth"] == d), None) if a["index"] != "flat" else \
            (a["rows"][0] if a["rows"] else None)
        x["recall"] = row
    a2 = x["ann"].get(200)
    x["recall_depth"] = a2["rows"][0] if a2 and a2["rows"] else None


def default_breadth(x):
    a = x["ann"].get(100) or x["ann"].get(200)
    return a["default"] if a else None


# ---- formatting ----

def fmt(v, nd=0, unit=""):
    if v is None:
        return "-"
    if isinstance(v, dict):
        v = v["median"]
    if nd == 0:
        return "{:,.0f}{}".format(v, unit)
    return "{:,.{}f}{}".format(v, nd, unit)


def fspread(s, nd=0):
    """'median (min-max)', or the one value."""
    if not s:
        return "-"
    if s["n"] == 1 or s["min"] == s["max"]:
        return fmt(s["median"], nd)
    return "{} ({}–{})".format(fmt(s["median"], nd), fmt(s["min"], nd), fmt(s["max"], nd))


def frange(s, nd=2):
    return "-" if not s else "%s–%s" % (fmt(s["min"], nd), fmt(s["max"], nd))


def pct(v, nd=0):
    return "-" if v is None else "{:.{}f} %".format(100 * v, nd)


def breadth_label(kind, breadth, manifest=None):
    if kind == "ivf":
        nlist = ((manifest or {}).get("index") or {}).get("nlist")
        return "nprobe %d%s" % (breadth, "/%d" % nlist if nlist else "")
    if kind == "hnsw":
        return "efSearch %d" % breadth
    return "Flat, exact"


def recall_cell(x):
    r = x.get("recall")
    if not r:
        return "-"
    a = x["ann"][100]
    return "%.4f (%s)" % (r["recall"], breadth_label(a["index"], r["breadth"], x.get("manifest")))


def p80(x, server="recd", q="p99"):
    o = next((o for o in x["open"] if o["server"] == server and abs(o["fraction"] - 0.8) < 1e-9), None)
    return o[q] if o else None


def headline_rows(bundles):
    rows = []
    for x in bundles:
        if x["status"] != "ok":
            rows.append([x["name"], "**%s**" % x["status"].upper()] + ["-"] * 9)
            continue
        s = x["sat"]
        rows.append([x["name"], fmt(s["recd"]["calls_per_s"]), fmt(s["py"]["calls_per_s"]),
                     fmt(s["recd"]["cpu_us"]), fmt(s["py"]["cpu_us"]),
                     "-" if x["cpu_ratio"] is None else "%.1f×" % x["cpu_ratio"],
                     "-" if not p80(x) else "%.1f" % (p80(x)["median"] / 1e3), recall_cell(x), fmt(x["inproc_us"]),
                     pct(x["tax"])])
    return rows


HEADLINE = ["bundle", "recd calls/s", "py calls/s", "recd µs/call", "py µs/call", "CPU ratio (py/recd)",
            "recd p99 at 80 % (ms)", "recall@100 (breadth used)", "in-process µs", "serving tax"]


def details_text(x):
    """A bundle's numbers, for the terminal: every range is min-max over the repeated runs."""
    s, out = x["sat"], ["== %s" % x["name"]]
    busy = x.get("others_cores")
    if busy and busy["median"] > BUSY_CORES:
        out.append("  WARNING: other work used %s cores (median) while this bundle was measured" % fmt(busy, 2))
    for key, name in (("recd", "recd"), ("py", "Python")):
        out.append("  saturation %-6s %s calls/s, %s µs server CPU/call" % (
            name, fspread(s[key]["calls_per_s"]), fspread(s[key]["cpu_us"])))
    out.append("  Python/recd: CPU per call %s× (pairs %s), calls/s %s×" % (
        "-" if x["cpu_ratio"] is None else "%.1f" % x["cpu_ratio"], fspread(x["cpu_ratio_pairs"], 1),
        "-" if x["rate_ratio"] is None else "%.1f" % x["rate_ratio"]))
    keys = [float(f) for f in str(KNOBS.get("KEY_LOADS", "0.5 0.8")).split()]
    for o in x["open"]:
        if any(abs(o["fraction"] - f) < 1e-9 for f in keys):
            out.append("  open loop %-6s %3d%% (%s/s): p50 %s  p99 %s  p99.9 %s  max %s µs, %d errors" % (
                "recd" if o["server"] == "recd" else "Python", round(100 * o["fraction"]), fmt(o["rate"]),
                fspread(o["p50"]), fspread(o["p99"]), fspread(o["p99.9"]), fspread(o["max"]), o["errors"]))
            out.append("    CPU µs/call: server %s, generator %s (together %s cores busy); the generator's own "
                       "send lag p99 %s µs" % (fspread(o["server_cpu_us"]), fspread(o["gen_cpu_us"]),
                                               fmt(busy_cores(o), 2), fspread(o["lag_p99"])))
    for key, name in (("recd", "recd"), ("py", "Python")):
        r = x["single"].get(key)
        if r and r.get("loadgen"):
            out.append("  one at a time %-6s p50 %s  p99 %s µs, %s µs server CPU/call" % (
                name, fmt(lg(r, "latency_us", "p50")), fmt(lg(r, "latency_us", "p99")),
                fmt(r["server_cpu_us_per_call"])))
    if x.get("recall"):
        d = x.get("recall_depth")
        out.append("  ANN recall@100 %s%s" % (recall_cell(x), "; recall@200 (candidate depth) %.4f" % d["recall"]
                                              if d else ""))
    p = (x.get("pipeline") or {}).get("result")
    if p:
        out.append("  in process %.1f µs/call; serving tax %s (matched load %s µs)" % (
            p["cpu_us"]["mean"], pct(x["tax"], 1), fspread(x["matched_cpu_us"])))
        out.append("  stages (µs): " + ", ".join("%s %.1f" % (n.strip("*"), v) for n, v in stage_rows(p)))
    return out


def md_table(head, rows, align=None):
    align = align or ["l"] + ["r"] * (len(head) - 1)
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(":--" if a == "l" else "--:" for a in align) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def text_table(head, rows):
    w = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    line = lambda r: "  ".join(str(c).ljust(w[i]) if i == 0 else str(c).rjust(w[i]) for i, c in enumerate(r))
    return "\n".join([line(head)] + [line(r) for r in rows])


# ---- SVG ----

COLORS = {"recd": "#1f6fb4", "py": "#e07b00"}
PALETTE = ["#1f6fb4", "#e07b00", "#2a9d3a", "#c0392b", "#7d3c98", "#8c564b"]


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Plot:
    """A log or linear x/y plot drawn as SVG text."""

    def __init__(self, title, xlabel, ylabel, xr, yr, xlog=False, ylog=False, w=640, h=400):
        self.w, self.h, self.l, self.r, self.t, self.b = w, h, 72, 170, 36, 52
        self.xr, self.yr, self.xlog, self.ylog = xr, yr, xlog, ylog
        self.parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
                      'font-family="sans-serif" font-size="12">' % (w, h, w, h),
                      '<rect width="100%" height="100%" fill="white"/>',
                      '<text x="%d" y="20" font-size="14" font-weight="bold">%s</text>' % (self.l, esc(title)),
                      '<text x="%d" y="%d" text-anchor="middle">%s</text>' % (
                          self.l + self.pw() / 2, h - 12, esc(xlabel)),
                      '<text transform="translate(16,%d) rotate(-90)" text-anchor="middle">%s</text>' % (
                          self.t + self.ph() / 2, esc(ylabel))]
        self.legend_y = self.t + 8
        self.axes()

    def pw(self):
        return self.w - self.l - self.r

    def ph(self):
        return self.h - self.t - self.b

    def X(self, v):
        a, b = self.xr
        if self.xlog:
            v, a, b = math.log10(max(v, 1e-12)), math.log10(a), math.log10(b)
        return self.l + (v - a) / (b - a) * self.pw()

    def Y(self, v):
        a, b = self.yr
        if self.ylog:
            v, a, b = math.log10(max(v, 1e-12)), math.log10(a), math.log10(b)
        return self.t + self.ph() - (v - a) / (b - a) * self.ph()

    def ticks(self, rng, log):
        a, b = rng
        if log:
            out = []
            for e in range(math.floor(math.log10(a)), math.ceil(math.log10(b)) + 1):
                for m in (1, 2, 5):
                    v = m * 10 ** e
                    if a <= v <= b:
                        out.append(v)
            return out
        step = nice_step((b - a) / 6)
        v, out = math.ceil(a / step) * step, []
        while v <= b + 1e-9:
            out.append(round(v, 10))
            v += step
        return out

    def axes(self):
        p = self.parts
        p.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>' % (
            self.l, self.t, self.pw(), self.ph()))
        for v in self.ticks(self.xr, self.xlog):
            x = self.X(v)
            p.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>' % (x, self.t, x, self.t + self.ph()))
            p.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (x, self.t + self.ph() + 16, num(v)))
        for v in self.ticks(self.yr, self.ylog):
            y = self.Y(v)
            p.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>' % (self.l, y, self.l + self.pw(), y))
            p.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>' % (self.l - 6, y + 4, num(v)))

    def series(self, pts, color, label, dash=None, marker=True, labels=None, big=None):
        pts = [(x, y) for x, y in pts if x is not None and y is not None]
        if not pts:
            return
        d = " ".join("%.1f,%.1f" % (self.X(x), self.Y(y)) for x, y in pts)
        self.parts.append('<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>' % (
            d, color, ' stroke-dasharray="%s"' % dash if dash else ""))
        for i, (x, y) in enumerate(pts):
            if marker:
                r = 5.5 if big is not None and i == big else 3
                self.parts.append('<circle cx="%.1f" cy="%.1f" r="%.1f" fill="%s"%s/>' % (
                    self.X(x), self.Y(y), r, color, ' stroke="black"' if r > 3 else ""))
            if labels and labels[i]:
                self.parts.append('<text x="%.1f" y="%.1f" font-size="10" fill="%s">%s</text>' % (
                    self.X(x) + 5, self.Y(y) - 5, color, esc(labels[i])))
        ly = self.legend_y
        lx = self.l + self.pw() + 12
        self.parts.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>' % (
            lx, ly, lx + 22, ly, color, ' stroke-dasharray="%s"' % dash if dash else ""))
        self.parts.append('<text x="%d" y="%d">%s</text>' % (lx + 28, ly + 4, esc(label)))
        self.legend_y += 18

    def note(self, text, width=28):
        words, line = text.split(), ""
        for w in words + [None]:
            if w is not None and len(line) + len(w) + 1 <= width:
                line = (line + " " + w).strip()
                continue
            self.parts.append('<text x="%d" y="%d" font-size="10" fill="#555">%s</text>' % (
                self.l + self.pw() + 12, self.legend_y + 6, esc(line)))
            self.legend_y += 13
            line = w or ""
        self.legend_y += 4

    def svg(self):
        return "\n".join(self.parts + ["</svg>"]) + "\n"


def nice_step(raw):
    e = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * e:
            return m * e
    return 10 * e


def nice_below(v):
    """The largest 1, 2 or 5 times a power of ten at most v (v > 0)."""
    e = 10 ** math.floor(math.log10(v))
    return max(m * e for m in (1, 2, 5) if m * e <= v)


def nice_above(v):
    e = 10 ** math.floor(math.log10(v))
    return min(m * e for m in (1, 2, 5, 10) if m * e >= v)


def num(v):
    if v >= 1e6:
        return "%gM" % (v / 1e6)
    if v >= 1e3:
        return "%gk" % (v / 1e3)
    return "%g" % v


def latency_svg(x):
    pts = {}
    for o in x["open"]:
        pts.setdefault(o["server"], []).append(o)
    ys = [o[q]["median"] for os_ in pts.values() for o in os_ for q in ("p50", "p99") if o[q]]
    if not ys:
        return None
    lo, hi = nice_below(max(1, min(ys))), nice_above(max(ys))
    p = Plot("%s: latency against offered load (open loop, Poisson)" % x["name"],
             "offered load, % of the server's own saturation rate", "latency, µs (log)", (0, 100), (lo, hi),
             ylog=True)
    for s, label in (("recd", "recd"), ("py", "Python")):
        os_ = sorted(pts.get(s, []), key=lambda o: o["fraction"])
        if not os_:
            continue
        sat = x["sat"][s]["calls_per_s"]
        p.series([(100 * o["fraction"], o["p50"]["median"] if o["p50"] else None) for o in os_], COLORS[s],
                 "%s p50" % label)
        p.series([(100 * o["fraction"], o["p99"]["median"] if o["p99"] else None) for o in os_], COLORS[s],
                 "%s p99" % label, dash="6,4")
        if sat:
            p.note("%s saturation: %s/s" % (label, fmt(sat)))
    return p.svg()


def recall_svg(bundles):
    ser = []
    for i, x in enumerate(bundles):
        a = x["ann"].get(100)
        if not a or not a["rows"]:
            continue
        rows = sorted({r["breadth"]: r for r in a["rows"]}.values(), key=lambda r: r["breadth"])
        ser.append((x, a, rows, PALETTE[i % len(PALETTE)]))
    if not ser:
        return None
    us = [r["us"] for _, _, rows, _ in ser for r in rows]
    rec = [r["recall"] for _, _, rows, _ in ser for r in rows]
    lo_y = min(0.9, math.floor(min(rec) * 20) / 20)
    p = Plot("recall@100 against CPU per search (recd's ANN stage)", "CPU µs per search (log)",
             "recall@100 vs exact search", (nice_below(min(us)), nice_above(max(us))),
             (lo_y, 1.005), xlog=True)
    for x, a, rows, color in ser:
        short = {"ivf": "np", "hnsw": "ef", "flat": ""}[a["index"]]
        big = next((i for i, r in enumerate(rows) if r["breadth"] == a["default"]), 0 if a["index"] == "flat" else None)
        # Points at recall 1 crowd the top edge: only the breadth used and those below 1 are named.
        labels = [("%s%d" % (short, r["breadth"]) if short else "Flat") if i == big or r["recall"] < 0.9995 else ""
                  for i, r in enumerate(rows)]
        p.series([(r["us"], r["recall"]) for r in rows], color, x["name"], labels=labels, big=big)
    p.note("ringed: the bundle's own breadth")
    return p.svg()


# ---- the report ----

def commands(records):
    """Every distinct command line, ports, pids and rates made generic."""
    seen, out = set(), []
    for r in records:
        c = r.get("cmd")
        if not c:
            continue
        c = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", c)
        c = re.sub(r"--server-pid \d+", "--server-pid PID", c)
        c = re.sub(r"--rate [\d.]+", "--rate R", c)
        c = re.sub(r"--max-calls \d+", "--max-calls N", c)
        c = re.sub(r"--categories ('[^']*'|\S+)", "--categories CATS", c)
        c = re.sub(r"/tmp/recd-bench\.\w+/", "$TMP/", c)
        c = re.sub(r"--bundle (\S*?)(synth-\d+|movielens|superstore)\S*", r"--bundle \1\2", c)
        key = re.sub(r"(synth-\d+|movielens|superstore)", "BUNDLE", c)
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


def render(records_path, out_dir):
    with open(records_path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    machine, end, bundles = summarize(records)
    os.makedirs(out_dir, exist_ok=True)
    for old in os.listdir(out_dir):
        if old.endswith(".svg"):
            os.remove(os.path.join(out_dir, old))
    charts = {}
    for x in bundles:
        s = latency_svg(x) if x["status"] == "ok" else None
        if s:
            charts[x["name"]] = "latency-%s.svg" % x["name"]
            with open(os.path.join(out_dir, charts[x["name"]]), "w") as f:
                f.write(s)
    rs = recall_svg([x for x in bundles if x["status"] == "ok"])
    if rs:
        with open(os.path.join(out_dir, "recall-cost.svg"), "w") as f:
            f.write(rs)

    head_rows = headline_rows(bundles)
    md = report_md(machine, end, bundles, head_rows, charts, bool(rs), records)
    with open(os.path.join(out_dir, "REPORT.md"), "w") as f:
        f.write(md)
    # The derived numbers indented; the raw records (every run, as bench/run.sh recorded it) one a line.
    doc = json.dumps({"machine": machine, "end": end, "headline": {"columns": HEADLINE, "rows": head_rows},
                      "bundles": [{k: v for k, v in x.items() if k not in ("loads", "single")} for x in bundles],
                      "records": []}, indent=1, ensure_ascii=False, default=str)
    raw = ",\n  ".join(json.dumps(r, ensure_ascii=False, default=str) for r in records)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        f.write(doc[:doc.rindex('"records": []')] + '"records": [\n  ' + raw + "\n ]\n}\n")
    print("\n== headline (medians of %s interleaved runs; µs are server CPU per call)" % KNOBS.get("REPS", "?"))
    print(text_table(HEADLINE, head_rows))
    for x in bundles:
        print()
        if x["status"] != "ok":
            print("%s: %s" % (x["name"], x["status"].upper()) + (" (%s)" % x.get("why") if x.get("why") else ""))
        else:
            print("\n".join(details_text(x)))
    return 0 if all(x["status"] == "ok" for x in bundles) and bundles else 1


def report_md(machine, end, bundles, head_rows, charts, have_recall, records):
    k = machine.get("knobs", {})
    L = []
    ok = all(x["status"] == "ok" for x in bundles)
    L.append("# recd benchmark report\n")
    L.append("Generated by `bench/run.sh` (the script and `bench/report.py`; rerun it to replace this file). "
             "Run %s, %s in all%s.\n" % (machine.get("date", "?"), dur(end.get("seconds")),
                                       "" if ok else "; **some bundles FAILED, see below**"))
    L.append("## Headline\n")
    L.append("Server CPU per call and calls/s at saturation are medians of %s interleaved runs each "
             "(closed loop, %s calls in flight over %s connections); p99 is open-loop at 80 %% of recd's "
             "median saturation rate; recall@100 is the ANN stage's, against exact search, at the bundle's "
             "own breadth; the serving tax is 1 − in-process CPU per call / server CPU per call for the "
             "same requests.\n" % (k.get("REPS"), k.get("CONCURRENCY"), k.get("CHANNELS")))
    L.append(md_table(HEADLINE, head_rows))
    L.append("")
    L.append("## Machine\n")
    mem = machine.get("mem_kib")
    L.append(md_table(["", ""], [
        ["CPU", "%s, %s cores (`nproc`)" % (machine.get("cpu"), machine.get("cores"))],
        ["memory", "%.1f GiB" % (mem / 2 ** 20) if mem else "-"],
        ["OS, kernel", "%s, %s" % (machine.get("os"), machine.get("kernel"))],
        ["date (UTC)", machine.get("date")],
        ["commit", "%s (%s modified tracked files in the working tree at the time)" % (
            machine.get("commit"), machine.get("dirty_files"))],
        ["build tree", "`%s` (recd built %s); at the start: %s" % (
            machine.get("build"), machine.get("recd_mtime"), end.get("build_start", "?"))],
        ["Python side", machine.get("python")],
        ["load average", "%s at the start, %s at the end (1/5/15 min)" % (
            machine.get("loadavg_start"), end.get("loadavg_end"))],
    ], ["l", "l"]))
    changed = [x["name"] for x in bundles if x.get("build") and x["build"] != end.get("build_start")]
    if changed or (end.get("build_end") and end.get("build_end") != end.get("build_start")):
        L.append("")
        L.append("**The build tree or the Python server changed during the run** (it is shared with other work): "
                 "at the start `%s`, at the end `%s`; bundles measured on a changed build: %s." % (
                     end.get("build_start"), end.get("build_end"), ", ".join(changed) or "none"))
    oc = spread([r.get("others_cores") for x in bundles for r in x["loads"]])
    sc = spread([r.get("steal_cores") for x in bundles for r in x["loads"]])
    L.append("")
    L.append("The machine is a shared virtual machine. While load ran, the rest of it (everything but the "
             "server measured and recd-loadgen) used %s of its %s cores, median over the runs (range %s), and "
             "the hypervisor stole %s cores (range %s): numbers from a busy moment are lower than the machine "
             "can do, and open-loop tails are the most sensitive to it. recd-loadgen itself takes up to one "
             "core, so the server under test has about one core to itself at saturation." % (
                 fmt(oc, 2), machine.get("cores"), frange(oc), fmt(sc, 2), frange(sc)))
    flagged = [x["name"] for x in bundles if x.get("others_cores") and x["others_cores"]["median"] > BUSY_CORES]
    if flagged:
        L.append("**Bundles measured while other work took more than %g of a core** (median over their runs): "
                 "%s. Rerun them on a quiet machine (`SIZES=... BUNDLES=... bench/run.sh`) before quoting them."
                 % (BUSY_CORES, ", ".join(flagged)))
    L.append("")
    L.append(method_md(k))
    for x in bundles:
        L.append(bundle_md(x, charts.get(x["name"])))
    if have_recall:
        L.append("## Recall against cost\n")
        L.append("recd-ann-bench on each bundle's own user-tower queries, k = 100, CPU per search on one "
                 "thread. Inverted files: nprobe (lists searched); HNSW: efSearch; Flat is exact.\n")
        L.append("![recall@100 against CPU per search](recall-cost.svg)\n")
    L.extend(shards_md(records))
    L.append("## Commands\n")
    L.append("The whole run:\n\n```sh\n%s\n```\n" % " ".join(
        ["%s=%s" % (n, shq(v)) for n, v in k.items() if n not in ("CACHE",)] + [machine.get("invocation", "bench/run.sh")]))
    L.append("What it ran, per bundle (BUNDLE the bundle's name, ports and pids found at run time, "
             "R the rate, N its bound, CATS the bundle's categories):\n")
    L.append("```sh\n%s\n```\n" % "\n".join(commands(records)))
    return "\n".join(L) + "\n"


def shards_md(records):
    """The sharded-retrieval section (bench/shards.py), if it ran."""
    r = next((x for x in records if x["type"] == "shards"), None)
    if not r:
        return []
    L = ["## Sharded retrieval: memory per shard, recall of the merged answer\n"]
    if r["status"] != "ok":
        return L + ["**FAILED** (%s): `%s`\n" % (r.get("why", "see the run's output"), r.get("cmd", ""))]
    rows = r["result"]["rows"]
    k = rows[0]["k"]
    L.append("`recctl shard` splits bundle %s for N retrieval shards; each `recd --role=retrieval` loads only "
             "its partition (its items' rows, its part of every inverted list, its item-CF and popularity rows). "
             "Peak resident memory (VmHWM) of each shard after its load; recall@%d of the shards' ANN answers "
             "merged (best %d by score), against exact search over the whole catalog, for %d users of the "
             "bundle; and the share of the unsharded answer the merged one keeps.\n"
             % (r["bundle"], k, k, rows[0]["users"]))
    L.append(md_table(["shards", "split (s)", "peak RSS per shard (MiB)", "largest shard vs one",
                       "recall@%d merged" % k, "same as unsharded"],
                      [[str(x["shards"]), "%.1f" % x["split_s"], ", ".join("%.0f" % v for v in x["peak_rss_mib"]),
                        "%.2f" % (x["max_rss_mib"] / rows[0]["max_rss_mib"]), "%.4f" % x["recall_at_k"],
                        "%.4f" % x["overlap_with_unsharded"]] for x in rows],
                      ["r", "r", "l", "r", "r", "r"]))
    L.append("")
    L.append("Command: `%s`\n" % r["cmd"])
    return L


def shq(v):
    v = str(v)
    return v if re.fullmatch(r"[\w./:,+-]*", v) and v else "'%s'" % v


def dur(s):
    if s is None:
        return "?"
    return "%d min %02d s" % (s // 60, s % 60)


def method_md(k):
    k = dict(k)
    shares = lambda v: ", ".join("%g %%" % (100 * float(f)) for f in str(v).split())
    k["LOADS"], k["KEY_LOADS"], k["FILTER_SHARE"] = shares(k.get("LOADS")), shares(k.get("KEY_LOADS")), \
        shares(k.get("FILTER_SHARE"))
    return """## Method

- **Bundles.** `synth-N`: `recctl synth --items N --users 20000 --dim 64 --categories 50` (embeddings clustered
  by category and product line, popularity Zipf-skewed: 1000 / (1 + rank)^0.8); MovieLens and Superstore:
  `tools/data/fetch.sh`, user ids relabelled (below), then `recctl build --quiet --no-eval` with its default
  index. Kept in `%(CACHE)s`.
- **Same slates first.** On each bundle, before anything is timed, `compare_slates.py` asks recd and the
  Python server (`bench/pyserver/recd_py.py`) for %(COMPARE_N)s users' slates (a tenth unknown users,
  %(FILTER_SHARE)s of requests with one category filter, second pages, excludes, anchors, price ranges) and
  requires identical item lists, strategies, degraded reasons and cursors; a bundle that fails is not timed.
- **The two servers.** recd `--threads=%(RECD_THREADS)s --call_log=off`; recd_py `--processes %(PY_PROCESSES)s
  --workers %(PY_WORKERS)s` (SO_REUSEPORT; its cheapest CPU per call and its way to use both cores). Both
  serve the same bundle at the same time; only one is loaded at a time. %(CHANNELS)s connections, so that the
  kernel spreads them evenly over the Python server's processes (with 4, a 3:1 or 4:0 split costs it up to
  half its throughput in some runs; recd is indifferent). The machine has 2 cores and recd-loadgen needs most
  of one: the server under test gets the rest, and its threads share cores with the load generator's.
  recd-loadgen runs as SCHED_BATCH (its `--sched` default), so its wake-ups wait for a server thread's time
  slice instead of preempting it mid-call; what that costs the generator shows in its send lag and the
  latencies.
- **Requests.** One generator for both (`recd-loadgen`): users drawn from the bundle's users plus one unknown
  user for every nine known ones, %(FILTER_SHARE)s of requests with one of the bundle's categories as a filter,
  k = 10, a 5 s deadline.
- **Saturation.** Closed loop, %(CONCURRENCY)s calls in flight over %(CHANNELS)s connections, %(WARMUP_S)s s
  warm-up then %(DURATION_S)s s measured, recd and Python alternating, %(REPS)s times each: the median and the
  range. **Server CPU per call** = utime + stime of every server process (for Python: the launcher and its
  forked servers; threads included), read from `/proc/PID/stat` before and after the run, divided by every
  call the run made (warm-up and drain included). The **CPU ratio** is Python's median over recd's.
- **Open loop.** Poisson arrivals at %(LOADS)s of each server's own median saturation rate (at most
  %(OPEN_CONCURRENCY)s calls in flight; latency from each call's intended send time, so queueing shows);
  %(KEY_LOADS)s repeated %(REPS)s times (median and range); the rest once. recd-loadgen's sender thread sleeps
  until each arrival's intended time (`clock_nanosleep`, 1 ns timer slack) while another thread reaps the
  replies; however late a call leaves, that counts as latency, and the send lag line says how late the
  generator itself was.
- **Recall.** `recd-ann-bench --k 100` on the first %(ANN_QUERIES)s users' tower vectors (the queries recd
  serves for those users) against exact search, CPU per search on one thread, at several breadths; the row at
  the bundle's own breadth is the one recd serves with. For an inverted file the breadth is nprobe: the index is
  opened through a copy of its manifest with nprobe set to the widest breadth, and narrower ones reached through
  recd-ann-bench's `--ef` (nprobe × ef / 128). Also recall@200 at the bundle's breadth: Recommend's candidate
  depth for k = 10 is 200.
- **In process.** `recd-pipeline-bench` (%(PIPELINE_CALLS)s calls through the server's own handler on one
  thread, request decoded and reply encoded, no RPC, after warm-up calls that are not counted, as the server
  under load is long warm; how many is on each bundle's line): CPU per call and stage means (recd's stage histograms,
  as the pipeline bench reports them). **Serving tax** = 1 − in-process CPU per call / recd's server CPU per
  call under a closed-loop load of the *same requests* (the pipeline bench's users, no filters; "matched" runs,
  %(REPS)s of them): the pipeline bench asks for `U00000`… with every tenth user an unknown one, so the real
  datasets' user ids are relabelled `U00000`… (in order of first appearance) before `recctl build`; nothing in
  a bundle depends on an id's text.
""" % k


TOTAL_STAGES = ("handler", "total")
BUSY_CORES = 0.25  # others' median CPU past which a bundle's numbers are flagged


def stage_rows(p):
    """(name, mean µs) per stage as recd-pipeline-bench reports them, whatever their names; its totals
    after them, and what no stage accounts for in the CPU per call."""
    st = p.get("stage_mean_us") or {}
    parts = [(k.replace("_", " "), v) for k, v in st.items() if k not in TOTAL_STAGES]
    totals = [("*%s*" % k, v) for k, v in st.items() if k in TOTAL_STAGES]
    if not parts:
        return totals
    rest = p["cpu_us"]["mean"] - sum(v for _, v in parts)
    return parts + [("*rest (CPU per call − stages)*", rest)] + totals


def bundle_md(x, chart):
    L = ["## %s\n" % x["name"]]
    if x["status"] != "ok":
        L.append("**%s**: %s.\n" % (x["status"].upper(), x.get("why", "incomplete")))
        if x.get("compare"):
            L.append("```\n%s\n```\n" % x["compare"]["output"].strip()[-3000:])
        return "\n".join(L)
    busy = x.get("others_cores")
    if busy and busy["median"] > BUSY_CORES:
        L.append("**Measured while other work ran**: the rest of the machine used %s cores (median over this "
                 "bundle's runs, range %s); its numbers are lower and its tails longer than on a quiet "
                 "machine.\n" % (fmt(busy, 2), frange(busy)))
    m = x.get("manifest") or {}
    ix = m.get("index", {})
    L.append("%s items, %s users, dim %s, index `%s`%s; signals: %s. %s load users, %s categories; "
             "this bundle took %s.\n" % (
                 fmt(m.get("items")), fmt(m.get("users")), m.get("dim"), ix.get("type"),
                 ", nprobe %s of %s lists" % (ix.get("nprobe"), ix.get("nlist")) if ix.get("nprobe") else
                 (", efSearch %s" % ix.get("ef_search") if ix.get("ef_search") else ""),
                 ", ".join(m.get("signals") or []) or "none (synthetic)", fmt(x.get("load_users")),
                 x.get("categories"), dur(x.get("seconds"))))
    c = x.get("compare")
    if c:
        lines = [ln for ln in c["output"].splitlines() if ln.strip()]
        L.append("Slate check (compare_slates.py, exit %d):\n\n```\n%s\n```\n" % (c["rc"], "\n".join(lines[-8:])))
    s = x["sat"]
    L.append("### Saturation\n")
    rows = []
    for name, key in (("recd", "recd"), ("Python", "py")):
        rows.append([name, fspread(s[key]["calls_per_s"]), fspread(s[key]["cpu_us"]), fspread(s[key]["p99_us"]),
                     s[key]["errors"]])
    L.append(md_table(["server", "calls/s", "server CPU µs/call", "p99 µs (closed loop)", "errors"], rows))
    L.append("")
    L.append("Python / recd: **%s×** the CPU per call (per interleaved pair: %s), recd serves **%s×** the "
             "calls/s. recd's CPU per call counted by recd-loadgen over its measured window only: %s µs.\n" % (
                 "-" if x["cpu_ratio"] is None else "%.1f" % x["cpu_ratio"], fspread(x["cpu_ratio_pairs"], 1),
                 "-" if x["rate_ratio"] is None else "%.1f" % x["rate_ratio"], fspread(s["recd"]["cpu_us_window"])))
    runs = [r for r in x["loads"] if r["kind"] == "saturation"]
    L.append("<details><summary>every saturation run, in order</summary>\n")
    L.append(md_table(["run", "server", "calls/s", "CPU µs/call", "p50 µs", "p99 µs", "errors", "others' cores",
                       "stolen cores"],
                      [[i + 1, r["server"], fmt(lg(r, "calls_per_s")), fmt(r["server_cpu_us_per_call"]),
                        fmt(lg(r, "latency_us", "p50")), fmt(lg(r, "latency_us", "p99")), lg(r, "errors"),
                        fmt(r["others_cores"], 2), fmt(r.get("steal_cores"), 2)] for i, r in enumerate(runs)]))
    L.append("\n</details>\n")
    L.append("### Open loop\n")
    rows = []
    for o in x["open"]:
        rows.append(["recd" if o["server"] == "recd" else "Python", "%d %%" % round(100 * o["fraction"]),
                     fmt(o["rate"]), fspread(o["calls_per_s"]), fspread(o["p50"]), fspread(o["p99"]),
                     fspread(o["p99.9"]), fspread(o["max"]), fspread(o["server_cpu_us"]), fspread(o["gen_cpu_us"]),
                     fmt(busy_cores(o), 2), fspread(o["lag_p99"]), "%d / %s" % (o["errors"], fmt(o["calls"])),
                     o["reps"]])
    L.append(md_table(["server", "load", "offered/s", "served/s", "p50 µs", "p99 µs", "p99.9 µs", "max µs",
                       "server CPU µs/call", "generator CPU µs/call", "cores busy (both)", "generator send lag p99 µs",
                       "errors / calls", "runs"], rows))
    L.append("")
    one = []
    for key, name in (("recd", "recd"), ("Python", "py")):
        r = x["single"].get(name)
        if r and r.get("loadgen"):
            one.append("%s p50 %s µs, p99 %s µs (%s µs of server CPU per call)" % (
                key, fmt(lg(r, "latency_us", "p50")), fmt(lg(r, "latency_us", "p99")),
                fmt(r["server_cpu_us_per_call"])))
    if one:
        L.append("One call at a time (closed loop, one connection, %s s): %s.\n" % (
            KNOBS.get("DURATION_S"), "; ".join(one)))
    if chart:
        L.append("![latency against offered load](%s)\n" % chart)
    L.append("### ANN stage: recall against exact search\n")
    a = x["ann"].get(100)
    if a and a["rows"]:
        rows = []
        for r in sorted({r["breadth"]: r for r in a["rows"]}.values(), key=lambda r: r["breadth"]):
            mark = " **(used)**" if r["breadth"] == a["default"] or a["index"] == "flat" else ""
            row = [breadth_label(a["index"], r["breadth"], m) + mark, "%.4f" % r["recall"], "%.1f" % r["us"]]
            if a["index"] == "hnsw":
                row += ["%.4f" % r["faiss_recall"], "%.1f" % r["faiss_us"]]
            rows.append(row)
        head = ["breadth", "recall@100", "CPU µs/search"] + (
            ["FAISS stock recall", "FAISS stock µs"] if a["index"] == "hnsw" else [])
        L.append("%s queries, k = 100.\n" % a.get("queries"))
        L.append(md_table(head, rows))
        L.append("")
    d = x.get("recall_depth")
    if d:
        L.append("At Recommend's candidate depth (k = 200, %s): recall@200 **%.4f**, %.1f µs per search (%s "
                 "queries).\n" % (breadth_label(a["index"] if a else "flat", d["breadth"], m), d["recall"], d["us"],
                                  x["ann"][200].get("queries")))
    L.append("### In process and the serving tax\n")
    p = (x.get("pipeline") or {}).get("result")
    if p:
        cpu = p["cpu_us"]
        L.append("`recd-pipeline-bench`: **%.1f µs** CPU per Recommend (median %.1f, p99 %.1f; %d calls after %s "
                 "warm-up calls, %d failed). Server CPU per call for the same requests under load (matched, %s "
                 "runs): %s µs, %s calls/s: serving tax **%s** (against the benchmark's mixed load, %s µs: %s).\n" % (
                     cpu["mean"], cpu["median"], cpu["p99"], p.get("calls", 0),
                     p.get("warmup", "no"), p.get("failed", 0),
                     (x["matched_cpu_us"] or {}).get("n", 0), fspread(x["matched_cpu_us"]),
                     fspread(x["matched_calls_per_s"]), pct(x["tax"], 1), fmt(s["recd"]["cpu_us"]),
                     pct(x["tax_mixed"], 1)))
        fl = x.get("floor_us")
        if fl and x["matched_cpu_us"]:
            mcpu = x["matched_cpu_us"]["median"]
            L.append("The floor under it: a `Health.Check` under the same closed-loop load (no work behind it) "
                     "costs **%.1f µs** of server CPU per call, %s of the matched Recommend's: a serving tax of "
                     "at most 10 %% needs the pipeline to cost 9× that floor, and what the floor leaves "
                     "unexplained is %s.\n" % (fl["median"], pct(fl["median"] / mcpu),
                                             pct(1 - (x["inproc_us"] + fl["median"]) / mcpu, 1)))
        rows = [[name, "%.1f" % v, pct(v / cpu["mean"]) if cpu["mean"] else "-"] for name, v in stage_rows(p)]
        if rows:
            L.append("Stages (means from recd's stage histograms, in the order the pipeline bench reports "
                     "them; shares of the in-process CPU per call; *handler* is the handler's whole time, "
                     "decode and encode outside it):\n")
            L.append(md_table(["stage", "µs", "share"], rows))
            L.append("")
    return "\n".join(L)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[1]
    if cmd == "render" and len(argv) == 4:
        return render(argv[2], argv[3])
    if cmd == "ann-plan" and len(argv) == 3:
        with open(argv[2]) as f:
            kind, default, widest, efs = ann_plan(json.load(f))
        print(kind, default, widest, ",".join(map(str, efs)))
        return 0
    if cmd == "ann-ef" and len(argv) == 5:
        print(ann_ef(argv[2], int(argv[3]), int(argv[4])))
        return 0
    if cmd == "set-nprobe" and len(argv) == 4:
        with open(argv[2]) as f:
            m = json.load(f)
        m["index"]["nprobe"] = int(argv[3])
        json.dump(m, sys.stdout, indent=1)
        print()
        return 0
    if cmd == "relabel-users" and len(argv) == 3:
        return relabel_users(argv[2])
    if cmd == "manifest-summary" and len(argv) == 3:
        with open(argv[2]) as f:
            print(json.dumps(manifest_summary(json.load(f))))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
