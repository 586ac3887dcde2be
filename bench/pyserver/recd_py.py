#!/usr/bin/python3
"""bench/pyserver/recd_py.py - the Python alternative the benchmark compares
recd against: rec.v1.Ranking/Recommend and grpc.health.v1.Health/Check over
grpcio, serving one of recd's own bundles with recd's own pipeline written in
NumPy and FAISS (Debian python3-grpcio, python3-faiss, python3-numpy).

The pipeline is recd's with its default settings (server/recommend.c,
retrieval/retrieve.c, ranking/rank.c, ranking/config.c): the user tower,
nearest items from the bundle's FAISS index at the bundle's efSearch (and
nprobe), item-CF neighbours of the anchors and the user's recent items, EASE
weights summed over the user's purchases and the anchors, popularity lists,
the max-normalised blend, the hard and soft rules, MMR and the category cap,
widening rounds and page cursors. Every float step is done
in float32 in recd's order, so both servers return the same slates with the
same scores (compare_slates.py checks it). What it does not do is in
README.md.

Usage:
  /usr/bin/python3 bench/pyserver/recd_py.py --bundle DIR [--listen 127.0.0.1:0]
      [--workers 4] [--processes 1] [--proto DIR]

Prints one line "recd_py: serving port=N pids=P[,P...] bundle=VERSION ..." on
stdout once every process listens; stops on SIGINT or SIGTERM.
"""
import os

# One BLAS and OpenMP thread per process, as recd runs them: concurrency comes
# from the server's threads (and processes). Set before NumPy loads OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import ctypes  # noqa: E402
import ctypes.util  # noqa: E402
import importlib.util  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent import futures  # noqa: E402

import faiss  # noqa: E402
import grpc  # noqa: E402
import numpy as np  # noqa: E402

F32 = np.float32
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))

ANN, ITEM_CF, POPULARITY, EASE = 0, 1, 2, 3  # common/candidate.h; rec.v1.Source is this + 1
N_SOURCES = 4
SOURCE_NAMES = ("ann", "item_cf", "popularity", "ease")
SEGMENTS = ("small", "low", "average", "high")
ID_MAX = 128

# recd's limits (server/config.c, server/svc_ranking.c, server/convert.c).
MAX_K = 200
MAX_EXCLUDE = 1000
MAX_ANCHORS = 100
MAX_EXPLAIN = 100
MAX_CONTEXT_TEXT = 64
MAX_PAGES = 50
MAX_CATEGORIES = 64
EXACT_SHARE = 4  # ANN asked for more than 1/4 of the catalog scans it exactly
MAX_HISTORY = 1000  # EASE's seeds: at most this many (retrieval/retrieve.h RETRIEVE_MAX_HISTORY); also
# the most extra ANN candidates for the user's own items (recommend.c ANN_OWN_MAX)


class Config:
    """ranking/config.c's defaults, as the float32 values recd holds."""
    cand_ann, cand_itemcf, cand_popularity, cand_ease = 200, 200, 100, 200
    weight = np.array([0.2, 0.2, 0.1, 1.0], dtype=F32)  # ann, itemcf, popularity, ease
    normalization = "max"  # or "minmax", "rank"
    exclude_purchased = True
    repurchase_block = F32(0.5)
    repurchase_due = F32(1.0)
    repurchase_boost = F32(0.15)
    price_soft_ratio = F32(1.5)
    price_penalty = F32(0.8)
    price_cap_ratio = F32(2.0)
    upsell_factor = F32(0.1)
    upsell_price_weight = F32(0.2)
    mmr = True
    mmr_lambda = F32(0.7)
    mmr_pool = 200
    category_share = F32(0.5)


CFG = Config()


class RecError(Exception):
    """A request error: a gRPC status code and a message a developer can act on."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message):
    return RecError(grpc.StatusCode.INVALID_ARGUMENT, message)


# ---- stubs ----

def load_stubs(proto_dir):
    """rec.v1 and grpc.health.v1 message modules, generated from 'proto_dir'
    with grpc_tools.protoc into a temporary folder (removed once imported)."""
    out = tempfile.mkdtemp(prefix="recd_py_stubs.")
    try:
        protos = ["rec/v1/common.proto", "rec/v1/ranking.proto", "grpc/health/v1/health.proto"]
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", proto_dir, "--python_out", out] + protos,
                       check=True)
        sys.path.insert(0, out)
        try:
            from rec.v1 import ranking_pb2  # noqa: F401
        finally:
            sys.path.remove(out)
        # grpc/health/v1/health_pb2 would shadow grpcio's own 'grpc' package: load it by path.
        spec = importlib.util.spec_from_file_location("recd_py_health_pb2",
                                                      os.path.join(out, "grpc/health/v1/health_pb2.py"))
        health = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(health)
        return ranking_pb2, health
    finally:
        shutil.rmtree(out, ignore_errors=True)


# ---- float32 kernels in recd's summation order ----
#
# Identical slates need identical floats: normalisation and MMR turn the
# smallest difference between two near-equal scores into another order. NumPy's
# own reductions (pairwise sums, SIMD partial sums) add in other orders, so the
# dot products recd writes by hand are written here the same way, lane by lane.

def dot_ann(rows, q):
    """retrieval/ann_ef.cpp's inner product (recd's HNSW distance) of each row
    with q: eight partial sums, combined ((0+4)+(1+5))+((2+6)+(3+7)), then the
    tail."""
    prod = rows * q
    d = prod.shape[1]
    d8 = d - d % 8
    if d8 == 0:
        s = np.zeros(prod.shape[0], dtype=F32)
    else:
        acc = F32(0) + prod[:, 0:8]
        for c in range(8, d8, 8):
            acc += prod[:, c:c + 8]
        t = acc[:, :4] + acc[:, 4:]          # 0+4, 1+5, 2+6, 3+7
        u = t[:, 0::2] + t[:, 1::2]          # (0+4)+(1+5), (2+6)+(3+7)
        s = u[:, 0] + u[:, 1]
    for i in range(d8, d):
        s = s + prod[:, i]
    return s


class RankRows:
    """Rows laid out for ranking/rank.c's inner product (MMR likeness):
    eight partial sums, the tail into the first, combined
    ((0+1)+(2+3))+((4+5)+(6+7)). The rows are stored as (chunks, 8, rows) so
    that each partial sum is one contiguous add per chunk."""

    def __init__(self, rows):
        n, d = rows.shape
        self.d8 = d - d % 8
        self.body = np.ascontiguousarray(rows[:, :self.d8].reshape(n, self.d8 // 8, 8).transpose(1, 2, 0))
        self.tail = np.ascontiguousarray(rows[:, self.d8:].T)

    def dot(self, x):
        prod = self.body * x[:self.d8].reshape(-1, 8, 1)
        # Over the outermost axis NumPy adds whole planes in order, from 0:
        # each partial sum in recd's order (checked bit for bit; pairwise
        # summation only applies along the innermost axis).
        acc = np.add.reduce(prod, axis=0, initial=F32(0))
        for i in range(self.tail.shape[0]):
            acc[0] += self.tail[i] * x[self.d8 + i]
        t = acc[0::2] + acc[1::2]            # 0+1, 2+3, 4+5, 6+7
        u = t[0::2] + t[1::2]                # (0+1)+(2+3), (4+5)+(6+7)
        return u[0] + u[1]


class Blas:
    """The OpenBLAS calls recd makes, made the same way: NumPy's x @ W + b
    is the same sum in another order (OpenBLAS adds the bias first when it is
    given as y with beta 1, as recd's tower does), and NumPy has no snrm2.
    Also glibc's tanhf for tanh layers. Falls back to NumPy (close, not
    bit-identical) when no CBLAS library can be loaded."""

    ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

    def __init__(self):
        self.lib = None
        for name in ("libopenblas.so.0", ctypes.util.find_library("openblas"), "libblas.so.3"):
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name)
                lib.cblas_snrm2, lib.cblas_sgemv  # noqa: B018 - both must exist
            except (OSError, AttributeError):
                continue
            lib.cblas_snrm2.restype = ctypes.c_float
            lib.cblas_snrm2.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
            lib.cblas_sgemv.restype = None
            lib.cblas_sgemv.argtypes = [ctypes.c_int] * 4 + [ctypes.c_float, ctypes.c_void_p, ctypes.c_int,
                                                             ctypes.c_void_p, ctypes.c_int, ctypes.c_float,
                                                             ctypes.c_void_p, ctypes.c_int]
            self.lib = lib
            break
        libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        self.tanhf = libm.tanhf
        self.tanhf.restype = ctypes.c_float
        self.tanhf.argtypes = [ctypes.c_float]

    def layer(self, w, bias, x):
        """y = W^T x + b for W (in, out), row-major, as retrieval/tower.c."""
        if self.lib is None:
            return x @ w + bias
        y = bias.copy()
        self.lib.cblas_sgemv(self.ROW_MAJOR, self.TRANS, w.shape[0], w.shape[1], 1.0, w.ctypes.data, w.shape[1],
                             x.ctypes.data, 1, 1.0, y.ctypes.data, 1)
        return y

    def scan(self, emb, q):
        """Every row's inner product with q, as retrieval/retrieve.c's exact scan."""
        if self.lib is None:
            return emb @ q
        y = np.empty(emb.shape[0], dtype=F32)
        self.lib.cblas_sgemv(self.ROW_MAJOR, self.NO_TRANS, emb.shape[0], emb.shape[1], 1.0, emb.ctypes.data,
                             emb.shape[1], q.ctypes.data, 1, 0.0, y.ctypes.data, 1)
        return y

    def norm(self, v):
        if self.lib is None:
            return F32(np.sqrt(np.dot(v.astype(np.float64), v.astype(np.float64))))
        return F32(self.lib.cblas_snrm2(v.size, v.ctypes.data, 1))

    def tanh(self, v):
        return np.array([self.tanhf(float(x)) for x in v], dtype=F32)


BLAS = Blas()


# ---- the bundle ----

def read_table(path, header):
    """Data lines of a tab-separated file whose first line must be 'header'."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    first, _, rest = text.partition("\n")
    if first != header:
        raise ValueError("%s:1: header must be '%s'" % (path, header))
    return [line for line in rest.split("\n") if line]


def read_columns(path, header, n_cols):
    """The columns of a tab-separated file whose first line must be 'header'
    and every data line hold 'n_cols' fields: one split for the whole file,
    as ease.tsv runs to millions of lines."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    first, _, rest = text.partition("\n")
    if first != header:
        raise ValueError("%s:1: header must be '%s'" % (path, header))
    rest = rest.rstrip("\n")
    if "\n\n" in rest:
        rest = "\n".join(line for line in rest.split("\n") if line)
    n_rows = rest.count("\n") + 1 if rest else 0
    fields = rest.replace("\n", "\t").split("\t") if rest else []
    if len(fields) != n_rows * n_cols:
        raise ValueError("%s: want %d tab-separated fields a line" % (path, n_cols))
    return [fields[c::n_cols] for c in range(n_cols)], n_rows


def csr(keys, n_keys, *columns):
    """Groups 'columns' by 'keys' (0 .. n_keys-1), file order kept within a
    key: offsets, then each column reordered."""
    keys = np.asarray(keys, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    off = np.zeros(n_keys + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=n_keys), out=off[1:])
    return (off,) + tuple(np.asarray(c)[order] for c in columns)


class Bundle:
    """One bundle directory (docs/bundle.md), loaded read-only. Checksums are
    recd's job at its load; this loader trusts the files recd verified."""

    def __init__(self, path):
        self.path = path
        with open(os.path.join(path, "manifest.json")) as f:
            m = json.load(f)
        if m.get("format") != 1:
            raise ValueError("%s: manifest format must be 1" % path)
        self.manifest = m
        self.version = m["version"]
        self.dim = int(m["dim"])
        self._load_items(os.path.join(path, m["items"]))
        self.item_emb = np.ascontiguousarray(np.load(os.path.join(path, m["item_embeddings"])), dtype=F32)
        if self.item_emb.shape != (self.count, self.dim):
            raise ValueError("item embeddings are %s, want (%d, %d)" % (self.item_emb.shape, self.count, self.dim))
        self.user_row = {u: i for i, u in enumerate(read_table(os.path.join(path, m["users"]), "user_id"))}
        self.user_features = np.ascontiguousarray(np.load(os.path.join(path, m["user_features"])), dtype=F32)
        self.tower = []
        for layer in m["user_tower"]:
            w = np.ascontiguousarray(np.load(os.path.join(path, layer["weights"])), dtype=F32)
            b = np.ascontiguousarray(np.load(os.path.join(path, layer["bias"])), dtype=F32)
            self.tower.append((w, b, layer.get("activation", "linear")))
        self._load_index(m["index"])
        self._load_signals(m)

    def _load_items(self, path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        first, _, rest = text.partition("\n")
        cols = first.split("\t")
        if cols[:5] != ["item_id", "category", "price", "in_stock", "popularity"]:
            raise ValueError("%s:1: unexpected header" % path)
        rows = [line.split("\t") for line in rest.split("\n") if line]
        self.count = len(rows)
        self.ids = [r[0] for r in rows]
        self.item_row = {r[0]: i for i, r in enumerate(rows)}
        self.categories, self.category_row = [], {}
        cat = np.empty(self.count, dtype=np.int32)
        for i, r in enumerate(rows):  # category index = order of first appearance, as recd's catalog
            c = self.category_row.get(r[1])
            if c is None:
                c = self.category_row[r[1]] = len(self.categories)
                self.categories.append(r[1])
            cat[i] = c
        self.category = cat
        # Parsed to double, then rounded once to float32: the strtof value for
        # every number recctl writes (at most 9 significant digits).
        self.price = np.array([float(r[2]) for r in rows], dtype=np.float64).astype(F32)
        self.in_stock = np.array([r[3] == "1" for r in rows], dtype=bool)
        self.popularity = np.array([float(r[4]) for r in rows], dtype=np.float64).astype(F32)
        # Most popular first, ties by row (common/catalog.c).
        self.by_popularity = np.argsort(-self.popularity, kind="stable").astype(np.int64)
        # Each category's rows in row order and in popularity order (common/catalog.c's category index).
        n_cats = len(self.categories)
        by_cat = np.argsort(cat, kind="stable").astype(np.int64)
        bounds = np.searchsorted(cat[by_cat], np.arange(n_cats + 1))
        popular = self.by_popularity[np.argsort(cat[self.by_popularity], kind="stable")]
        self.cat_rows = [by_cat[bounds[c]:bounds[c + 1]] for c in range(n_cats)]
        self.cat_popular = [popular[bounds[c]:bounds[c + 1]] for c in range(n_cats)]

    def _load_index(self, spec):
        self.index = faiss.read_index(os.path.join(self.path, spec["file"]))
        if self.index.ntotal != self.count or self.index.d != self.dim:
            raise ValueError("index holds %d vectors of dim %d" % (self.index.ntotal, self.index.d))
        if self.index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError("index metric must be inner product")
        self.index_type = spec.get("type", "")
        inner = faiss.downcast_index(self.index)
        self.hnsw_flat_ip = False
        # recd scores an exact inner-product index with one sgemv over the
        # vectors, which are the item embeddings in row order.
        self.flat_ip = isinstance(inner, faiss.IndexFlat) and inner.metric_type == faiss.METRIC_INNER_PRODUCT
        if isinstance(inner, faiss.IndexHNSW):
            # recd sets the manifest's efSearch once at load and searches with it.
            inner.hnsw.efSearch = int(spec["ef_search"])
            storage = faiss.downcast_index(inner.storage)
            # recd searches such an index with its own inner product
            # (retrieval/ann_ef.cpp): rescored below in its summation order.
            self.hnsw_flat_ip = (isinstance(storage, faiss.IndexFlat)
                                 and storage.metric_type == faiss.METRIC_INNER_PRODUCT)
        self.ivf = None
        if isinstance(inner, faiss.IndexIVF):
            if "nprobe" in spec:
                inner.nprobe = int(spec["nprobe"])
            if isinstance(inner, faiss.IndexIVFFlat):
                self._load_ivf(inner)

    def _load_ivf(self, ivf):
        """An inverted file over flat inner-product lists, which recd searches
        itself (retrieval/ann_ef.cpp ivf_search): the centroids and every list's
        vectors and ids, copied out of FAISS into one array each."""
        cq = faiss.downcast_index(ivf.quantizer)
        if not isinstance(cq, faiss.IndexFlat) or cq.metric_type != faiss.METRIC_INNER_PRODUCT:
            return
        d, nlist, inv = ivf.d, ivf.nlist, ivf.invlists
        centroids = faiss.rev_swig_ptr(cq.get_xb(), nlist * d).copy().reshape(nlist, d)
        sizes = np.array([inv.list_size(lst) for lst in range(nlist)], dtype=np.int64)
        off = np.zeros(nlist + 1, dtype=np.int64)
        np.cumsum(sizes, out=off[1:])
        vecs = np.empty((int(off[-1]), d), dtype=F32)
        ids = np.empty(int(off[-1]), dtype=np.int64)
        for lst in range(nlist):
            n = int(sizes[lst])
            if not n:
                continue
            codes = inv.get_codes(lst)
            vecs[off[lst]:off[lst + 1]] = faiss.rev_swig_ptr(codes, n * d * 4).view(F32).reshape(n, d)
            inv.release_codes(lst, codes)
            lids = inv.get_ids(lst)
            ids[off[lst]:off[lst + 1]] = faiss.rev_swig_ptr(lids, n)
            inv.release_ids(lst, lids)
        self.ivf = (centroids, off, vecs, ids, max(1, min(int(ivf.nprobe), nlist)))

    def _load_pairs(self, m, key, header):
        """An item -> item table (item_cf.tsv, ease.tsv), as retrieval/signals.c
        load_pairs: (offsets, neighbours, float32 weights) by seed, file order
        kept within a seed, and whether some seed lists a neighbour twice
        (then its sums need np.add.at); None without the file."""
        if key not in m:
            return None
        (seeds, nbrs, weights), n_rows = read_columns(os.path.join(self.path, m[key]), header, 3)
        rows = self.item_row

        def row_of(item_id):
            r = rows.get(item_id)
            if r is None:
                raise ValueError("%s: unknown item '%s'" % (key, item_id))
            return r
        items = np.fromiter(map(row_of, seeds), dtype=np.int64, count=n_rows)
        nbr = np.fromiter(map(row_of, nbrs), dtype=np.int64, count=n_rows)
        # Parsed to double, then rounded to float32, as recd's (float)strtod.
        w = np.fromiter(map(float, weights), dtype=np.float64, count=n_rows).astype(F32)
        n = self.count
        off, nbr, w = csr(items, n, nbr, w)
        pair = np.repeat(np.arange(n), np.diff(off)) * n + nbr
        return off, nbr, w, np.unique(pair).size != pair.size

    def _load_signals(self, m):
        n = self.count
        self.cycle_days = np.zeros(n, dtype=F32)
        self.segment_pop = [None] * len(SEGMENTS)
        self.category_pop = None
        self.profile_row = {}
        self.mean_price = np.zeros(0, dtype=F32)
        self.segment = np.zeros(0, dtype=np.int64)
        self.recent_off = np.zeros(1, dtype=np.int64)
        self.recent = np.zeros(0, dtype=np.int64)
        self.purch_off = None

        def table(key, header):
            return read_table(os.path.join(self.path, m[key]), header) if key in m else None

        def row_of(item_id, path):
            r = self.item_row.get(item_id)
            if r is None:
                raise ValueError("%s: unknown item '%s'" % (path, item_id))
            return r

        self.cf_off = self.ease_off = None
        pairs = self._load_pairs(m, "item_cf", "item_id\tneighbour_id\tscore")
        if pairs is not None:
            self.cf_off, self.cf_nbr, self.cf_sim, self.cf_dups = pairs
        pairs = self._load_pairs(m, "ease", "item_id\tneighbour_id\tweight")
        if pairs is not None:
            self.ease_off, self.ease_nbr, self.ease_w, self.ease_dups = pairs
        self.ease_place_w = ease_place_weights(m.get("ease_recency"))

        lines = table("popularity", "list\titem_id\tscore")
        if lines is not None:
            lists = {}
            for line in lines:
                name, item_id, score = line.split("\t")
                if name == "global":
                    continue  # the catalog's own popularity order serves it
                if name.startswith("segment:") and name[8:] in SEGMENTS:
                    key = SEGMENTS.index(name[8:])
                elif name.startswith("category:") and name[9:] in self.category_row:
                    key = len(SEGMENTS) + self.category_row[name[9:]]
                else:
                    raise ValueError("popularity: unknown list '%s'" % name)
                lists.setdefault(key, ([], []))
                lists[key][0].append(row_of(item_id, "popularity"))
                lists[key][1].append(float(score))

            def as_list(key):
                items, scores = lists.get(key, ([], []))
                return np.array(items, dtype=np.int64), np.array(scores, dtype=np.float64).astype(F32)
            self.segment_pop = [as_list(s) for s in range(len(SEGMENTS))]
            self.category_pop = [as_list(len(SEGMENTS) + c) for c in range(len(self.categories))]

        lines = table("profiles", "user_id\tmean_price\tsegment\trecent_items")
        if lines is not None:
            mean, seg, off, recent = [], [], [0], []
            for line in lines:
                f = line.split("\t", 3)
                if len(f) < 4 or f[2] not in SEGMENTS:
                    raise ValueError("profiles: bad row '%s'" % line[:100])
                self.profile_row[f[0]] = len(mean)
                mean.append(float(f[1]))
                seg.append(SEGMENTS.index(f[2]))
                for col in f[3].split("\t"):
                    if not col:
                        continue
                    # Bundles written before ids could hold spaces put the list in one column.
                    legacy = col not in self.item_row and " " in col
                    for item_id in (col.split(" ") if legacy else [col]):
                        if item_id:
                            recent.append(row_of(item_id, "profiles"))
                off.append(len(recent))
            self.mean_price = np.array(mean, dtype=np.float64).astype(F32)
            self.segment = np.array(seg, dtype=np.int64)
            self.recent_off = np.array(off, dtype=np.int64)
            self.recent = np.array(recent, dtype=np.int64)

        lines = table("purchases", "user_id\titem_id\tlast_time\tcount")
        if lines is not None:
            prof, items, when = [], [], []
            for line in lines:
                u, item_id, t, _count = line.split("\t")
                if u not in self.profile_row:
                    raise ValueError("purchases: user has no profile: '%s'" % u)
                prof.append(self.profile_row[u])
                items.append(row_of(item_id, "purchases"))
                when.append(int(float(t)))
            prof = np.array(prof, dtype=np.int64)
            items = np.array(items, dtype=np.int64)
            order = np.lexsort((items, prof))  # by profile, then item (binary search per user)
            self.purch_off = np.zeros(len(self.mean_price) + 1, dtype=np.int64)
            np.cumsum(np.bincount(prof, minlength=len(self.mean_price)), out=self.purch_off[1:])
            self.purch_item = items[order]
            self.purch_time = np.array(when, dtype=np.int64)[order]

        lines = table("repurchase", "item_id\tcycle_days\tsamples")
        if lines is not None:
            for line in lines:
                item_id, days, _samples = line.split("\t")
                self.cycle_days[row_of(item_id, "repurchase")] = F32(float(days))
        self.has_cycles = bool(np.any(self.cycle_days > 0))


# ---- the pipeline ----

class Request:
    """One Recommend, in plain Python: what recd's rec_request and rank_req hold."""
    __slots__ = ("user_id", "k", "offset", "exclude", "include_cats", "exclude_cats", "has_price", "min_price",
                 "max_price", "anchors", "now", "mean_price", "segment", "purch_item", "purch_time", "recent",
                 "history", "known_user", "q")


def user_vector(b, row):
    """The user tower's output, L2-normalised (retrieval/tower.c); None when it
    has no direction."""
    x = b.user_features[row]
    for w, bias, act in b.tower:
        y = BLAS.layer(w, bias, x)
        if act == "relu":
            y = np.where(y > 0, y, F32(0))
        elif act == "tanh":
            y = BLAS.tanh(y)
        x = y
    x = np.ascontiguousarray(x, dtype=F32)
    norm = BLAS.norm(x)
    if not (norm > 0) or not np.isfinite(norm):
        return None
    return x * (F32(1) / norm)


def ann(b, q, want, cats=()):
    """Nearest items to q among those the include filter 'cats' allows:
    (items, scores, every such item considered). retrieval/retrieve.c: a
    filter whose items are no more than asked for, or whose count squared is
    at most want x catalog, has each of them scored exactly, the 'want' best
    kept (ties: the lower row); else the search asks for want x catalog /
    filter items and keeps the hits the filter allows."""
    total = b.count
    if not cats:
        return ann_search(b, q, want)
    cats = list(dict.fromkeys(cats))  # each once, in the order given
    n = sum(b.cat_rows[c].size for c in cats)
    if n <= want or n * n <= want * total:
        rows = np.concatenate([b.cat_rows[c] for c in cats])
        s = dot_ann(b.item_emb[rows], q)
        best = np.lexsort((rows, -s))[:want]
        return rows[best], s[best], n <= want
    if n < total:
        want = min(total, -(-want * total // n))
    items, scores, every = ann_search(b, q, want)
    keep = np.isin(b.category[items], cats)
    return items[keep], scores[keep], every


def ann_search(b, q, want):
    """Nearest items to q, as the index finds them: (items, scores, every item considered)."""
    total = b.count
    if want > total // EXACT_SHARE:
        return np.arange(total, dtype=np.int64), BLAS.scan(b.item_emb, q), True
    if b.ivf is not None:
        return ivf_search(b, q, want) + (False,)
    if b.flat_ip:  # retrieval/ann_ef.cpp: one sgemv, the k best (ties: the lower row)
        s = BLAS.scan(b.item_emb, q)
        best = np.argsort(-s, kind="stable")[:want]
        return best.astype(np.int64), s[best], False
    scores, labels = b.index.search(q.reshape(1, -1), want)
    labels = labels[0]
    n = int(np.count_nonzero(labels >= 0))  # FAISS pads short answers with -1
    items = labels[:n].astype(np.int64)
    scores = scores[0][:n]
    if b.hnsw_flat_ip:
        scores = dot_ann(b.item_emb[items], q)
    return items, scores, False


def ivf_search(b, q, k):
    """retrieval/ann_ef.cpp's inverted-file search: centroids scored with one
    sgemv, the nprobe best probed best first, their lists scored with sgemv,
    the k best kept (ties: the first scanned)."""
    centroids, off, vecs, ids, nprobe = b.ivf
    probe = np.argsort(-BLAS.scan(centroids, q), kind="stable")[:nprobe]
    hit_s, hit_i = [], []
    for lst in probe:
        lo, hi = off[lst], off[lst + 1]
        if hi > lo:
            hit_s.append(BLAS.scan(vecs[lo:hi], q))
            hit_i.append(ids[lo:hi])
    if not hit_s:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=F32)
    s = np.concatenate(hit_s)
    best = np.argsort(-s, kind="stable")[:k]
    return np.concatenate(hit_i)[best], s[best]


def itemcf(b, rq, want):
    """Neighbours of the anchors, then of the recent items, similarities summed
    per item in seed order, until 'want' items have item-CF evidence."""
    if b.cf_off is None:
        return None
    seeds = rq.anchors if rq.recent.size == 0 else (
        rq.recent if rq.anchors.size == 0 else np.concatenate((rq.anchors, rq.recent)))
    if seeds.size == 0:
        return None
    off = b.cf_off
    starts, ends = off[seeds], off[seeds + 1]
    sizes = ends - starts
    if not sizes.any():
        return None
    idx = np.repeat(ends - sizes.cumsum(), sizes) + np.arange(sizes.sum())  # every neighbour slot, seed by seed
    nbr = b.cf_nbr[idx]
    uniq, first, inv = np.unique(nbr, return_index=True, return_inverse=True)
    # Items with evidence once each seed is done; a seed runs while fewer than 'want' have it.
    seed_of = np.repeat(np.arange(seeds.size), sizes)
    have = np.cumsum(np.bincount(seed_of[first], minlength=seeds.size))
    done = np.flatnonzero(have >= want)
    used = seeds.size if done.size == 0 else int(done[0]) + 1
    n_slots = int(sizes[:used].sum())
    if n_slots < nbr.size:
        keep = np.unique(inv[:n_slots])
        remap = np.full(uniq.size, -1, dtype=np.int64)
        remap[keep] = np.arange(keep.size)
        uniq, inv = uniq[keep], remap[inv[:n_slots]]
    sim = b.cf_sim[idx[:n_slots]]
    acc = np.zeros(uniq.size, dtype=F32)
    if b.cf_dups:
        np.add.at(acc, inv, sim)  # in order, in float32
    else:
        # One add per seed: within a seed's list every item is distinct, so
        # each item's float32 sum runs in seed order, as recd's.
        pos = 0
        for size in sizes[:used]:
            if size:
                sl = slice(pos, pos + int(size))
                acc[inv[sl]] += sim[sl]
                pos += int(size)
    return uniq, acc


def ease_place_weights(r):
    """retrieval/signals.h sig_recency_weight for every place in a history,
    in float32 with glibc's own expf (NumPy's exp may differ in the last
    bit): 1 + boost * exp(-place / scale); all 1 without "ease_recency"."""
    w = np.ones(MAX_HISTORY, dtype=F32)
    if not r or not r.get("boost", 0) > 0:
        return w
    libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    libm.expf.restype = ctypes.c_float
    libm.expf.argtypes = [ctypes.c_float]
    boost, scale = F32(r["boost"]), F32(r["scale"])
    for pos in range(MAX_HISTORY):
        w[pos] = F32(1) + boost * F32(libm.expf(F32(-F32(pos) / scale)))
    return w


def history(b, rq):
    """EASE's seeds (server/recommend.c history()), at most MAX_HISTORY, each
    once, most recent first (the place weighs a seed): the anchors, then the
    user's purchases by recency (last time down, then item); empty when the
    bundle has no EASE table. recd also counts purchases and session items
    recorded since the bundle, which this server does not record."""
    if b.ease_off is None:
        return np.zeros(0, dtype=np.int64)
    h, seeds = [], set()
    for a in rq.anchors:  # in order, each once
        if len(h) < MAX_HISTORY and int(a) not in seeds:
            seeds.add(int(a))
            h.append(int(a))
    items = rq.purch_item
    if items.size > 1:
        items = items[np.lexsort((items, -rq.purch_time))]
    for i in items:
        if len(h) >= MAX_HISTORY:
            break
        if int(i) not in seeds:
            h.append(int(i))
    return np.array(h, dtype=np.int64)


def ease(b, rq, want):
    """retrieval/retrieve.c from_ease: every history item's EASE weights
    times its place's weight, summed per item in float32 in recd's order
    (history item by history item, each seed's row in file order); the
    'want' largest positive sums (ties: the lower row), the history's own
    items left out."""
    hist = rq.history
    if b.ease_off is None or hist.size == 0 or want <= 0:
        return None
    off, nbr, w = b.ease_off, b.ease_nbr, b.ease_w
    acc = np.zeros(b.count, dtype=F32)  # recd's first touch sets 0, then adds
    for place, h in enumerate(hist):
        lo, hi = off[h], off[h + 1]
        if hi == lo:
            continue
        row = b.ease_place_w[place] * w[lo:hi]  # float32 products, as recd's wi * w
        if b.ease_dups:
            np.add.at(acc, nbr[lo:hi], row)  # in order, in float32
        else:
            # A seed's row names each item once: one float32 add per item,
            # and the seeds in history order, as recd's loop.
            acc[nbr[lo:hi]] += row
    # recd sets the history's items to -inf before summing: no sum can lift
    # them above 0, and no other item's sum depends on theirs.
    acc[hist] = -np.inf
    items = np.flatnonzero((acc > 0) & (acc < np.inf))  # a sum beyond float proposes nothing
    scores = acc[items]
    if items.size > want:
        # select_best: the 'want' best by (score down, item up), a strict
        # order, so the set is the same whatever order recd's partial
        # selection leaves it in (and the merge's order does not matter:
        # see retrieve).
        best = np.lexsort((items, -scores))[:want]
        items, scores = items[best], scores[best]
    return items, scores


def take_new(items, scores, want, taken):
    """The first 'want' entries of a list whose item is not in 'taken' (a
    sorted array) nor earlier in the list."""
    if want <= 0 or items.size == 0:
        return items[:0], scores[:0]
    span = want + taken.size
    while True:
        head = items[:span]
        ok = ~np.isin(head, taken, assume_unique=False) if taken.size else np.ones(head.size, dtype=bool)
        sel = np.flatnonzero(ok)
        if sel.size:
            _, first = np.unique(head[sel], return_index=True)
            sel = sel[np.sort(first)]
        if sel.size >= want or span >= items.size:
            sel = sel[:want]
            return head[sel], scores[:span][sel]
        span *= 2


def popularity(b, rq, want):
    """The include filter's category lists, else the user's segment list, then
    the global order, until 'want' items: (items, scores, whole catalog)."""
    parts_i, parts_s = [], []
    taken = np.zeros(0, dtype=np.int64)  # sorted
    if b.category_pop is not None:
        lists = [b.category_pop[c] for c in rq.include_cats]
        if not rq.include_cats and 0 <= rq.segment < len(SEGMENTS):
            lists.append(b.segment_pop[rq.segment])
    else:  # no popularity.tsv: the filter's categories in the catalog's popularity order
        lists = [(b.cat_popular[c], b.popularity[b.cat_popular[c]]) for c in rq.include_cats]
    for items, scores in lists:
        i, s = take_new(items, scores, want - taken.size, taken)
        if i.size:
            parts_i.append(i)
            parts_s.append(s)
            taken = np.union1d(taken, i)
    m = want - taken.size
    if m > 0:  # the catalog's order has every item once: m more than 'taken' suffice
        head = b.by_popularity[:m + taken.size]
        if taken.size:
            head = head[~np.isin(head, taken)]
        head = head[:m]
        parts_i.append(head)
        parts_s.append(b.popularity[head])
    if not parts_i:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=F32), want >= b.count
    return np.concatenate(parts_i), np.concatenate(parts_s), want >= b.count


def retrieve(b, rq, want_ann, want_cf, want_pop, want_ease):
    """Every source's candidates, one row per item: (items, source bits, raw
    scores [n, N_SOURCES]), and whether every catalog item is among them.
    Rows are by item, where recd's follow the order the sources added them:
    nothing downstream depends on that order (max depends on none, rank
    normalisation gives ties one rank, the slate orders by score then item, MMR's ties go to the
    better of those), so neither does anything here."""
    parts = []
    exhausted = False
    if rq.q is not None:
        i, s, all_items = ann(b, rq.q, want_ann, rq.include_cats)
        parts.append((i, s, ANN))
        exhausted |= all_items
    cf = itemcf(b, rq, want_cf)
    if cf is not None:
        parts.append((cf[0], cf[1], ITEM_CF))
    e = ease(b, rq, want_ease)
    if e is not None:
        parts.append((e[0], e[1], EASE))
    i, s, all_items = popularity(b, rq, want_pop)
    parts.append((i, s, POPULARITY))
    exhausted |= all_items
    allitems = np.concatenate([p[0] for p in parts])
    uniq, inv = np.unique(allitems, return_inverse=True)
    src = np.zeros(uniq.size, dtype=np.int64)
    raw = np.zeros((uniq.size, N_SOURCES), dtype=F32)
    pos = 0
    for items, scores, s in parts:
        at = inv[pos:pos + items.size]
        src[at] |= 1 << s
        raw[at, s] = scores
        pos += items.size
    return uniq, src, raw, exhausted or uniq.size == b.count


def eligible(b, rq, items):
    """The hard rules (ranking/rank.c rank_ineligible_reason), per candidate."""
    ok = b.in_stock[items]
    if rq.exclude.size:
        ok &= ~np.isin(items, rq.exclude)
    cats = b.category[items]
    if rq.include_cats:
        ok &= np.isin(cats, rq.include_cats)
    if rq.exclude_cats:
        ok &= ~np.isin(cats, rq.exclude_cats)
    price = b.price[items]
    if rq.has_price:
        out = price < rq.min_price
        if rq.max_price > 0:
            out |= price > rq.max_price
        ok &= ~out
    if rq.mean_price > 0 and CFG.price_cap_ratio > 0:
        ok &= ~(price > CFG.price_cap_ratio * rq.mean_price)
    if rq.purch_item.size:
        since, cycle, bought = purchase_days(b, rq, items)
        ok &= ~(bought & (cycle > 0) & (since < np.float64(CFG.repurchase_block) * cycle))
        if CFG.exclude_purchased:
            ok &= ~(bought & (cycle == 0))
    return ok


def purchase_days(b, rq, items):
    """Per item: days since the user last bought it (double, as recd), its
    repurchase cycle, and whether it counts as bought (since >= 0)."""
    at = np.searchsorted(rq.purch_item, items)
    at_c = np.minimum(at, rq.purch_item.size - 1)
    found = rq.purch_item[at_c] == items
    since = (rq.now - rq.purch_time[at_c]).astype(np.float64) / 86400.0
    return since, b.cycle_days[items].astype(np.float64), found & (since >= 0)


def normalise(src, raw):
    """Per source over the eligible candidates (ranking/rank.c normalise):
    max, (x - lo) / (hi - lo) in float32 with lo at most 0 (x / hi when all
    are positive); min-max, the same with lo the least; 1 when all are equal;
    or rank, the best of m gets 1, the j-th (m - j) / m, ties sharing the
    better rank."""
    norm = np.zeros(raw.shape, dtype=F32)
    for s in range(N_SOURCES):
        idx = np.flatnonzero(src & (1 << s))
        m = idx.size
        if not m:
            continue
        vals = raw[idx, s]
        if CFG.normalization in ("max", "minmax"):
            lo, hi = vals.min(), vals.max()
            if CFG.normalization == "max":
                lo = min(lo, F32(0))
            norm[idx, s] = (vals - lo) / F32(hi - lo) if hi > lo else F32(1)
            continue
        order = np.argsort(-vals, kind="stable")
        sv = vals[order]
        first = np.arange(m)
        if m > 1:
            first[1:][sv[1:] == sv[:-1]] = 0
            first = np.maximum.accumulate(first)
        norm[idx[order], s] = (m - first).astype(F32) / F32(m)
    return norm


def blend_weights(present):
    w = np.array([CFG.weight[s] if present & (1 << s) else 0 for s in range(N_SOURCES)], dtype=F32)
    total = F32(0)
    for s in range(N_SOURCES):
        total = F32(total + w[s])
    n = bin(present).count("1")
    if total > 0:
        return w / total
    return np.array([F32(1) / F32(n) if present & (1 << s) else 0 for s in range(N_SOURCES)], dtype=F32)


def score(b, rq, items, src, norm, present):
    """The blend, then the soft rules (repurchase due, price penalty, upsell)."""
    w = blend_weights(present)
    blended = w[0] * norm[:, 0]  # recd adds each source's term to 0, in source order
    for s in range(1, N_SOURCES):
        blended = blended + w[s] * norm[:, s]
    sc = blended.copy()
    if rq.purch_item.size and b.has_cycles:
        since, cycle, bought = purchase_days(b, rq, items)
        due = bought & (cycle > 0) & (since >= np.float64(CFG.repurchase_due) * cycle)
        sc = np.where(due, sc * (F32(1) + CFG.repurchase_boost), sc)
    if rq.mean_price > 0:
        ratio = b.price[items] / rq.mean_price
        sc = np.where(ratio > CFG.price_soft_ratio, sc * CFG.price_penalty, sc)
        if CFG.upsell_factor > 0:
            f = F32(1) + CFG.upsell_factor * (F32(1) + CFG.upsell_price_weight * (ratio - F32(1)))
            sc = np.where(ratio > 1, sc * f, sc)
    # margin.weight is 0 by default; promotions and live items have no defaults.
    return blended, sc


class Slot:
    """A decided position: what the response reports for it."""
    __slots__ = ("item", "src", "raw", "norm", "score")

    def __init__(self, item, src, raw, norm, sc):
        self.item, self.src, self.raw, self.norm, self.score = item, src, raw, norm, sc


def desc_key(scores):
    """recd's slate order as a sortable key: score down (0 for -0), then item up."""
    s = np.where(scores == 0, F32(0), scores).astype(F32)
    u = s.view(np.uint32)
    u = np.where(u & np.uint32(0x80000000), ~u, u | np.uint32(0x80000000))
    return (~u).astype(np.uint64)


def cap_can_hold(b, rq, cap, page):
    if cap >= page:
        return True
    if rq.include_cats:
        cats = len(set(rq.include_cats) - set(rq.exclude_cats))
    else:
        cats = len(b.categories) - len({c for c in rq.exclude_cats if c < len(b.categories)})
    return cats * cap >= page


def pick_slate(b, rq, items, src, raw, norm, sc, top, prefix, k, page, phase, can_widen):
    """ranking/rank.c pick_slate without pins: positions len(prefix) .. k-1,
    each the pool's best MMR value that the category cap allows, else the best
    allowed item beyond the pool; the cap gives way only when it may."""
    n = items.size
    key = desc_key(sc) << np.uint64(32) | items.astype(np.uint64)
    order = np.argsort(key, kind="stable")
    ord_items = items[order]
    ord_cats = b.category[ord_items]
    ord_score = sc[order]
    emb = b.item_emb
    mmr = CFG.mmr
    lam, oml = CFG.mmr_lambda, F32(1) - CFG.mmr_lambda
    top = F32(top)
    cap = int(np.ceil(float(CFG.category_share) * page - 1e-6)) if CFG.category_share > 0 else 1 << 62
    give_way = not can_widen or not cap_can_hold(b, rq, cap, page)
    pool_cap = CFG.mmr_pool or 1
    taken = np.zeros(n, dtype=bool)        # by position in 'order'
    per_cat = np.zeros(len(b.categories), dtype=np.int64)
    page_items = []
    st = {"next": 0, "rest": 0}
    # The pool: positions in 'order' (ascending, so the first of equal MMR
    # values is the better rank, recd's tie rule), relevance, categories,
    # embeddings, likeness to the page, and which are still untaken.
    pool = {}

    def refill():
        nxt = st["next"]
        free = np.flatnonzero(~taken[nxt:])[:pool_cap] + nxt
        st["next"] = int(free[-1]) + 1 if free.size == pool_cap else n
        rows = RankRows(emb[ord_items[free]]) if mmr else None
        sim = np.full(free.size, -np.inf, dtype=F32)
        if mmr and page_items and free.size:
            for x in emb[np.array(page_items)]:
                d = rows.dot(x)
                sim = np.where(d > sim, d, sim)
        pool.update(j=free, rel=ord_score[free] / top if top > 0 else np.zeros(free.size, dtype=F32),
                    cat=ord_cats[free], rows=rows, sim=sim, alive=np.ones(free.size, dtype=bool), left=free.size)

    def shown(item):
        per_cat[b.category[item]] += 1
        page_items.append(item)
        if mmr and pool["left"]:
            s = pool["rows"].dot(emb[item])
            pool["sim"] = s if len(page_items) == 1 else np.where(s > pool["sim"], s, pool["sim"])

    def from_pool(anything):
        if not pool["left"]:
            return -1
        ok = pool["alive"] if anything else pool["alive"] & (per_cat[pool["cat"]] < cap)
        v = lam * pool["rel"] - oml * pool["sim"] if mmr and page_items else pool["rel"]
        v = np.where(ok, v, -np.inf)
        at = int(np.argmax(v))
        return at if ok[at] else -1

    def take_from_pool(at):
        j = int(pool["j"][at])
        pool["alive"][at] = False
        pool["left"] -= 1
        taken[j] = True
        if not pool["left"]:
            refill()
        return j

    def from_rest(anything):
        start = st["next"] if anything else max(st["rest"], st["next"])
        ok = ~taken[start:]
        if not anything:
            ok &= per_cat[ord_cats[start:]] < cap
        j = int(np.argmax(ok)) + start if ok.any() else n
        if not anything:
            st["rest"] = j
        return j

    def next_pick():
        at = from_pool(False)
        if at >= 0:
            return take_from_pool(at)
        j = from_rest(False)
        if j == n and give_way:
            at = from_pool(True)
            if at >= 0:
                return take_from_pool(at)
            j = from_rest(True)
        if j < n:
            taken[j] = True
        return j

    refill()
    slate = list(prefix)
    pos = len(slate)
    start = 0 if pos < phase else pos - (pos - phase) % page
    for x in slate[start:pos]:
        shown(x.item)
    while pos < k:
        if pos % page == phase:
            per_cat[:] = 0
            page_items.clear()
            st["rest"] = st["next"]
        j = next_pick()
        if j >= n:
            break
        i = order[j]
        x = Slot(int(items[i]), int(src[i]), raw[i], norm[i], sc[i])
        slate.append(x)
        pos += 1
        shown(x.item)
    return slate


def rank_slate(b, rq, cands, prefix, k, can_widen):
    """ranking/rank.c rank_slate: (slate, sources present)."""
    c_items, c_src, c_raw = cands
    present = int(np.bitwise_or.reduce(c_src)) if c_src.size else 0
    ok = eligible(b, rq, c_items)
    items, src, raw = c_items[ok], c_src[ok], c_raw[ok]
    norm = normalise(src, raw)
    _, sc = score(b, rq, items, src, norm, present)
    top = max(F32(0), sc.max()) if sc.size else F32(0)
    k = max(k, len(prefix))
    rest = np.ones(items.size, dtype=bool)
    if prefix:
        # Positions an earlier round decided stay; their scores come from these candidates.
        where = {x.item: i for i, x in enumerate(prefix)}
        prefix = list(prefix)
        for i in np.flatnonzero(np.isin(items, np.array(list(where), dtype=np.int64))):
            p = where[int(items[i])]
            prefix[p] = Slot(int(items[i]), int(src[i]), raw[i], norm[i], sc[i])
            rest[i] = False
    page = rq.k
    phase = rq.offset % page
    slate = pick_slate(b, rq, items[rest], src[rest], raw[rest], norm[rest], sc[rest], top, prefix, k, page, phase,
                       can_widen)
    return slate, present


def recommend(b, rq):
    """server/recommend.c's rounds: each ranks a wider candidate set after the
    positions the narrower ones decided, until the page (and one more item)
    is settled or every item has been considered."""
    need = rq.offset + rq.k
    depth = max(rq.k + 1, CFG.cand_ann // 4)
    # The user's own items come back from ANN too and the rules drop them:
    # recd asks for that many more (at most MAX_HISTORY), wider rounds x4.
    want_ann = max(CFG.cand_ann, 4 * depth) + min(rq.purch_item.size, MAX_HISTORY)
    want_cf = CFG.cand_itemcf
    want_pop = max(CFG.cand_popularity, 2 * depth)
    want_ease = CFG.cand_ease
    total = b.count
    slate, before, rnd = [], 0, 0
    while True:
        cands = retrieve(b, rq, want_ann, want_cf, want_pop, want_ease)
        n = cands[0].size
        final = cands[3] or (rnd > 0 and n == before)
        want = need + 1
        k = want if final or want < depth else depth
        slate, present = rank_slate(b, rq, cands[:3], slate, k, not final)
        if final or len(slate) > need:
            break
        rnd += 1
        before = n
        depth *= 4
        want_ann = total if want_ann > total // 4 else want_ann * 4
        want_cf *= 4
        want_ease *= 4
        want_pop = total if want_pop > total // 4 else want_pop * 4
    return slate, present


# ---- the service ----

def check_id(field, value):
    n = len(value.encode("utf-8"))
    if n == 0:
        raise invalid("%s is required (1 to %d bytes)" % (field, ID_MAX))
    if n > ID_MAX:
        raise invalid("%s is %d bytes; at most %d allowed" % (field, n, ID_MAX))
    if any(c in value for c in "\t\r\n"):
        raise invalid("%s contains a tab or line break; ids never do" % field)


def check_ids(field, ids, most):
    if len(ids) > most:
        raise invalid("%s has %d ids; at most %d allowed" % (field, len(ids), most))
    for i, v in enumerate(ids):
        check_id("%s[%d]" % (field, i), v)


def check_text(field, value, most):
    n = len(value.encode("utf-8"))
    if n > most:
        raise invalid("%s is %d bytes; at most %d allowed" % (field, n, most))


class Service:
    """rec.v1.Ranking/Recommend over one loaded bundle."""

    def __init__(self, bundle, pb):
        self.b = bundle
        self.pb = pb
        self.seq = itertools.count(1)

    def request(self, q):
        b = self.b
        check_id("user_id", q.user_id)
        if q.k < 1 or q.k > MAX_K:
            raise invalid("k must be between 1 and %d, got %d" % (MAX_K, q.k))
        check_ids("exclude_item_ids", q.exclude_item_ids, MAX_EXCLUDE)
        check_ids("anchor_item_ids", q.anchor_item_ids, MAX_ANCHORS)
        check_ids("explain_item_ids", q.explain_item_ids, MAX_EXPLAIN)
        check_text("request_id", q.request_id, ID_MAX)
        if q.HasField("context"):
            check_text("context.surface", q.context.surface, MAX_CONTEXT_TEXT)
            check_text("context.device", q.context.device, MAX_CONTEXT_TEXT)
            check_text("context.session_id", q.context.session_id, ID_MAX)
            if q.context.time_unix_ms < 0:
                raise invalid("context.time_unix_ms must be >= 0 (0: now)")
        if q.explain or len(q.explain_item_ids):
            raise RecError(grpc.StatusCode.UNIMPLEMENTED, "explain is not implemented by the Python server")
        rq = Request()
        rq.user_id = q.user_id
        rq.k = q.k
        rq.offset = self.cursor(q.page_cursor, q.k)
        # The time the rules hold at: the caller's (server/convert.c conv_rules), else now.
        when_ms = q.context.time_unix_ms if q.HasField("context") else 0
        rq.now = when_ms // 1000 if when_ms > 0 else int(time.time())
        rows = b.item_row
        ex = [rows[i] for i in q.exclude_item_ids if i in rows]
        rq.exclude = np.unique(np.array(ex, dtype=np.int64)) if ex else np.zeros(0, dtype=np.int64)
        rq.include_cats, rq.exclude_cats = [], []
        rq.has_price, rq.min_price, rq.max_price = False, F32(0), F32(0)
        if q.HasField("filters"):
            f = q.filters
            rq.include_cats = self.categories(f.include_categories, "include_categories")
            rq.exclude_cats = self.categories(f.exclude_categories, "exclude_categories")
            if f.HasField("price"):
                lo, hi = f.price.min_price, f.price.max_price
                if not (lo >= 0) or not (hi >= 0) or (hi > 0 and hi < lo):
                    raise invalid("filters.price: want 0 <= min_price <= max_price (max_price 0 = no upper bound), "
                                  "got [%g, %g]" % (lo, hi))
                rq.has_price, rq.min_price, rq.max_price = True, F32(lo), F32(hi)
        anchors = [rows[i] for i in q.anchor_item_ids if i in rows]
        rq.anchors = np.array(anchors, dtype=np.int64)
        # The user's profile: price, segment, purchases, recent items.
        p = b.profile_row.get(q.user_id)
        rq.mean_price, rq.segment = F32(0), -1
        rq.recent = np.zeros(0, dtype=np.int64)
        rq.purch_item = rq.purch_time = np.zeros(0, dtype=np.int64)
        if p is not None:
            rq.mean_price, rq.segment = b.mean_price[p], int(b.segment[p])
            rq.recent = b.recent[b.recent_off[p]:b.recent_off[p + 1]]
            if b.purch_off is not None:
                rq.purch_item = b.purch_item[b.purch_off[p]:b.purch_off[p + 1]]
                rq.purch_time = b.purch_time[b.purch_off[p]:b.purch_off[p + 1]]
        rq.history = history(b, rq)
        row = b.user_row.get(q.user_id)
        rq.known_user = row is not None
        rq.q = user_vector(b, row) if row is not None else None
        return rq

    def cursor(self, cur, k):
        if not cur:
            return 0
        digits, at, version = cur.partition("@")
        if not digits.isdigit() or not digits.isascii() or len(digits) > 9 or not at:
            raise invalid("page_cursor is malformed; pass back next_cursor unchanged")
        if version != self.b.version:
            raise invalid("page_cursor belongs to bundle %.128s, now serving %s; request the first page again"
                          % (version, self.b.version))
        off, deepest = int(digits), MAX_K * MAX_PAGES
        if off > deepest or off + k > deepest:
            raise invalid("page_cursor goes past the deepest page (%d items)" % deepest)
        return off

    def categories(self, names, field):
        if len(names) > MAX_CATEGORIES:
            raise invalid("filters.%s has %d entries; at most %d allowed" % (field, len(names), MAX_CATEGORIES))
        out = []
        for i, name in enumerate(names):
            c = self.b.category_row.get(name)
            if c is None:
                raise invalid("filters.%s[%d]: unknown category '%.128s'" % (field, i, name))
            out.append(c)
        return out

    def Recommend(self, q, context):
        try:
            rq = self.request(q)
        except RecError as e:
            context.abort(e.code, e.message)
        b, pb = self.b, self.pb
        slate, present = recommend(b, rq)
        need = rq.offset + rq.k
        page = slate[rq.offset:min(len(slate), need)]
        r = pb.RecommendResponse(bundle_version=b.version,
                                 request_id=q.request_id or "recd_py-%d" % next(self.seq),
                                 strategy=1 if rq.q is not None else 2)
        items = r.items
        for x in page:
            it = items.add(item_id=b.ids[x.item], score=float(x.score), category=b.categories[b.category[x.item]],
                           price=float(b.price[x.item]))
            for s in range(N_SOURCES):
                if x.src & (1 << s):
                    it.sources.add(source=s + 1, raw=float(x.raw[s]), normalized=float(x.norm[s]))
        if not rq.known_user:
            r.degraded_reasons.append("unknown_user")
        # A source is missing when it had something to go on and proposed
        # nothing (recommend.c note_degraded): ANN a user the bundle knows,
        # whether or not the tower gave a direction (rq.q); item-CF anchors or
        # recent items; EASE proposing nothing is an answer, never flagged.
        had_input = (rq.known_user, rq.anchors.size + rq.recent.size > 0, True, False)
        for s, name in enumerate(SOURCE_NAMES):
            if not present & (1 << s) and had_input[s] and CFG.weight[s] > 0:
                r.degraded_reasons.append("source_missing:" + name)
        if len(slate) < need:
            r.degraded_reasons.append("short_catalog")
        if len(slate) > need:
            r.next_cursor = "%d@%s" % (need, b.version)
        return r


def health_handler(health_pb2):
    known = {"", "grpc.health.v1.Health", "rec.v1.Ranking"}
    serving = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    def check(q, context):
        if q.service not in known:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service '%s'" % q.service)
        return serving
    return grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(
            check, request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString)})


def ranking_handler(svc, pb):
    def unimplemented(q, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "SimilarItems is not implemented by the Python server")
    return grpc.method_handlers_generic_handler("rec.v1.Ranking", {
        "Recommend": grpc.unary_unary_rpc_method_handler(
            svc.Recommend, request_deserializer=pb.RecommendRequest.FromString,
            response_serializer=pb.RecommendResponse.SerializeToString),
        "SimilarItems": grpc.unary_unary_rpc_method_handler(
            unimplemented, request_deserializer=pb.SimilarItemsRequest.FromString,
            response_serializer=pb.SimilarItemsResponse.SerializeToString)})


def serve(bundle, pb, health_pb2, addr, workers, reuseport, stop, ready):
    """One grpcio server until 'stop' is set; calls ready(port) once it listens."""
    faiss.omp_set_num_threads(1)
    svc = Service(bundle, pb)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                         handlers=[ranking_handler(svc, pb), health_handler(health_pb2)],
                         options=[("grpc.so_reuseport", 1 if reuseport else 0)])
    port = server.add_insecure_port(addr)
    if port == 0:
        raise SystemExit("recd_py: cannot listen on %s" % addr)
    server.start()
    ready(port)
    stop.wait()
    server.stop(grace=1).wait(5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True, help="bundle directory (docs/bundle.md)")
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT; port 0 picks a free one")
    ap.add_argument("--workers", type=int, default=4, help="handler threads per process")
    ap.add_argument("--processes", type=int, default=1,
                    help="server processes sharing the port (SO_REUSEPORT), each with --workers threads")
    ap.add_argument("--proto", default=DEFAULT_PROTO, help="proto folder (default: the repository's)")
    args = ap.parse_args()
    if args.workers < 1 or args.processes < 1:
        ap.error("--workers and --processes must be >= 1")

    pb, health_pb2 = load_stubs(args.proto)
    t0 = time.monotonic()
    bundle = Bundle(args.bundle)
    load_s = time.monotonic() - t0
    host, _, port = args.listen.rpartition(":")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def announce(port, pids):
        print("recd_py: serving port=%d pids=%s bundle=%s items=%d workers=%d processes=%d load_s=%.1f"
              % (port, ",".join(map(str, pids)), bundle.version, bundle.count, args.workers, args.processes,
                 load_s), flush=True)

    if args.processes == 1:
        serve(bundle, pb, health_pb2, args.listen, args.workers, False, stop, lambda p: announce(p, [os.getpid()]))
        return 0

    # Several processes: the port is reserved here (bound with SO_REUSEPORT,
    # never listening, so the kernel hands it no connection), then each child,
    # forked after the bundle is loaded (its arrays shared copy-on-write) and
    # before any gRPC object exists, binds its own server to it.
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    reserve = socket.socket(family, socket.SOCK_STREAM)
    reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reserve.bind((host.strip("[]"), int(port)))
    port = reserve.getsockname()[1]
    addr = "%s:%d" % (host, port)
    children = []
    r_fd, w_fd = os.pipe()
    for _ in range(args.processes):
        pid = os.fork()
        if pid == 0:
            os.close(r_fd)
            reserve.close()
            child_stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: child_stop.set())
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent relays a Ctrl-C as SIGTERM
            code = 0
            try:
                serve(bundle, pb, health_pb2, addr, args.workers, True, child_stop,
                      lambda p: os.write(w_fd, b"r"))
            except BaseException as e:  # noqa: B902 - report anything, then leave without the parent's atexit
                print("recd_py: child %d: %s" % (os.getpid(), e), file=sys.stderr, flush=True)
                code = 1
            os._exit(code)
        children.append(pid)
    os.close(w_fd)
    got = 0
    while got < args.processes:
        chunk = os.read(r_fd, args.processes)
        if not chunk:
            break
        got += len(chunk)
    os.close(r_fd)
    rc = 0
    if got < args.processes:
        print("recd_py: only %d of %d processes started" % (got, args.processes), file=sys.stderr)
        stop.set()
        rc = 1
    else:
        announce(port, children)
    while not stop.wait(0.5):
        if any(os.waitpid(pid, os.WNOHANG)[0] for pid in children):
            print("recd_py: a server process ended; stopping", file=sys.stderr)
            rc = 1
            break
    for pid in children:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for pid in children:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    reserve.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
