#!/usr/bin/python3
"""Checks of deploy/ (docs/operations.md, "Deploying"), each with the tool
Debian has for it, and each shown to bite on a broken copy:

- Prometheus: promtool check rules and test rules (every alert fires on
  series shaped as recd exports them, only after its "for", and a healthy
  pod raises none), check config; every metric and label value the rules
  and their tests use is one a running recd exports, read from its /metrics
  with the token Prometheus would send;
- systemd: systemd-analyze verify (silent), security --offline (exposure
  2.0 at most), both units sandboxed alike; ExecStart, expanded as systemd
  would (%i, %d, the environment file), starts recd;
- Kubernetes: every YAML document parsed (a key given twice is refused) and
  checked against a schema of the fields used, and the references between
  objects (selectors, named ports, ConfigMap keys, the HPA's and PDBs'
  targets, StatefulSets' services, the shards the ranking tier lists, the
  admin port in no Service); each tier's command line, its volumes laid out
  as the kubelet would and its init container run as written, starts recd;
- the Dockerfile: Debian bookworm stages, a numeric non-root user, a health
  check, no remote ADD, the builder's packages among deploy/setup.sh's, the
  runtime's covering every library the built binaries link; its CMD starts
  recd, and its HEALTHCHECK passes against it and fails once it stopped;
- the gateway: gateway.sh --check (haproxy -c) on the rendered template.

No network and no docker: recd runs on 127.0.0.1 with free ports, on a small
synthetic bundle. A missing tool fails the test, naming its Debian package.

Usage: /usr/bin/python3 tests/e2e/test_deploy.py --build BUILD_DIR [unittest args]
"""
import argparse
import codecs
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

try:
    import yaml
except ImportError:
    yaml = None

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(REPO, "deploy")
K8S = os.path.join(DEPLOY, "k8s")
PROM = os.path.join(DEPLOY, "prometheus")
SYSTEMD = os.path.join(DEPLOY, "systemd")
ARGS = None
TMP = None
TOKEN = "prometheus " + "5f" * 32          # an admin token file's line: NAME TOKEN

# recd settings holding paths, and those recd writes to.
PATH_SETTINGS = ("config", "bundle", "bundle_root", "admin_token_file", "ranking_config", "event_log",
                 "catalog_log", "experiments", "experiments_state", "tls_cert", "tls_key", "tls_client_ca",
                 "shard_tls_ca", "shard_tls_cert", "shard_tls_key")
WRITTEN_SETTINGS = ("event_log", "catalog_log", "experiments_state")
# Where every test recd listens, whatever its deployment says.
LOOPBACK = ["--listen=127.0.0.1:0", "--admin_listen=127.0.0.1:0", "--admin_grpc_listen=127.0.0.1:0",
            "--drain_grace_ms=0", "--threads=1"]
GRPC_STATUS = ("OK CANCELLED UNKNOWN INVALID_ARGUMENT DEADLINE_EXCEEDED NOT_FOUND ALREADY_EXISTS "
               "PERMISSION_DENIED RESOURCE_EXHAUSTED FAILED_PRECONDITION ABORTED OUT_OF_RANGE UNIMPLEMENTED "
               "INTERNAL UNAVAILABLE DATA_LOSS UNAUTHENTICATED").split()


# ---- tools and files ----

def need(tool, package):
    """The path of a program, or a failure that names its Debian package."""
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if not path:
        raise AssertionError("%s is missing: apt-get install %s (deploy/setup.sh installs it)" % (tool, package))
    return path


def need_yaml():
    if yaml is None:
        raise AssertionError("python3 cannot import yaml: apt-get install python3-yaml (deploy/setup.sh installs it)")


def sh(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)


def read(path):
    with open(path) as f:
        return f.read()


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def fresh(name):
    return tempfile.mkdtemp(prefix=name + ".", dir=TMP)


def binary(name):
    return os.path.join(ARGS.build, {"recd": "server/recd", "recctl": "tools/recctl"}[name])


def broken_copy(src_dir, files, old, new):
    """Copies 'files' of src_dir to a fresh directory, replacing 'old' with
    'new' once in the first; returns the directory."""
    d = fresh("broken")
    for i, f in enumerate(files):
        text = read(os.path.join(src_dir, f))
        if i == 0:
            assert old in text, "%s has no %r to break" % (f, old)
            text = text.replace(old, new, 1)
        write(os.path.join(d, f), text, os.stat(os.path.join(src_dir, f)).st_mode & 0o777)
    return d


# ---- YAML ----

def _strict_mapping(loader, node, deep=False):
    """PyYAML (and kubectl) keep the last of two equal keys in a mapping: a
    silent override. Refuse it."""
    seen = set()
    for k, _ in node.value:
        key = loader.construct_object(k, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, "key %r given twice" % (key,), k.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


def load_yaml(path):
    need_yaml()

    class Strict(yaml.SafeLoader):
        pass
    Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)
    with open(path) as f:
        return [d for d in yaml.load_all(f, Loader=Strict) if d is not None]


# ---- recd's settings ----

def parse_conf(text):
    """recd's --config format: 'name = value' lines, '#' comment lines."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            k, eq, v = line.partition("=")
            assert eq, "settings line %r is not name = value" % line
            out[k.strip()] = v.strip()
    return out


def flags(args):
    out = []
    for a in args:
        assert a.startswith("--") and "=" in a, "recd argument %r is not --name=value" % a
        k, _, v = a[2:].partition("=")
        out.append((k, v))
    return out


def settings(args):
    """The settings recd ends up with from these arguments: each --config
    file first, then the flags, as recd applies them."""
    s = {}
    for k, v in flags(args):
        if k == "config":
            s.update(parse_conf(read(v)))
    s.update((k, v) for k, v in flags(args) if k != "config")
    return s


def known_settings():
    r = sh([binary("recd"), "--help"])
    names = set(re.findall(r"^\s+--(\w+)", r.stdout, re.M))
    assert len(names) > 30, "recd --help listed %d settings:\n%s" % (len(names), r.stdout + r.stderr)
    return names | {"config"}


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def is_loopback(addr):
    return addr.startswith("127.") or addr.startswith("[::1]") or addr.startswith("localhost:")


class Layout:
    """A fake file system root: deployment paths (mount points, /etc/recd,
    ...) are moved under it, in command lines and in the files copied in."""

    def __init__(self, name):
        self.root = fresh(name)
        self.mounts = {}          # deployment path -> writable

    def add(self, path, writable):
        self.mounts[path] = writable
        os.makedirs(self.root + path, exist_ok=True)
        return self.root + path

    def map(self, text):
        for mp in sorted(self.mounts, key=len, reverse=True):
            text = re.sub(r"(?<![\w./-])" + re.escape(mp) + r"(?=/|\s|$|,|\")", lambda m: self.root + mp, text)
        return text

    def mount_of(self, path):
        """The deployment mount holding a mapped path, or None."""
        for mp in sorted(self.mounts, key=len, reverse=True):
            if path == self.root + mp or path.startswith(self.root + mp + "/"):
                return mp
        return None


def check_paths(test, where, layout, s):
    """Every path setting lies on a volume, and what recd writes on a
    writable one."""
    for k in PATH_SETTINGS:
        if s.get(k):
            test.assertIsNotNone(layout.mount_of(s[k]), "%s: %s = %s is on no volume (%s)"
                                 % (where, k, s[k], ", ".join(sorted(layout.mounts))))
    for k in WRITTEN_SETTINGS:
        if s.get(k):
            test.assertTrue(layout.mounts[layout.mount_of(s[k])], "%s: recd writes %s = %s, on a read-only volume"
                            % (where, k, s[k]))


# ---- bundles ----

SYNTH = None


def synth_bundle():
    global SYNTH
    if SYNTH is None:
        SYNTH = os.path.join(TMP, "synth")
        r = sh([binary("recctl"), "synth", "--out", SYNTH, "--items", "300", "--users", "50"])
        assert r.returncode == 0, r.stderr
    return SYNTH


def publish(root, name, shards_dir, n):
    """Lays out root as deploy/ expects it: the whole bundle at root/NAME and
    shard I of N at root/SHARDS_DIR/shard-I-of-N (`recctl shard`)."""
    full = os.path.join(root, name)
    if not os.path.exists(full):
        shutil.copytree(synth_bundle(), full)
    if not n:
        return
    out = os.path.join(root, shards_dir)
    r = sh([binary("recctl"), "shard", "--bundle", full, "--shards", str(n), "--out", out])
    assert r.returncode == 0, r.stderr


# ---- a running recd ----

class Recd:
    """recd started from a deployment's command line with its listeners
    moved to free loopback ports (LOOPBACK); waits until it serves."""

    def __init__(self, args, extra=()):
        self.log = os.path.join(TMP, "recd-%d.log" % time.monotonic_ns())
        self.argv = [binary("recd")] + list(args) + LOOPBACK + list(extra)
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.proc.poll() is None:
            text = read(self.log)
            m = re.search(r'msg="listening" .*?port=(\d+) .*?admin_port=(\d+)', text)
            if m and 'msg="serving"' in text:
                self.port, self.admin_port = int(m.group(1)), int(m.group(2))
                return
            time.sleep(0.05)
        self.stop()
        raise AssertionError("recd did not serve:\n%s\n%s" % (" ".join(self.argv), read(self.log)))

    def get(self, path, token=None):
        """(HTTP status, body) of the admin port."""
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.admin_port, path))
        if token:
            req.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stop(self):
        """SIGTERM; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def serve_and_stop(test, args, extra=()):
    """Starts recd, waits until it serves, checks it drains to exit 0 on SIGTERM."""
    d = Recd(args, extra)
    test.assertEqual(d.stop(), 0, "recd did not stop cleanly:\n" + read(d.log))


# ---- Kubernetes ----

KINDS = {  # kind -> apiVersion, and the fields every object of the kind must have (dotted paths)
    "Namespace": ("v1", []),
    "ConfigMap": ("v1", ["data"]),
    "PersistentVolumeClaim": ("v1", ["spec.accessModes", "spec.resources.requests.storage"]),
    "Service": ("v1", ["spec.selector", "spec.ports"]),
    "Deployment": ("apps/v1", ["spec.selector.matchLabels", "spec.template.metadata.labels",
                               "spec.template.spec.containers"]),
    "StatefulSet": ("apps/v1", ["spec.serviceName", "spec.replicas", "spec.selector.matchLabels",
                                "spec.template.metadata.labels", "spec.template.spec.containers"]),
    "HorizontalPodAutoscaler": ("autoscaling/v2", ["spec.scaleTargetRef", "spec.minReplicas",
                                                   "spec.maxReplicas", "spec.metrics"]),
    "PodDisruptionBudget": ("policy/v1", ["spec.selector.matchLabels"]),
    "NetworkPolicy": ("networking.k8s.io/v1", ["spec.podSelector", "spec.policyTypes", "spec.ingress"]),
}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
PORT_NAME = re.compile(r"^(?=.{1,15}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def dig(obj, dotted):
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def quantity(q):
    """A Kubernetes quantity ("2", "100m", "4Gi") as a number."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(q))
    assert m, "not a quantity: %r" % q
    scale = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40}[m.group(2)]
    return float(m.group(1)) * scale


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class K8s:
    """The manifests of a directory (deploy/k8s unless told)."""

    def __init__(self, d=None):
        self.dir = d or K8S
        self.files = sorted(f for f in glob.glob(os.path.join(self.dir, "*.yaml"))
                            if not f.endswith("kustomization.yaml"))
        self.objects = [(os.path.basename(f), o) for f in self.files for o in load_yaml(f)]
        self.kustomization = load_yaml(os.path.join(self.dir, "kustomization.yaml"))[0]

    def of(self, kind):
        return [o for _, o in self.objects if o.get("kind") == kind]

    def get(self, kind, name):
        found = [o for o in self.of(kind) if o["metadata"]["name"] == name]
        return found[0] if len(found) == 1 else None

    def workloads(self):
        return self.of("Deployment") + self.of("StatefulSet")

    def pods_selected(self, selector):
        return [w for w in self.workloads() if selects(selector, w["spec"]["template"]["metadata"]["labels"])]

    def configmap_key(self, name, key):
        cm = self.get("ConfigMap", name)
        return None if cm is None else cm["data"].get(key)

    def recd(self, workload):
        return [c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == "recd"][0]

    def env(self, container):
        out = {}
        for e in container.get("env", []):
            if "value" in e:
                out[e["name"]] = e["value"]
            else:
                ref = e["valueFrom"]["configMapKeyRef"]
                out[e["name"]] = self.configmap_key(ref["name"], ref["key"])
        return out

    def args(self, workload):
        """recd's arguments, $(VAR) expanded from the container's env."""
        c = self.recd(workload)
        env = self.env(c)
        return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in c["args"]]

    def pod(self, workload, bundles):
        """Lays out the pod's volumes as the kubelet would (ConfigMap items as
        files, the Secret with a test token, emptyDirs, the bundle volume with
        bundles published as deploy/k8s/README.md says), runs its init
        containers' commands, and returns (layout, recd's mapped arguments)."""
        spec = workload["spec"]["template"]["spec"]
        layout = Layout(workload["metadata"]["name"])
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = [m for c in spec.get("initContainers", []) + spec["containers"] for m in c.get("volumeMounts", [])]
        for m in mounts:
            layout.add(m["mountPath"], False)
        for m in mounts:
            self._fill(volumes[m["name"]], layout, m["mountPath"], bundles)
        for c in spec.get("initContainers", []):
            r = sh([layout.map(a) for a in c["command"] + c.get("args", [])])
            assert r.returncode == 0, "init container %s: %s" % (c["name"], r.stderr)
        # From here on, only what recd's container mounts, as it mounts it.
        layout.mounts = {m["mountPath"]: not m.get("readOnly") and "emptyDir" in volumes[m["name"]]
                         for m in self.recd(workload).get("volumeMounts", [])}
        return layout, [layout.map(a) for a in self.args(workload)]

    def _fill(self, volume, layout, mount_path, bundles):
        d = layout.root + mount_path
        if "configMap" in volume:
            for item in volume["configMap"]["items"]:
                text = self.configmap_key(volume["configMap"]["name"], item["key"])
                write(os.path.join(d, item["path"]), layout.map(text))
        elif "secret" in volume:
            write(os.path.join(d, "admin.tokens"), TOKEN + "\n", volume["secret"].get("defaultMode", 0o644))
        elif "persistentVolumeClaim" in volume and not os.listdir(d):
            bundles(d)


class K8sSchemaTest(unittest.TestCase):
    """The manifests' fields, and the references between them."""

    @classmethod
    def setUpClass(cls):
        cls.k = K8s()
        cls.known = known_settings()

    def test_kinds_and_metadata(self):
        names = set()
        for f, o in self.k.objects:
            kind = o.get("kind")
            self.assertIn(kind, KINDS, "%s: kind %r" % (f, kind))
            self.assertEqual(o.get("apiVersion"), KINDS[kind][0], "%s: %s apiVersion" % (f, kind))
            md = o.get("metadata", {})
            self.assertRegex(md.get("name", ""), DNS_LABEL, "%s: %s name" % (f, kind))
            self.assertNotIn((kind, md["name"]), names, "%s: %s %s twice" % (f, kind, md["name"]))
            names.add((kind, md["name"]))
            if kind != "Namespace":
                self.assertEqual(md.get("namespace"), "recd", "%s: %s %s namespace" % (f, kind, md["name"]))
            self.assertEqual(md.get("labels", {}).get("app.kubernetes.io/name"), "recd",
                             "%s: %s label" % (f, md["name"]))
            for field in KINDS[kind][1]:
                self.assertIsNotNone(dig(o, field), "%s: %s %s has no %s" % (f, kind, md["name"], field))

    def test_kustomization_lists_every_file(self):
        self.assertEqual(self.k.kustomization.get("kind"), "Kustomization")
        self.assertEqual(sorted(self.k.kustomization["resources"]), sorted(os.path.basename(f) for f in self.k.files))
        specs = [w["spec"]["template"]["spec"] for w in self.k.workloads()]
        images = {c["image"].split(":")[0]
                  for spec in specs for c in spec["containers"] + spec.get("initContainers", [])}
        self.assertEqual(images, {i["name"] for i in self.k.kustomization["images"]})

    def test_workload_pods(self):
        self.check_pods(self.k)

    def check_pods(self, k):
        for w in k.workloads():
            name, tpl = w["metadata"]["name"], w["spec"]["template"]
            self.assertTrue(selects(w["spec"]["selector"]["matchLabels"], tpl["metadata"]["labels"]), name)
            spec = tpl["spec"]
            sc = spec["securityContext"]
            self.assertTrue(sc["runAsNonRoot"], name)
            self.assertGreater(sc["runAsUser"], 0, name)
            self.assertNotIn("fsGroup", sc, "%s: fsGroup makes the Secret's files group-readable, and recd "
                                            "refuses a token file others can read" % name)
            self.assertFalse(spec.get("hostNetwork"), name)
            self.assertGreaterEqual(spec["terminationGracePeriodSeconds"], 15, name)
            volumes = {v["name"]: v for v in spec["volumes"]}
            for c in spec.get("initContainers", []) + spec["containers"]:
                self._container(k, name, c, volumes)
            for v in volumes.values():
                self._volume(k, name, v)

    def _volume(self, k, name, v):
        if "configMap" in v:
            cm = v["configMap"]["name"]
            for item in v["configMap"]["items"]:
                self.assertIsNotNone(k.configmap_key(cm, item["key"]),
                                     "%s: ConfigMap %s has no key %s" % (name, cm, item["key"]))
        if "persistentVolumeClaim" in v:
            pvc = v["persistentVolumeClaim"]
            self.assertIsNotNone(k.get("PersistentVolumeClaim", pvc["claimName"]), name)
            self.assertTrue(pvc.get("readOnly"), "%s: bundles are mounted read-only" % name)
        if "secret" in v:
            self.assertIn(v["secret"]["secretName"], read(os.path.join(k.dir, "README.md")),
                          "%s: the README must say how to create Secret %s" % (name, v["secret"]["secretName"]))

    def _container(self, k, name, c, volumes):
        where = "%s/%s" % (name, c["name"])
        self.assertTrue(c["image"], where)
        sc = c["securityContext"]
        self.assertIs(sc["allowPrivilegeEscalation"], False, where)
        self.assertIs(sc["readOnlyRootFilesystem"], True, where)
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"], where)
        res = c["resources"]
        for r in ("cpu", "memory"):
            self.assertLessEqual(quantity(res["requests"][r]), quantity(res["limits"][r]), "%s: %s" % (where, r))
        for m in c.get("volumeMounts", []):
            self.assertIn(m["name"], volumes, where)
        for p in c.get("ports", []):
            self.assertRegex(p.get("name", ""), PORT_NAME, "%s: every port is named" % where)
            self.assertNotIn("hostPort", p, where)
        for e in c.get("env", []):
            ref = dig(e, "valueFrom.configMapKeyRef")
            if ref:
                self.assertIsNotNone(k.configmap_key(ref["name"], ref["key"]), "%s: env %s: no key %s in "
                                     "ConfigMap %s" % (where, e["name"], ref["key"], ref["name"]))
        if c["name"] == "recd":
            self._recd_container(where, c)

    def _recd_container(self, where, c):
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        self.assertEqual(set(ports), {"grpc", "admin-http"}, where)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            self.assertEqual(c[probe].get("grpc"), {"port": ports["grpc"]},
                             "%s: %s is a gRPC health probe on the serving port" % (where, probe))
        for k, _ in flags(c["args"]):
            self.assertIn(k, self.known, "%s: recd has no setting --%s" % (where, k))

    def test_recd_settings_match_the_ports(self):
        for w in self.k.workloads():
            where, c = w["metadata"]["name"], self.k.recd(w)
            layout, args = self.k.pod(w, lambda d: None)
            s = settings(args)
            self.assertEqual(set(s) - self.known, set(), "%s: settings recd does not have" % where)
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            self.assertEqual(port_of(s["listen"]), ports["grpc"], where)
            self.assertEqual(port_of(s["admin_listen"]), ports["admin-http"], where)
            self.assertFalse(is_loopback(s["listen"]) or is_loopback(s["admin_listen"]),
                             "%s: the serving and metrics ports must reach the pod network" % where)
            self.assertTrue(is_loopback(s["admin_grpc_listen"]), "%s: the admin gRPC port stays in the pod" % where)
            self.assertTrue(s.get("admin_token_file"), "%s: off loopback recd needs the token file" % where)
            limit = quantity(c["resources"]["limits"]["cpu"])
            self.assertEqual(int(s["threads"]), limit, "%s: threads = the CPU limit" % where)
            check_paths(self, where, layout, s)

    def test_services(self):
        for svc in self.k.of("Service"):
            name = svc["metadata"]["name"]
            self.assertIn(svc["spec"].get("type", "ClusterIP"), ("ClusterIP",), name)
            pods = self.k.pods_selected(svc["spec"]["selector"])
            self.assertTrue(pods, "%s selects no pods" % name)
            for p in svc["spec"]["ports"]:
                self.assertNotIn(p["targetPort"], ("admin-http", 9464), "%s exposes the admin port" % name)
                self.assertNotEqual(p["port"], 9464, name)
                for w in pods:
                    named = {q["name"] for q in self.k.recd(w)["ports"]}
                    self.assertIn(p["targetPort"], named,
                                  "%s: %s has no port %s" % (name, w["metadata"]["name"], p["targetPort"]))

    def test_statefulsets_have_their_headless_service(self):
        for s in self.k.of("StatefulSet"):
            svc = self.k.get("Service", s["spec"]["serviceName"])
            self.assertIsNotNone(svc, s["metadata"]["name"])
            self.assertEqual(svc["spec"].get("clusterIP"), "None",
                             "%s: a StatefulSet's service is headless" % svc["metadata"]["name"])
            self.assertTrue(selects(svc["spec"]["selector"], s["spec"]["template"]["metadata"]["labels"]))

    def test_hpa_and_pdbs(self):
        hpas = self.k.of("HorizontalPodAutoscaler")
        self.assertEqual(len(hpas), 1)
        ref = hpas[0]["spec"]["scaleTargetRef"]
        self.assertEqual((ref["apiVersion"], ref["kind"]), ("apps/v1", "Deployment"))
        ranking = self.k.get("Deployment", ref["name"])
        self.assertIsNotNone(ranking, "the HPA scales %s, which does not exist" % ref["name"])
        self.assertEqual(ranking["metadata"]["labels"]["app.kubernetes.io/component"], "ranking")
        self.assertNotIn("replicas", ranking["spec"], "the HPA owns the count; kubectl apply would reset it")
        self.assertLessEqual(2, hpas[0]["spec"]["minReplicas"])
        self.assertLessEqual(hpas[0]["spec"]["minReplicas"], hpas[0]["spec"]["maxReplicas"])
        self.assertEqual([m["resource"]["name"] for m in hpas[0]["spec"]["metrics"]], ["cpu"])
        covered = []
        for pdb in self.k.of("PodDisruptionBudget"):
            pods = self.k.pods_selected(pdb["spec"]["selector"]["matchLabels"])
            self.assertEqual(len(pods), 1, "%s must cover one workload's pods, not %s"
                             % (pdb["metadata"]["name"], [w["metadata"]["name"] for w in pods]))
            self.assertGreaterEqual(pdb["spec"].get("maxUnavailable", 0), 1,
                                    "%s would block every drain" % pdb["metadata"]["name"])
            covered.append(pods[0]["metadata"]["name"])
        self.assertEqual(sorted(covered), sorted(w["metadata"]["name"] for w in self.k.workloads()))

    def test_shards(self):
        """One StatefulSet per shard, 0..N-1, each with its Service, bundle
        and shard flag; the ranking tier lists each shard's Service once."""
        shards = {}
        for s in self.k.of("StatefulSet"):
            a = dict(flags(self.k.args(s)))
            i, n = map(int, a["shard"].split("/"))
            self.assertNotIn(i, shards, "shard %d twice" % i)
            self.assertTrue(a["bundle"].endswith("/shard-%d-of-%d" % (i, n)), a["bundle"])
            self.assertEqual(s["spec"]["template"]["metadata"]["labels"]["shard"], str(i))
            shards[i] = (n, s)
        n = len(shards)
        self.assertGreaterEqual(n, 2)
        self.assertEqual(sorted(shards), list(range(n)))
        self.assertEqual({v[0] for v in shards.values()}, {n}, "every shard says the same N")
        ranking = self.k.get("Deployment", "recd-ranking")
        _, args = self.k.pod(ranking, lambda d: None)
        s = settings(args)
        self.assertEqual(s["role"], "ranking")
        listed = []
        for target in s["retrieval"].split(","):
            host, port = target.rsplit(":", 1)
            svc = self.k.get("Service", host)
            self.assertIsNotNone(svc, "retrieval lists %s, which is no Service" % host)
            self.assertIn(int(port), [p["port"] for p in svc["spec"]["ports"]], target)
            pods = self.k.pods_selected(svc["spec"]["selector"])
            self.assertEqual(len(pods), 1, "%s must reach one shard" % host)
            listed.append(int(pods[0]["spec"]["template"]["metadata"]["labels"]["shard"]))
        self.assertEqual(sorted(listed), list(range(n)), "the ranking tier must list every shard once")

    def test_network_policies(self):
        for np in self.k.of("NetworkPolicy"):
            pods = self.k.pods_selected(np["spec"]["podSelector"]["matchLabels"])
            self.assertTrue(pods, np["metadata"]["name"])
            for rule in np["spec"]["ingress"]:
                for p in rule["ports"]:
                    for w in pods:
                        self.assertIn(p["port"], {q["name"] for q in self.k.recd(w)["ports"]}, np["metadata"]["name"])

    def test_duplicate_keys_are_refused(self):
        d = broken_copy(K8S, ["ranking.yaml"], "      maxSurge: 1\n", "      maxSurge: 1\n      maxSurge: 2\n")
        with self.assertRaisesRegex(yaml.constructor.ConstructorError, "given twice"):
            load_yaml(os.path.join(d, "ranking.yaml"))

    def test_schema_bites(self):
        """A probe that is not gRPC, an unknown flag, a missing ConfigMap key:
        each is caught."""
        for old, new in (("startupProbe:\n            grpc:", "startupProbe:\n            tcpSocket:"),
                         ("--config=/etc/recd/ranking.conf", "--configfile=/etc/recd/ranking.conf"),
                         ("{key: rank.conf, path: rank.conf}", "{key: ranks.conf, path: rank.conf}")):
            d = broken_copy(K8S, ["ranking.yaml", "README.md", "kustomization.yaml"]
                            + [os.path.basename(f) for f in self.k.files if not f.endswith("ranking.yaml")], old, new)
            with self.assertRaises(AssertionError, msg="%r not caught" % new):
                self.check_pods(K8s(d))


class K8sRunTest(unittest.TestCase):
    """Each tier's command line, as its pod would run it, starts recd."""

    @classmethod
    def setUpClass(cls):
        cls.k = K8s()
        cls.shards = len(cls.k.of("StatefulSet"))
        cls.name = cls.k.configmap_key("recd-settings", "bundle")

    def bundles(self, d):
        publish(d, self.name, self.name + "-shards", self.shards)

    def test_every_tier_serves(self):
        """Off loopback recd asks for the admin token on every route; here it
        listens on loopback, so it is told to (--admin_http_auth=token)."""
        for w in self.k.workloads():
            with self.subTest(w["metadata"]["name"]):
                layout, args = self.k.pod(w, self.bundles)
                s = settings(args)
                check_paths(self, w["metadata"]["name"], layout, s)  # before recd may write outside TMP
                self.assertEqual(os.stat(s["admin_token_file"]).st_mode & 0o777, 0o600, "the init container's copy")
                serve_and_stop(self, args, ["--admin_http_auth=token"])

    def test_a_token_file_others_can_read_is_refused(self):
        """Why the init container exists: the Secret's own file (0444) stops recd."""
        w = self.k.get("Deployment", "recd-ranking")
        layout, args = self.k.pod(w, self.bundles)
        init = w["spec"]["template"]["spec"]["initContainers"][0]
        secret = [layout.root + m["mountPath"] for m in init["volumeMounts"] if "secret" in m["mountPath"]][0]
        r = sh([binary("recd")] + args + LOOPBACK + ["--admin_token_file=%s/admin.tokens" % secret])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("readable by group or others", r.stderr)


# ---- Prometheus ----

TARGET_LABELS = {"job", "instance"}     # Prometheus' own; prometheus.yml adds the rest


def exposition(text):
    """{metric name: [labels dict]} of Prometheus text."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? \S+$", line)
            assert m, "not a sample line: %r" % line
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out.setdefault(m.group(1), []).append(labels)
    return out


def selectors(expr):
    """(metric, [(label, op, value)]) for each recd_ or up selector of a PromQL expression."""
    out = []
    for m in re.finditer(r"\b(recd_\w+|up)\b(?:\{([^}]*)\})?", expr):
        matchers = [(l, op, codecs.decode(v, "unicode_escape"))
                    for l, op, v in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', m.group(2) or "")]
        out.append((m.group(1), matchers))
    return out


class PrometheusTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.promtool = need("promtool", "prometheus")
        need_yaml()
        cls.rules = load_yaml(os.path.join(PROM, "recd-alerts.yml"))[0]
        cls.tests = load_yaml(os.path.join(PROM, "recd-alerts.test.yml"))[0]
        cls.config = load_yaml(os.path.join(PROM, "prometheus.yml"))[0]

    def alerts(self):
        return [r for g in self.rules["groups"] for r in g["rules"]]

    def test_check_rules(self):
        r = sh([self.promtool, "check", "rules", os.path.join(PROM, "recd-alerts.yml")])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        d = broken_copy(PROM, ["recd-alerts.yml"], "> 0.01", "> > 0.01")
        r = sh([self.promtool, "check", "rules", os.path.join(d, "recd-alerts.yml")])
        self.assertNotEqual(r.returncode, 0, "promtool accepted a syntax error")

    def test_rules_unit_tests(self):
        r = sh([self.promtool, "test", "rules", "recd-alerts.test.yml"], cwd=PROM)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # A metric name recd does not export: the alert no longer fires.
        d = broken_copy(PROM, ["recd-alerts.yml", "recd-alerts.test.yml"],
                        "recd_event_log_lag_events >", "recd_event_log_lag >")
        r = sh([self.promtool, "test", "rules", "recd-alerts.test.yml"], cwd=d)
        self.assertNotEqual(r.returncode, 0, "promtool test rules passed a rule on a misspelt metric")

    def test_every_alert_is_tested_and_annotated(self):
        firing, quiet = set(), set()
        for t in self.tests["tests"]:
            for a in t["alert_rule_test"]:
                (firing if a["exp_alerts"] else quiet).add(a["alertname"])
        for a in self.alerts():
            name = a["alert"]
            self.assertIn(name, firing, "%s never shown to fire" % name)
            self.assertIn(name, quiet, "%s never shown to stay quiet" % name)
            self.assertTrue(a.get("for"), name)
            self.assertIn(a["labels"]["severity"], ("page", "warning"), name)
            self.assertTrue(a["annotations"]["summary"] and a["annotations"]["description"], name)

    def rendered_config(self, d):
        """prometheus.yml as Debian's promtool can check it: its token file
        made, and the kubernetes_sd_configs (a discovery Debian builds
        Prometheus without) checked here and replaced by a static target."""
        write(os.path.join(d, "token"), TOKEN.split()[1] + "\n", 0o600)
        shutil.copy(os.path.join(PROM, "recd-alerts.yml"), d)
        cfg = load_yaml(os.path.join(PROM, "prometheus.yml"))[0]
        for job in cfg["scrape_configs"]:
            if "authorization" in job:
                self.assertEqual(job["authorization"]["type"], "Bearer")
                job["authorization"]["credentials_file"] = os.path.join(d, "token")
            sd = job.pop("kubernetes_sd_configs", None)
            if sd is not None:
                self.assertEqual(sd, [{"role": "pod", "namespaces": {"names": ["recd"]}}])
                job["static_configs"] = [{"targets": ["127.0.0.1:9464"]}]
        return write(os.path.join(d, "prometheus.yml"), yaml.safe_dump(cfg))

    def test_check_config(self):
        d = fresh("prom")
        r = sh([self.promtool, "check", "config", self.rendered_config(d)])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SUCCESS: %d rules found" % len(self.alerts()), r.stdout + r.stderr)
        cfg = os.path.join(d, "prometheus.yml")
        write(cfg, read(cfg).replace("relabel_configs", "relabel_config"))
        r = sh([self.promtool, "check", "config", cfg])
        self.assertNotEqual(r.returncode, 0, "promtool accepted an unknown field")

    def test_scrape_finds_the_manifests_pods(self):
        """The recd job keeps pods by the label and port name deploy/k8s
        gives them, and labels them from labels those pods have."""
        job = [j for j in self.config["scrape_configs"] if "kubernetes_sd_configs" in j][0]
        k = K8s()
        name_label = "__meta_kubernetes_pod_label_app_kubernetes_io_name"
        pod_labels = [w["spec"]["template"]["metadata"]["labels"] for w in k.workloads()]
        meta = {re.sub(r"[^a-zA-Z0-9_]", "_", key) for labels in pod_labels for key in labels}
        for rc in job["relabel_configs"]:
            for src in rc["source_labels"]:
                m = re.fullmatch(r"__meta_kubernetes_pod_label_(\w+)", src)
                if m:
                    self.assertIn(m.group(1), meta, "%s: no pod has that label" % src)
            if rc.get("action") == "keep" and rc["source_labels"] == ["__meta_kubernetes_pod_container_port_name"]:
                for w in k.workloads():
                    self.assertIn(rc["regex"], [p["name"] for p in k.recd(w)["ports"]], w["metadata"]["name"])
            if rc.get("action") == "keep" and rc["source_labels"] == [name_label]:
                self.assertTrue(all(l["app.kubernetes.io/name"] == rc["regex"] for l in pod_labels))


class MetricsTest(unittest.TestCase):
    """The alert rules and their unit tests name what recd really exports:
    /metrics of the ranking tier as deploy/k8s runs it, read with the token."""

    @classmethod
    def setUpClass(cls):
        need_yaml()
        k = K8s()
        w = k.get("Deployment", "recd-ranking")
        name = k.configmap_key("recd-settings", "bundle")
        layout, args = k.pod(w, lambda d: publish(d, name, name + "-shards", 0))
        recd = Recd(args, ["--admin_http_auth=token"])
        try:
            cls.denied = recd.get("/metrics")
            cls.status, body = recd.get("/metrics", TOKEN.split()[1])
        finally:
            recd.stop()
        cls.metrics = exposition(body)
        cls.rules = load_yaml(os.path.join(PROM, "recd-alerts.yml"))[0]
        cls.tests = load_yaml(os.path.join(PROM, "recd-alerts.test.yml"))[0]
        cfg = load_yaml(os.path.join(PROM, "prometheus.yml"))[0]
        cls.target_labels = set(TARGET_LABELS)
        for job in cfg["scrape_configs"]:
            cls.target_labels |= {rc["target_label"] for rc in job.get("relabel_configs", []) if "target_label" in rc}
            cls.target_labels |= {l for sc in job.get("static_configs", []) for l in sc.get("labels", {})}

    def test_the_token_is_needed_and_enough(self):
        self.assertEqual(self.denied[0], 401)
        self.assertEqual(self.status, 200)

    def values(self, metric, label):
        return {s[label] for s in self.metrics.get(metric, []) if label in s}

    def test_rules_use_real_names(self):
        for g in self.rules["groups"]:
            for a in g["rules"]:
                for metric, matchers in selectors(a["expr"]):
                    if metric == "up":
                        continue
                    self.assertIn(metric, self.metrics, "%s: recd exports no %s" % (a["alert"], metric))
                    for label, op, value in matchers:
                        self.matcher(a["alert"], metric, label, op, value)

    def matcher(self, where, metric, label, op, value):
        have = self.values(metric, label)
        self.assertTrue(have, "%s: %s has no label %s" % (where, metric, label))
        if op == "=":
            self.assertIn(value, have, "%s: %s{%s} is never %r" % (where, metric, label, value))
        elif op == "=~":
            self.assertTrue(any(re.fullmatch(value, v) for v in have),
                            "%s: %s{%s=~%r} matches nothing" % (where, metric, label, value))
        else:  # != and !~: what is left out must exist, or a typo leaves nothing out
            for alt in value.split("|"):
                self.assertIn(alt, have, "%s: %s{%s%s...} names %r, which recd never exports"
                              % (where, metric, label, op, alt))

    def test_unit_test_series_are_recd_series(self):
        for t in self.tests["tests"]:
            for s in t["input_series"]:
                m = re.fullmatch(r"(\w+)\{(.*)\}", s["series"])
                metric, labels = m.group(1), dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
                if metric == "up":
                    continue
                self.assertIn(metric, self.metrics, s["series"])
                for label, value in labels.items():
                    if label in self.target_labels:
                        continue
                    have = self.values(metric, label)
                    if label == "status" and have:   # a running recd shows the statuses it has seen
                        have = GRPC_STATUS
                    self.assertIn(value, have,
                                  "%s: recd never exports %s=%r on %s" % (s["series"], label, value, metric))

    def test_event_log_lag_is_exported(self):
        """The ranking tier runs with an event log, so its lag is there to alert on."""
        self.assertIn("recd_event_log_lag_events", self.metrics)


# ---- systemd ----

# The sandbox both units must set.
SANDBOX = ("DynamicUser", "UMask", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateUsers",
           "PrivateMounts", "NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities", "ProtectKernelTunables",
           "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock", "ProtectHostname",
           "ProtectProc", "RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID",
           "LockPersonality", "MemoryDenyWriteExecute", "SystemCallArchitectures", "SystemCallFilter",
           "SystemCallErrorNumber")


def unit(path):
    """[(section, key, value)] of a unit file, continuation lines joined."""
    out, section, cont = [], None, ""
    for line in read(path).splitlines():
        if cont:
            line, cont = cont + " " + line.strip(), ""
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.endswith("\\"):
            cont = s[:-1].rstrip()
            continue
        if s.startswith("["):
            section = s.strip("[]")
            continue
        k, _, v = s.partition("=")
        out.append((section, k.strip(), v.strip()))
    return out


def unit_value(entries, key):
    vals = [v for _, k, v in entries if k == key]
    return vals[-1] if vals else None


def render_units(d):
    """The units with ExecStart on the build's recd."""
    for f in glob.glob(os.path.join(SYSTEMD, "*.service")):
        write(os.path.join(d, os.path.basename(f)), read(f).replace("/usr/local/bin/recd", binary("recd")))
    return d


class SystemdTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.analyze = need("systemd-analyze", "systemd")
        cls.units = {os.path.basename(f): unit(f) for f in glob.glob(os.path.join(SYSTEMD, "*.service"))}

    def verify(self, d, names):
        return sh([self.analyze, "verify"] + [os.path.join(d, n) for n in names])

    def test_verify(self):
        names = ["recd.service", "recd-retrieval@0.service"]
        r = self.verify(render_units(fresh("units")), names)
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""), "systemd-analyze verify")
        # systemd-analyze only warns about a bad value and exits 0: the
        # output must be empty, and so a typo shows.
        d = render_units(fresh("units"))
        f = os.path.join(d, "recd.service")
        write(f, read(f).replace("ProtectSystem=strict", "ProtectSystem=strickt"))
        self.assertIn("strickt", self.verify(d, names).stderr)
        write(f, read(f).replace(binary("recd"), "/nonexistent/recd"))
        self.assertNotEqual(self.verify(d, names).returncode, 0, "a missing ExecStart binary passed")

    def test_exposure(self):
        d = render_units(fresh("units"))
        for name in ("recd.service", "recd-retrieval@0.service"):
            r = sh([self.analyze, "security", "--offline=true", "--threshold=20", os.path.join(d, name)])
            self.assertEqual(r.returncode, 0, r.stdout[-2000:] + r.stderr)
            self.assertRegex(r.stdout, r"Overall exposure level for %s: [01]\.\d" % re.escape(name))
        f = os.path.join(d, "recd.service")
        write(f, "\n".join(l for l in read(f).splitlines() if l.split("=")[0] not in SANDBOX))
        r = sh([self.analyze, "security", "--offline=true", "--threshold=20", os.path.join(d, "recd.service")])
        self.assertNotEqual(r.returncode, 0, "an unsandboxed unit passed the threshold")

    def test_sandboxed_alike(self):
        def sandbox(entries):
            return sorted((k, v) for s, k, v in entries if s == "Service" and k not in
                          ("ExecStart", "ExecReload", "EnvironmentFile", "StateDirectory", "StateDirectoryMode"))
        a, b = self.units["recd.service"], self.units["recd-retrieval@.service"]
        for key in SANDBOX:
            self.assertIsNotNone(unit_value(a, key), "recd.service has no %s" % key)
        self.assertEqual(unit_value(a, "ProtectSystem"), "strict")
        self.assertEqual(unit_value(a, "CapabilityBoundingSet"), "")
        self.assertEqual(sandbox(a), sandbox(b))

    def layout(self, name, entries):
        """/etc/recd with deploy/systemd's files and a token file, the bundle
        root, the state directory, the credentials directory (%d) as
        LoadCredential fills it; returns (layout, the environment file's
        variables, %d as systemd would set it)."""
        layout = Layout(name.replace("@", "-"))
        etc = layout.add("/etc/recd", False)
        for f in glob.glob(os.path.join(SYSTEMD, "*.conf")) + glob.glob(os.path.join(SYSTEMD, "*.env")):
            write(os.path.join(etc, os.path.basename(f)), read(f))
        write(os.path.join(etc, "admin.tokens"), TOKEN + "\n", 0o600)
        shards = int(re.search(r"^RECD_SHARDS=(\d+)$", read(os.path.join(SYSTEMD, "retrieval.env")), re.M).group(1))
        publish(layout.add("/srv/recd/bundles", False), "shop-v1", "shop-v1-shards", shards)
        os.symlink("shop-v1", layout.root + "/srv/recd/bundles/current")
        os.symlink("shop-v1-shards", layout.root + "/srv/recd/bundles/current-shards")
        state = unit_value(entries, "StateDirectory")
        if state:
            layout.add("/var/lib/" + state, True)
        for f in glob.glob(os.path.join(etc, "*")):
            write(f, layout.map(read(f)), os.stat(f).st_mode & 0o777)
        creds = "/run/credentials/" + name
        layout.add(creds, False)
        for spec in [v for _, k, v in entries if k == "LoadCredential"]:
            cname, _, src = spec.partition(":")
            write(layout.root + creds + "/" + cname, read(layout.map(src)), 0o400)
        env = {}
        envfile = unit_value(entries, "EnvironmentFile")
        if envfile:
            env = dict(l.split("=", 1) for l in read(layout.map(envfile)).splitlines() if l and not l.startswith("#"))
        return layout, env, creds

    def exec_start(self, name, instance):
        entries = self.units[name]
        layout, env, creds = self.layout(name.replace("@", "@" + instance), entries)
        cmd = unit_value(entries, "ExecStart").replace("%i", instance).replace("%d", creds)
        cmd = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], cmd)
        argv = [layout.map(a) for a in shlex.split(cmd)]
        self.assertEqual(argv[0], "/usr/local/bin/recd")
        return layout, argv[1:]

    def test_exec_start_serves(self):
        for name, instance in (("recd.service", ""), ("recd-retrieval@.service", "0"),
                               ("recd-retrieval@.service", "1")):
            with self.subTest(name + instance):
                layout, args = self.exec_start(name, instance)
                s = settings(args)
                self.assertEqual(set(s) - known_settings(), set(), "%s: settings recd does not have" % name)
                check_paths(self, name, layout, s)
                if "retrieval" in name:
                    self.assertEqual(s["shard"], "%s/2" % instance)
                serve_and_stop(self, args)


# ---- Docker ----

def dockerfile(path):
    """[(INSTRUCTION, rest)], continuation lines joined, comments dropped."""
    out, cur = [], ""
    for line in read(path).splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        ins, _, rest = (cur + s).partition(" ")
        out.append((ins.upper(), rest.strip()))
        cur = ""
    return out


def apt_packages(run):
    m = re.search(r"apt-get install((?:\s+[^&\s]+)+)", run)
    return [p for p in m.group(1).split() if not p.startswith("-")] if m else []


def setup_packages():
    block = re.search(r"^packages=\((.*?)^\)", read(os.path.join(DEPLOY, "setup.sh")), re.M | re.S).group(1)
    return {p for line in block.splitlines() for p in line.split("#")[0].split()}


def linked_packages(binaries):
    """The Debian packages holding every library the binaries link to
    directly (readelf NEEDED, found with ldd, owned per dpkg -S). The image
    is built without sanitizers: an ASan or TSan build's runtimes are left
    out."""
    needed = set()
    for b in binaries:
        needed |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", sh(["readelf", "-d", b]).stdout))
    needed = {lib for lib in needed if not re.match(r"lib[alt]san\.so|libubsan\.so", lib)}
    paths = {}
    for b in binaries:
        for line in sh(["ldd", b]).stdout.splitlines():
            m = re.match(r"\s*(\S+)(?: => (\S+))? \(", line)
            if m:
                paths[os.path.basename(m.group(1))] = m.group(2) or m.group(1)
    out = {}
    for lib in needed:
        assert lib in paths, "ldd does not find %s" % lib
        candidates = {paths[lib], os.path.realpath(paths[lib])}
        candidates |= {re.sub(r"^/usr/lib/", "/lib/", c) for c in candidates}
        owners = [sh(["dpkg", "-S", c]).stdout for c in candidates]
        pkgs = {o.split(":")[0] for o in owners if o}
        assert pkgs, "no Debian package owns %s" % lib
        out[lib] = pkgs.pop()
    return out


class DockerfileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        need("readelf", "binutils")
        need("dpkg", "dpkg")
        cls.ins = dockerfile(os.path.join(DEPLOY, "Dockerfile"))
        cls.stages, stage = [], None
        for i, rest in cls.ins:
            if i == "FROM":
                stage = {"from": rest, "ins": []}
                cls.stages.append(stage)
            else:
                stage["ins"].append((i, rest))
        cls.final = cls.stages[-1]["ins"]

    def final_one(self, ins):
        found = [rest for i, rest in self.final if i == ins]
        self.assertEqual(len(found), 1, "the runtime stage has one %s" % ins)
        return found[0]

    def test_stages(self):
        self.assertGreaterEqual(len(self.stages), 2, "multi-stage")
        names = []
        for s in self.stages:
            m = re.fullmatch(r"(debian:bookworm(?:-slim)?)(?:@sha256:[0-9a-f]{64})?(?: AS (\w+))?", s["from"], re.I)
            self.assertTrue(m, "FROM %s is not Debian bookworm" % s["from"])
            for i, rest in s["ins"]:
                self.assertFalse(i == "ADD" and re.search(r"\w+://", rest), "ADD of a remote URL: %s" % rest)
                if i == "COPY" and rest.startswith("--from="):
                    self.assertIn(rest.split()[0][7:], names, "COPY --from a stage not built before")
            names.append(m.group(2))
        self.assertFalse(any(i == "ADD" for i, _ in self.ins), "COPY, not ADD")

    def test_runs_as_the_manifests_user(self):
        user = self.final_one("USER")
        uid = user.split(":")[0]
        self.assertRegex(uid, r"^\d+$", "a numeric uid, so that runAsNonRoot can check it")
        self.assertNotEqual(int(uid), 0)
        for w in K8s().workloads():
            self.assertEqual(w["spec"]["template"]["spec"]["securityContext"]["runAsUser"], int(uid))

    def test_packages(self):
        builder = {p for s in self.stages[:-1] for i, rest in s["ins"] if i == "RUN" for p in apt_packages(rest)}
        self.assertTrue(builder)
        self.assertLessEqual(builder, setup_packages(), "the builder installs what deploy/setup.sh does not")
        runtime = {p for i, rest in self.final if i == "RUN" for p in apt_packages(rest)}
        binaries = [binary("recd"), binary("recctl")]
        for lib, pkg in sorted(linked_packages(binaries).items()):
            self.assertIn(pkg, runtime, "%s (from %s) is not installed in the runtime stage" % (pkg, lib))

    def test_ships_the_built_binaries(self):
        copied = [rest for i, rest in self.final if i == "COPY" and rest.startswith("--from=")]
        self.assertEqual(len(copied), 1)
        srcs, dest = copied[0].split()[1:-1], copied[0].split()[-1]
        self.assertEqual(sorted(os.path.relpath(s, "/src/build") for s in srcs), ["server/recd", "tools/recctl"])
        self.assertIn("build", read(os.path.join(DEPLOY, "Dockerfile.dockerignore")).split())
        self.assertEqual(self.final_one("ENTRYPOINT"), '["%s"]' % os.path.join(dest, "recd"))

    def test_cmd_serves_and_healthcheck_tells(self):
        args = json.loads(self.final_one("CMD"))
        self.assertEqual({k for k, _ in flags(args)} - known_settings(), set())
        s = settings(args)
        self.assertEqual(self.final_one("EXPOSE"), str(port_of(s["listen"])))
        hc = re.fullmatch(r"(.*?)\s*CMD (.*)", self.final_one("HEALTHCHECK"))
        self.assertTrue(hc, "HEALTHCHECK without CMD")
        check = hc.group(2)
        self.assertIn("127.0.0.1:%d" % port_of(s["listen"]), check, "the health check asks the serving port")
        # The image's mounts: the bundles (docker run -v) and recd's home.
        layout = Layout("docker")
        publish(layout.add("/srv/recd/bundles", False), "current", None, 0)
        layout.add("/var/lib/recd", True)
        args = [layout.map(a) for a in args]
        check_paths(self, "Dockerfile CMD", layout, settings(args))
        recd = Recd(args)
        try:
            check = re.sub(r"\brecctl\b", binary("recctl"), check).replace(
                "127.0.0.1:%d" % port_of(s["listen"]), "127.0.0.1:%d" % recd.port)
            r = sh(["/bin/sh", "-c", check])
            self.assertEqual(r.returncode, 0, "HEALTHCHECK failed against a serving recd: " + r.stderr)
        finally:
            self.assertEqual(recd.stop(), 0, read(recd.log))
        r = sh(["/bin/sh", "-c", check])
        self.assertEqual(r.returncode, 1, "HEALTHCHECK against a stopped recd must say unhealthy (1)")


# ---- the gateway ----

class GatewayTest(unittest.TestCase):
    def check(self, d):
        return sh([os.path.join(d, "gateway.sh"), "--listen", "127.0.0.1:18080", "--stable", "127.0.0.1:50051",
                   "--canary", "127.0.0.1:50061", "--dir", fresh("gw"), "--check"])

    def test_rendered_config_is_valid(self):
        need("haproxy", "haproxy")
        r = self.check(os.path.join(DEPLOY, "gateway"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("is valid", r.stdout)
        d = broken_copy(os.path.join(DEPLOY, "gateway"), ["haproxy.cfg.in", "gateway.sh"],
                        "balance roundrobin", "balance roundrobbin")
        r = self.check(d)
        self.assertNotEqual(r.returncode, 0, "haproxy -c accepted an unknown balance algorithm")


def main():
    global ARGS, TMP
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    ARGS, rest = p.parse_known_args()
    ARGS.build = os.path.abspath(ARGS.build)
    TMP = tempfile.mkdtemp(prefix="recd_deploy.")
    try:
        prog = unittest.main(module="__main__", argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
        return 0 if prog.result.wasSuccessful() else 1
    finally:
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
