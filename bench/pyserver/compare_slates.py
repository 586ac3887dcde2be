#!/usr/bin/python3
"""bench/pyserver/compare_slates.py - do two Recommend servers return the same
slates? Calls rec.v1.Ranking/Recommend on both for a sample of users, as
recd-loadgen would ask (known users, about a tenth unknown ones, a share with
one category filter), plus the next page for some of them and, for a share, the same request with
excluded items, anchor items, a price range or an excluded category taken
from the first answer (so that those rules run too), and compares the
answers: the ordered item ids (which must be identical), strategy, degraded
reasons and next cursor, and reports how far scores and per-source raw scores
differ (float rounding is allowed there, and reported).

Usage:
  /usr/bin/python3 bench/pyserver/compare_slates.py --a HOST:PORT --b HOST:PORT
      --users FILE [--n 200] [--k 10] [--categories A,B,...] [--filter-share 0.25]
      [--unknown-share 0.1] [--page-share 0.2] [--rules-share 0.2] [--seed 1]
      [--proto DIR]

Exit status: 0 when every slate is identical, 1 when any differs, 2 on bad
usage or when a server cannot be reached.
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))


def load_stubs(proto_dir):
    out = tempfile.mkdtemp(prefix="compare_slates_stubs.")
    try:
        protos = ["rec/v1/common.proto", "rec/v1/ranking.proto"]
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", proto_dir, "--python_out", out,
                        "--grpc_python_out", out] + protos, check=True)
        sys.path.insert(0, out)
        try:
            from rec.v1 import ranking_pb2, ranking_pb2_grpc
        finally:
            sys.path.remove(out)
        return ranking_pb2, ranking_pb2_grpc
    finally:
        shutil.rmtree(out, ignore_errors=True)


def answer(stub, req, timeout):
    """(status code name, response or error text)."""
    try:
        return "OK", stub.Recommend(req, timeout=timeout)
    except grpc.RpcError as e:
        return e.code().name, e.details()


def describe(resp, limit=12):
    if isinstance(resp, str):
        return resp
    items = ["%s:%.6g" % (it.item_id, it.score) for it in resp.items[:limit]]
    more = " ..." if len(resp.items) > limit else ""
    return "[%s%s] strategy=%d degraded=%s next_cursor=%r" % (
        ", ".join(items), more, resp.strategy, list(resp.degraded_reasons), resp.next_cursor)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="first server, HOST:PORT (e.g. recd)")
    ap.add_argument("--b", required=True, help="second server, HOST:PORT (e.g. recd_py.py)")
    ap.add_argument("--users", required=True, help="file of user ids, one per line")
    ap.add_argument("--n", type=int, default=200, help="requests (first pages) to compare")
    ap.add_argument("-k", "--k", type=int, default=10, help="items per request")
    ap.add_argument("--categories", default="", help="comma-separated categories for filtered requests")
    ap.add_argument("--filter-share", type=float, default=0.25, help="share of requests with one category filter")
    ap.add_argument("--unknown-share", type=float, default=0.1, help="share of requests for unknown users")
    ap.add_argument("--page-share", type=float, default=0.2, help="share of requests also asked for page 2")
    ap.add_argument("--rules-share", type=float, default=0.2,
                    help="share of requests asked again with excludes, anchors, a price range or an excluded category")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout-s", type=float, default=30, help="deadline of every call (generous: no degradation)")
    ap.add_argument("--show", type=int, default=5, help="differences to print in full")
    ap.add_argument("--proto", default=DEFAULT_PROTO)
    args = ap.parse_args()

    with open(args.users) as f:
        users = [line.strip() for line in f if line.strip() and line.strip() != "user_id"]
    if not users:
        print("compare_slates: no users in %s" % args.users, file=sys.stderr)
        return 2
    cats = [c for c in args.categories.split(",") if c]
    pb, pb_grpc = load_stubs(args.proto)
    rng = random.Random(args.seed)
    sample = rng.sample(users, args.n) if args.n <= len(users) else [rng.choice(users) for _ in range(args.n)]

    requests = []
    for i, user in enumerate(sample):
        if rng.random() < args.unknown_share:
            user = "cold-%d" % i
        req = pb.RecommendRequest(user_id=user, k=args.k, request_id="compare-%d" % i)
        if cats and rng.random() < args.filter_share:
            req.filters.include_categories.append(rng.choice(cats))
        requests.append((req, rng.random() < args.page_share, rng.random() < args.rules_share))

    chans = [grpc.insecure_channel(args.a), grpc.insecure_channel(args.b)]
    for addr, ch in zip((args.a, args.b), chans):
        try:
            grpc.channel_ready_future(ch).result(timeout=10)
        except grpc.FutureTimeoutError:
            print("compare_slates: cannot reach %s" % addr, file=sys.stderr)
            return 2
    stubs = [pb_grpc.RankingStub(ch) for ch in chans]

    compared = same = 0
    kinds = {"known": 0, "unknown": 0, "filtered": 0, "page2": 0, "rules": 0, "errors": 0}
    max_score = max_raw = 0.0
    score_bits_same = score_total = 0
    diffs = []
    versions = set()  # (a's bundle_version, b's)

    def compare(req, label):
        nonlocal compared, same, max_score, max_raw, score_bits_same, score_total
        (ca, ra), (cb, rb) = answer(stubs[0], req, args.timeout_s), answer(stubs[1], req, args.timeout_s)
        compared += 1
        why = []
        if ca != cb:
            why.append("status %s vs %s" % (ca, cb))
        elif ca != "OK":
            kinds["errors"] += 1
        else:
            versions.add((ra.bundle_version, rb.bundle_version))
            ia, ib = [it.item_id for it in ra.items], [it.item_id for it in rb.items]
            if ia != ib:
                at = next((j for j, (x, y) in enumerate(zip(ia, ib)) if x != y), min(len(ia), len(ib)))
                why.append("items differ from position %d (%d vs %d items)" % (at + 1, len(ia), len(ib)))
            if ra.strategy != rb.strategy:
                why.append("strategy %d vs %d" % (ra.strategy, rb.strategy))
            if list(ra.degraded_reasons) != list(rb.degraded_reasons):
                why.append("degraded_reasons %s vs %s" % (list(ra.degraded_reasons), list(rb.degraded_reasons)))
            if ra.next_cursor != rb.next_cursor:
                why.append("next_cursor %r vs %r" % (ra.next_cursor, rb.next_cursor))
            if ia == ib:
                for x, y in zip(ra.items, rb.items):
                    score_total += 1
                    score_bits_same += x.score == y.score
                    max_score = max(max_score, abs(x.score - y.score))
                    sx = {s.source: s.raw for s in x.sources}
                    sy = {s.source: s.raw for s in y.sources}
                    if set(sx) != set(sy):
                        why.append("%s: sources %s vs %s" % (x.item_id, sorted(sx), sorted(sy)))
                    for s in set(sx) & set(sy):
                        max_raw = max(max_raw, abs(sx[s] - sy[s]))
        if why:
            diffs.append((label, req, why, ra, rb))
        else:
            same += 1
        return ra, rb

    for req, page2, rules in requests:
        kinds["unknown" if req.user_id.startswith("cold-") else "known"] += 1
        kinds["filtered"] += bool(req.filters.include_categories)
        label = "user %s k=%d%s" % (req.user_id, req.k, " filter=%s" % req.filters.include_categories[0]
                                    if req.filters.include_categories else "")
        ra, rb = compare(req, label)
        if page2 and not isinstance(ra, str) and ra.next_cursor:
            kinds["page2"] += 1
            nxt = pb.RecommendRequest()
            nxt.CopyFrom(req)
            nxt.page_cursor = ra.next_cursor
            compare(nxt, label + " page 2")
        if rules and not isinstance(ra, str) and ra.items:
            kinds["rules"] += 1
            more = pb.RecommendRequest()
            more.CopyFrom(req)
            shown = list(ra.items)
            more.exclude_item_ids.extend(it.item_id for it in shown[:2])
            more.anchor_item_ids.append(rng.choice(shown).item_id)
            what = rng.choice(("price", "category", "none"))
            if what == "price":
                prices = sorted(it.price for it in shown)
                more.filters.price.min_price = prices[0] * rng.choice((0, 1))
                more.filters.price.max_price = prices[len(prices) // 2] * 1.5
            elif what == "category" and not more.filters.include_categories:
                more.filters.exclude_categories.append(shown[0].category)
            compare(more, label + " with excludes, an anchor%s" % {"price": " and a price range",
                                                                     "category": " and an excluded category",
                                                                     "none": ""}[what])
    for ch in chans:
        ch.close()

    for va, vb in sorted(versions):
        if va != vb:
            print("different bundles: a serves %s, b serves %s" % (va, vb))
    print("identical slates: %d/%d (%d known users, %d unknown, %d with a category filter; %d second pages, "
          "%d with excludes/anchors/price/category rules; %d identical errors)"
          % (same, compared, kinds["known"], kinds["unknown"], kinds["filtered"], kinds["page2"], kinds["rules"],
             kinds["errors"]))
    print("scores: %d/%d bit-identical, max |a - b| = %.3g; per-source raw scores: max |a - b| = %.3g"
          % (score_bits_same, score_total, max_score, max_raw))
    for label, req, why, ra, rb in diffs[:args.show]:
        print("DIFFERENT: %s: %s" % (label, "; ".join(why)))
        print("  a: %s" % describe(ra))
        print("  b: %s" % describe(rb))
    if len(diffs) > args.show:
        print("... and %d more differences" % (len(diffs) - args.show))
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
