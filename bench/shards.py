#!/usr/bin/python3
"""Sharded retrieval: memory per shard and recall of the merged answer.

For each shard count N, the bundle is split with `recctl shard` (N = 1 serves
the whole bundle), N `recd --role=retrieval` processes load their partitions
on loopback, and then, for a sample of the bundle's users:

  - each shard is asked Retrieve(num_candidates=K); the ANN candidates of all
    shards are merged and the best K kept, as the ranking tier merges them;
  - recall@K of that merged answer against exact search over the whole
    catalog (the user tower's vector, every item scored), and its overlap
    with the unsharded process's own ANN answer (1.0: sharding changed
    nothing).

Memory per shard is the process's peak resident set (VmHWM) after its load,
read from /proc. Prints a table and writes JSON.

Usage: /usr/bin/python3 bench/shards.py --build BUILD --bundle DIR [--shards 1,2,4]
       [--users 200] [--k 100] [--json F]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "pyserver"))
import recd_py  # noqa: E402


def stubs(proto_dir, out):
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", proto_dir, "--python_out", out,
                    "--grpc_python_out", out, "rec/v1/common.proto", "rec/v1/retrieval.proto"], check=True)
    sys.path.insert(0, out)
    from rec.v1 import retrieval_pb2, retrieval_pb2_grpc, common_pb2  # noqa: F401
    return retrieval_pb2, retrieval_pb2_grpc, common_pb2


class Shard:
    def __init__(self, build, bundle, i, n, log_dir):
        self.log = open(os.path.join(log_dir, "shard-%d-of-%d.log" % (i, n)), "a+")
        self.proc = subprocess.Popen(
            [os.path.join(build, "server/recd"), "--bundle=" + bundle, "--role=retrieval", "--shard=%d/%d" % (i, n),
             "--listen=127.0.0.1:0", "--admin_listen=127.0.0.1:0", "--admin_grpc_listen=127.0.0.1:0", "--threads=1"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.port = self.wait(r'msg="serving" port=(\d+)')

    def wait(self, pattern, timeout=600):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.log.seek(0)
            m = re.search(pattern, self.log.read())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.close()
        self.log.seek(0)
        raise SystemExit("recd did not start:\n" + self.log.read()[-3000:])

    def peak_rss_mib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
        return int(m.group(1)) / 1024.0

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def merged_ann(stubs_, clients, user, k):
    """The best k ANN candidates over every shard's answer: [(score, id)]."""
    pb, _, common = stubs_
    got = []
    for c in clients:
        r = c.Retrieve(pb.RetrieveRequest(user_id=user, num_candidates=k, segment=-1), timeout=30)
        for cand in r.candidates:
            for s in cand.scores:
                if s.source == common.SOURCE_ANN:
                    got.append((s.raw, cand.item_id))
    got.sort(key=lambda x: (-x[0], x[1]))
    return got[:k]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--proto", default=os.path.join(HERE, "..", "proto"))
    ap.add_argument("--shards", default="1,2,4")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--json")
    args = ap.parse_args()
    import grpc

    tmp = tempfile.mkdtemp(prefix="recd_shards.")
    try:
        st = stubs(os.path.abspath(args.proto), tmp)
        whole = recd_py.Bundle(args.bundle)
        users = sorted(whole.user_row)[:: max(1, len(whole.user_row) // args.users)][: args.users]
        exact = {}
        for u in users:
            q = recd_py.user_vector(whole, whole.user_row[u])
            if q is None:
                continue
            s = whole.item_emb @ q
            top = np.argpartition(-s, args.k)[: args.k]
            exact[u] = {whole.ids[i] for i in top}
        del whole
        rows, base = [], None
        for n in [int(x) for x in args.shards.split(",")]:
            t0 = time.monotonic()
            if n == 1:
                dirs = [args.bundle]
                split_s = 0.0
            else:
                out = os.path.join(tmp, "split-%d" % n)
                subprocess.run([os.path.join(args.build, "tools/recctl"), "shard", "--bundle", args.bundle,
                                "--shards", str(n), "--out", out], check=True, stdout=subprocess.DEVNULL)
                split_s = time.monotonic() - t0
                dirs = [os.path.join(out, "shard-%d-of-%d" % (i, n)) for i in range(n)]
            shards = []
            try:
                for i, d in enumerate(dirs):  # one at a time: each peak is its own load's
                    shards.append(Shard(args.build, d, i, n, tmp))
                rss = [s.peak_rss_mib() for s in shards]
                chans = [grpc.insecure_channel("127.0.0.1:%d" % s.port) for s in shards]
                clients = [st[1].RetrievalStub(c) for c in chans]
                answers, recall = {}, []
                for u in exact:
                    got = merged_ann(st, clients, u, args.k)
                    answers[u] = {i for _, i in got}
                    recall.append(len(answers[u] & exact[u]) / float(args.k))
                for c in chans:
                    c.close()
            finally:
                for s in shards:
                    s.close()
            if base is None:
                base = answers
            same = [len(answers[u] & base[u]) / float(max(1, len(base[u]))) for u in exact]
            row = {"shards": n, "split_s": round(split_s, 1), "peak_rss_mib": [round(x, 1) for x in rss],
                   "max_rss_mib": round(max(rss), 1), "recall_at_k": round(float(np.mean(recall)), 4),
                   "overlap_with_unsharded": round(float(np.mean(same)), 4), "users": len(exact), "k": args.k}
            rows.append(row)
            print("shards=%d split=%.1fs peak RSS per shard (MiB)=%s recall@%d=%.4f overlap with unsharded=%.4f"
                  % (n, split_s, ",".join("%.0f" % x for x in rss), args.k, row["recall_at_k"],
                     row["overlap_with_unsharded"]), flush=True)
        print("\n| shards | peak RSS per shard (MiB) | largest vs 1 shard | recall@%d merged | same as unsharded |"
              % args.k)
        print("|--:|--|--:|--:|--:|")
        for r in rows:
            print("| %d | %s | %.2f | %.4f | %.4f |" % (r["shards"], ", ".join("%.0f" % x for x in r["peak_rss_mib"]),
                                                      r["max_rss_mib"] / rows[0]["max_rss_mib"], r["recall_at_k"],
                                                      r["overlap_with_unsharded"]))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"bundle": os.path.abspath(args.bundle), "rows": rows}, f)  # one line: a record of bench/run.sh
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
