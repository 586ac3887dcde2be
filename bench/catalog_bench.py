#!/usr/bin/python3
"""bench/catalog_bench.py - what a live catalog batch costs, and what items
added live cost Recommend. Makes a 100k-item synthetic bundle, starts recd on
loopback with a catalog log, and prints the median Upsert latency (fdatasync
and view rebuild included) for batches of 1 and 1000 existing items and of
100 new items (10 batches each), then Recommend p50/p99 before and after 1000
items were added. Numbers only: nothing is asserted.

Usage: /usr/bin/python3 bench/catalog_bench.py --build BUILD_DIR
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", default="build")
    p.add_argument("--items", type=int, default=100000)
    a = p.parse_args()
    build = os.path.abspath(a.build)
    here = os.path.dirname(os.path.abspath(__file__))
    tmp = tempfile.mkdtemp(prefix="recd-catbench.")
    proc = None
    try:
        stubs = os.path.join(tmp, "stubs")
        os.makedirs(stubs)
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", os.path.join(here, "..", "proto"),
                        "--python_out", stubs, "--grpc_python_out", stubs, "rec/v1/common.proto",
                        "rec/v1/ranking.proto", "rec/v1/catalog.proto"], check=True)
        sys.path.insert(0, stubs)
        import grpc
        from rec.v1 import catalog_pb2 as C, catalog_pb2_grpc as CG, ranking_pb2 as R, ranking_pb2_grpc as RG
        bundle = os.path.join(tmp, "b")
        subprocess.run([os.path.join(build, "tools/recctl"), "synth", "--out", bundle, "--items", str(a.items),
                        "--users", "1000", "--dim", "32"], check=True, stdout=subprocess.DEVNULL)
        token = os.path.join(tmp, "tok")
        with open(os.open(token, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write("bench catalog-bench-token-0123456789\n")
        log = open(os.path.join(tmp, "recd.log"), "a+")
        proc = subprocess.Popen([os.path.join(build, "server/recd"), "--bundle=" + bundle, "--bundle_root=" + tmp,
                                 "--listen=127.0.0.1:0", "--admin_listen=127.0.0.1:0",
                                 "--admin_grpc_listen=127.0.0.1:0", "--admin_token_file=" + token,
                                 "--catalog_log=" + os.path.join(tmp, "cl"), "--threads=2"],
                                stdout=log, stderr=subprocess.STDOUT)
        text = ""
        for _ in range(600):
            log.seek(0)
            text = log.read()
            if 'msg="serving"' in text or proc.poll() is not None:
                break
            time.sleep(0.1)
        port = re.search(r'msg="serving" port=(\d+)', text).group(1)
        admin = re.search(r"admin_grpc_port=(\d+)", text).group(1)
        md = [("authorization", "Bearer catalog-bench-token-0123456789")]
        cat = CG.CatalogStub(grpc.insecure_channel("127.0.0.1:" + admin))
        rk = RG.RankingStub(grpc.insecure_channel("127.0.0.1:" + port))
        with open(os.path.join(bundle, "items.tsv")) as f:
            rows = [line.split("\t") for line in f.read().splitlines()[1:]]
        ids, cats = [r[0] for r in rows], sorted({r[1] for r in rows})

        def recommend_ms():
            lat = []
            for i in range(200):
                t0 = time.perf_counter()
                rk.Recommend(R.RecommendRequest(user_id="U%05d" % (i % 1000), k=10), timeout=10)
                lat.append(time.perf_counter() - t0)
            lat.sort()
            return lat[100] * 1000, lat[198] * 1000

        def upsert_ms(n, new):
            t = []
            for r in range(10):
                items = [C.CatalogItem(item_id=("NEW-%d-%d" % (r, i)) if new else ids[(r * n + i) % len(ids)],
                                       in_stock=bool(i % 2), price=float(i % 50),
                                       **({"category": cats[i % len(cats)]} if new else {})) for i in range(n)]
                t0 = time.perf_counter()
                cat.Upsert(C.UpsertRequest(items=items), metadata=md, timeout=120)
                t.append(time.perf_counter() - t0)
            return statistics.median(t) * 1000

        print("catalog_bench: %d items, dim 32, 2 worker threads, %s" % (a.items, os.uname().machine))
        print("Recommend before any change: p50 %.2f ms p99 %.2f ms" % recommend_ms())
        print("Upsert 1 existing item: %.1f ms (median of 10)" % upsert_ms(1, False))
        print("Upsert 1000 existing items: %.1f ms" % upsert_ms(1000, False))
        print("Upsert 100 new items (1000 added in all): %.1f ms" % upsert_ms(100, True))
        print("Recommend with 1000 items added live: p50 %.2f ms p99 %.2f ms" % recommend_ms())
    finally:
        if proc and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
