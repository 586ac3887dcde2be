#!/usr/bin/python3
"""deploy/gateway/rollout.py - moves a canary recd through weight steps behind
the HAProxy gateway (deploy/gateway/gateway.sh), judging each step on both
pools' /metrics, and rolls it back to 0 on the first breach.

At each step it sets the weights through HAProxy's runtime API (canary w,
stable 100 - w; no reload, no connection closed, calls in flight finish where
they are), waits --step-seconds, reads both pools' /metrics, and compares what
changed over the step with the thresholds:

  error rate  non-OK calls / all calls of /rec.v1.Ranking/Recommend
              (recd_requests_total, by status)
  p99         from recd_request_duration_seconds_bucket of Recommend, the
              buckets' increase over the step, interpolated within a bucket
              as Prometheus' histogram_quantile does
  degraded    for each reason of recd_degraded_total, its increase / the
              Recommend calls answered OK; the worst reason counts (one answer
              may carry several reasons, so the rates are not summed)

Only the canary is judged; the stable pool's numbers are printed beside it
for comparison. A breach rolls back whatever the number of calls (the safe
direction), but a step with fewer than --min-requests canary calls cannot
pass: with --low-traffic extend (the default) the step is held and its
window extended by --step-seconds, up to --max-extends times, then rolled
back; with --low-traffic pass it is promoted anyway. A canary the gateway
marks DOWN (its grpc.health.v1 check fails) is rolled back at once, as is one
whose /metrics cannot be read.

Exit status: 0 the canary reached the last step; 1 rolled back (the reason
is printed); 2 could not start or could not reach the runtime API.

Python 3 standard library only.
"""
import argparse
import math
import signal
import socket
import sys
import time
import urllib.request

METHOD = "/rec.v1.Ranking/Recommend"


# --- HAProxy's runtime API ---------------------------------------------------

class Runtime:
    """HAProxy's runtime API on a unix socket: one command per connection
    (the socket's non-interactive mode), the answer read to EOF."""

    def __init__(self, path, backend, stable, canary):
        self.path, self.backend, self.stable, self.canary = path, backend, stable, canary

    def command(self, line):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.path)
            s.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        return b"".join(chunks).decode(errors="replace")

    def set_weight(self, server, weight):
        out = self.command("set weight %s/%s %d" % (self.backend, server, weight)).strip()
        if out:  # success is an empty answer
            raise RuntimeError("set weight %s/%s %d: %s" % (self.backend, server, weight, out))

    def set_canary(self, w):
        """Canary w %, stable 100 - w. The weight that goes up is set first:
        the other order passes through stable 0 + canary 0 when going to 100
        or back to 0, and in that instant HAProxy has no server to give a
        call to and answers 503."""
        order = [(self.canary, w), (self.stable, 100 - w)]
        if w < self.weights()[self.canary]:
            order.reverse()
        for server, weight in order:
            self.set_weight(server, weight)

    def servers(self):
        """{server name: row of "show stat"} for this backend's servers."""
        lines = self.command("show stat").splitlines()
        if not lines or not lines[0].startswith("# "):
            raise RuntimeError("show stat: unexpected answer %r" % (lines[:1],))
        head = lines[0][2:].split(",")
        rows = {}
        for line in lines[1:]:
            row = dict(zip(head, line.split(",")))
            if row.get("pxname") == self.backend and row.get("svname") not in ("FRONTEND", "BACKEND"):
                rows[row["svname"]] = row
        for name in (self.stable, self.canary):
            if name not in rows:
                raise RuntimeError("backend %r has no server %r" % (self.backend, name))
        return rows

    def weights(self):
        return {name: int(row["weight"]) for name, row in self.servers().items()}


def state_of(row):
    """'UP', 'DOWN', 'UP 1/2' (going down), 'MAINT'...; with the last check."""
    return "%s (check %s)" % (row.get("status", "?"), row.get("check_status", "").lstrip("* ") or "-")


# --- recd's /metrics ----------------------------------------------------------

def parse_labels(s):
    """'a="x",b="y"' -> {'a': 'x', 'b': 'y'} (recd's values hold no quotes)."""
    out = {}
    for part in s.split('",'):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip().strip('"')
    return out


class Sample:
    """What one scrape says about Recommend: calls by status, the latency
    buckets (cumulative, by upper bound in seconds) and degraded answers by
    reason. Samples of several processes of one pool add up."""

    def __init__(self):
        self.calls, self.buckets, self.degraded = {}, {}, {}

    def add_text(self, text):
        for line in text.splitlines():
            if not line or line[0] == "#" or "{" not in line:
                continue
            name, rest = line.split("{", 1)
            labels, _, value = rest.rpartition("}")
            try:
                v = float(value)
            except ValueError:
                continue
            lab = parse_labels(labels)
            if name == "recd_requests_total" and lab.get("method") == METHOD:
                add(self.calls, lab.get("status", "?"), v)
            elif name == "recd_request_duration_seconds_bucket" and lab.get("method") == METHOD:
                add(self.buckets, math.inf if lab["le"] == "+Inf" else float(lab["le"]), v)
            elif name == "recd_degraded_total":
                add(self.degraded, lab.get("reason", "?"), v)

    def minus(self, before):
        """The increase since 'before'. A counter that went down means the
        process restarted: its whole value is the increase then."""
        d = Sample()
        for mine, theirs, out in ((self.calls, before.calls, d.calls),
                                  (self.buckets, before.buckets, d.buckets),
                                  (self.degraded, before.degraded, d.degraded)):
            reset = any(v < theirs.get(k, 0) for k, v in mine.items())
            for k, v in mine.items():
                out[k] = v if reset else v - theirs.get(k, 0)
        return d


def add(d, k, v):
    d[k] = d.get(k, 0) + v


def read_token(path):
    """The first token of a recd token file ('NAME TOKEN' per line)."""
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and not parts[0].startswith("#"):
                return parts[1]
    raise ValueError("%s holds no 'NAME TOKEN' line" % path)


def scrape(urls, token):
    s = Sample()
    for url in urls:
        req = urllib.request.Request(url)
        if token:
            req.add_header("Authorization", "Bearer " + token)
        with urllib.request.urlopen(req, timeout=5) as r:
            s.add_text(r.read().decode())
    return s


# --- one step's numbers ------------------------------------------------------

def quantile(q, buckets):
    """Prometheus' histogram_quantile over cumulative 'buckets' {le: count}:
    linear within the bucket holding the rank; in the +Inf bucket, the
    largest finite bound. None without observations."""
    bounds = sorted(buckets)
    total = buckets.get(math.inf, 0)
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_cum = 0.0, 0.0
    for le in bounds:
        cum = buckets[le]
        if cum >= rank:
            if le == math.inf:
                return prev_le
            if cum == prev_cum:
                return le
            return prev_le + (le - prev_le) * (rank - prev_cum) / (cum - prev_cum)
        prev_le, prev_cum = le, cum
    return prev_le


class Stats:
    def __init__(self, d, ignore_degraded):
        self.n = int(sum(d.calls.values()))
        self.ok = int(d.calls.get("OK", 0))
        self.failed = {k: int(v) for k, v in d.calls.items() if k != "OK" and v > 0}
        self.error_rate = (self.n - self.ok) / self.n if self.n else 0.0
        p99 = quantile(0.99, d.buckets)
        self.p99_ms = None if p99 is None else p99 * 1000
        self.degraded_rate, self.degraded_reason = 0.0, None
        for reason, v in sorted(d.degraded.items()):
            if reason in ignore_degraded or not self.ok or v <= 0:
                continue
            # min(): the two counters are read a moment apart within a scrape.
            if min(v / self.ok, 1.0) > self.degraded_rate:
                self.degraded_rate, self.degraded_reason = min(v / self.ok, 1.0), reason

    def __str__(self):
        p99 = "-" if self.p99_ms is None else "%.1fms" % self.p99_ms
        deg = "%.2f%%" % (100 * self.degraded_rate)
        if self.degraded_reason:
            deg += " (%s)" % self.degraded_reason
        return "n=%d err=%.2f%% p99=%s degraded=%s" % (self.n, 100 * self.error_rate, p99, deg)


def breaches(c, a):
    """Why the canary's numbers 'c' fail the thresholds in 'a' (empty: none)."""
    why = []
    if c.error_rate > a.max_error_rate:
        why.append("error rate %.2f%% > %.2f%% (%s)" % (
            100 * c.error_rate, 100 * a.max_error_rate,
            ", ".join("%s %d" % kv for kv in sorted(c.failed.items()))))
    if c.p99_ms is not None and c.p99_ms > a.max_p99_ms:
        why.append("p99 %.1fms > %.1fms" % (c.p99_ms, a.max_p99_ms))
    if c.degraded_rate > a.max_degraded_rate:
        why.append("degraded %.2f%% > %.2f%% (%s)" % (
            100 * c.degraded_rate, 100 * a.max_degraded_rate, c.degraded_reason))
    return why


# --- the rollout ---------------------------------------------------------------

def say(*parts):
    print(*parts, flush=True)  # one line per event, read live by people and tests


def rollback(rt, why):
    say("rollback: " + why)
    rt.set_canary(0)
    w = rt.weights()
    say("rollback: weights canary=%d stable=%d" % (w[rt.canary], w[rt.stable]))
    return 1


def judge_step(rt, a, token, w):
    """Holds the weights at w until the step can be judged. Returns None to
    promote, or the reason to roll back."""
    before = (scrape(a.stable_metrics, token), scrape(a.canary_metrics, token))
    extends = 0
    while True:
        time.sleep(a.step_seconds)
        try:
            cs = scrape(a.canary_metrics, token).minus(before[1])
        except OSError as e:
            return "cannot read the canary's metrics: %s" % e
        try:
            ss = Stats(scrape(a.stable_metrics, token).minus(before[0]), a.ignore_degraded)
            stable = str(ss)
        except OSError as e:
            stable = "metrics unreadable (%s)" % e
        c = Stats(cs, a.ignore_degraded)
        row = rt.servers()[rt.canary]
        head = "step %d%%: canary %s | stable %s | gateway: canary %s" % (w, c, stable, state_of(row))
        if not row.get("status", "").startswith("UP"):  # DOWN, MAINT, or never checked
            say(head + " -> rollback")
            return "the gateway marks the canary %s" % state_of(row)
        why = breaches(c, a)
        if why:
            say(head + " -> rollback")
            return "; ".join(why)
        if w > 0 and c.n < a.min_requests:
            if a.low_traffic == "pass":
                say(head + " -> promote (only %d canary calls < --min-requests %d; --low-traffic pass)"
                    % (c.n, a.min_requests))
                return None
            if extends >= a.max_extends:
                say(head + " -> rollback")
                return ("only %d canary calls at %d%% after %d extensions (--min-requests %d): "
                        "cannot judge it" % (c.n, w, extends, a.min_requests))
            extends += 1
            say(head + " -> hold (%d canary calls < --min-requests %d; waiting %gs more, %d of %d)"
                % (c.n, a.min_requests, a.step_seconds, extends, a.max_extends))
            continue  # the window grows: 'before' stays
        say(head + " -> promote")
        return None


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Move a canary recd through weight steps behind the HAProxy gateway, "
                    "rolling back on a breach of the thresholds.")
    p.add_argument("--socket", required=True, help="HAProxy's runtime API socket (gateway.sh --dir/admin.sock)")
    p.add_argument("--stable-metrics", action="append", default=[], metavar="URL",
                   help="a stable recd's /metrics (repeat for each process of the pool)")
    p.add_argument("--canary-metrics", action="append", default=[], metavar="URL",
                   help="a canary recd's /metrics (repeat for each process of the pool)")
    p.add_argument("--token-file", help="recd admin token file, when the admin HTTP port needs a token")
    p.add_argument("--steps", default="0,5,25,50,100", help="canary percents, rising (default: %(default)s)")
    p.add_argument("--step-seconds", type=float, default=60, help="time at each step (default: %(default)s)")
    p.add_argument("--min-requests", type=int, default=100,
                   help="canary Recommend calls a step needs to be judged (default: %(default)s)")
    p.add_argument("--low-traffic", choices=("extend", "pass"), default="extend",
                   help="a step with fewer calls: extend it (then roll back) or pass it (default: %(default)s)")
    p.add_argument("--max-extends", type=int, default=3,
                   help="extensions of a step short of calls before rolling back (default: %(default)s)")
    p.add_argument("--max-error-rate", type=float, default=0.01,
                   help="largest canary error rate, a fraction (default: %(default)s)")
    p.add_argument("--max-p99-ms", type=float, default=100, help="largest canary p99, ms (default: %(default)s)")
    p.add_argument("--max-degraded-rate", type=float, default=0.05,
                   help="largest canary rate of any one degraded reason, a fraction (default: %(default)s)")
    p.add_argument("--ignore-degraded", default="unknown_user,short_catalog", metavar="REASON,...",
                   help="degraded reasons not judged: these say what the traffic asked (cold users, a "
                        "filter few items pass), not how the canary serves; '' judges all "
                        "(default: %(default)s)")
    p.add_argument("--backend", default="recd", help="HAProxy backend (default: %(default)s)")
    p.add_argument("--stable-server", default="stable", help="(default: %(default)s)")
    p.add_argument("--canary-server", default="canary", help="(default: %(default)s)")
    p.add_argument("--status", action="store_true", help="print the servers' weights and states, change nothing")
    p.add_argument("--set", type=int, metavar="PERCENT",
                   help="set the canary to PERCENT (stable 100 - PERCENT) at once, judge nothing, and exit")
    p.add_argument("--dry-run", action="store_true", help="check the socket and the metrics, print the plan")
    a = p.parse_args(argv)
    try:
        a.steps = [int(s) for s in a.steps.split(",")]
    except ValueError:
        p.error("--steps: comma-separated integers, e.g. 0,5,25,50,100")
    if not a.steps or any(not 0 <= s <= 100 for s in a.steps) or a.steps != sorted(a.steps):
        p.error("--steps must rise within 0..100")
    a.ignore_degraded = {r for r in a.ignore_degraded.split(",") if r}
    if a.set is not None and not 0 <= a.set <= 100:
        p.error("--set must be within 0..100")
    if not a.status and a.set is None and (not a.stable_metrics or not a.canary_metrics):
        p.error("--stable-metrics and --canary-metrics are required")
    return a


def interrupted(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    rt = Runtime(a.socket, a.backend, a.stable_server, a.canary_server)
    try:
        rows = rt.servers()
    except (OSError, RuntimeError) as e:
        print("rollout: runtime API %s: %s" % (a.socket, e), file=sys.stderr)
        return 2
    if a.set is not None:
        try:
            rt.set_canary(a.set)
            rows = rt.servers()
        except (OSError, RuntimeError) as e:
            print("rollout: %s" % e, file=sys.stderr)
            return 2
    if a.status or a.set is not None:
        for name in (rt.stable, rt.canary):
            say("%s: weight %s, %s" % (name, rows[name]["weight"], state_of(rows[name])))
        return 0
    try:
        token = read_token(a.token_file) if a.token_file else None
        scrape(a.stable_metrics, token), scrape(a.canary_metrics, token)
    except (OSError, ValueError) as e:
        print("rollout: cannot read the metrics: %s" % e, file=sys.stderr)
        return 2
    say("rollout: steps %s%% every %gs; canary thresholds: error rate <= %.2f%%, p99 <= %gms, "
        "degraded <= %.2f%%, >= %d calls a step (else %s)" % (
            ",".join(map(str, a.steps)), a.step_seconds, 100 * a.max_error_rate, a.max_p99_ms,
            100 * a.max_degraded_rate, a.min_requests, a.low_traffic))
    if a.dry_run:
        for name in (rt.stable, rt.canary):
            say("%s: weight %s, %s" % (name, rows[name]["weight"], state_of(rows[name])))
        say("dry run: nothing changed")
        return 0
    # Ctrl-C or a SIGTERM mid-rollout leaves the stable pool serving.
    signal.signal(signal.SIGTERM, interrupted)
    try:
        for i, w in enumerate(a.steps):
            rt.set_canary(w)
            ws = rt.weights()
            say("step %d/%d: weights canary=%d stable=%d" % (i + 1, len(a.steps), ws[rt.canary], ws[rt.stable]))
            why = judge_step(rt, a, token, w)
            if why:
                return rollback(rt, why)
    except KeyboardInterrupt:
        return rollback(rt, "interrupted")
    except (OSError, RuntimeError) as e:
        try:
            return rollback(rt, "error: %s" % e)
        except (OSError, RuntimeError) as e2:
            print("rollout: cannot roll back either: %s; check the weights by hand" % e2, file=sys.stderr)
            return 2
    say("done: canary at %d%%" % a.steps[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
