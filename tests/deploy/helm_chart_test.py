#!/usr/bin/env python3
"""Renders deploy/helm/baq and checks the manifests against the sources.

CI has no `helm`, so the chart is rendered with tests/deploy/gotemplate.py (a
strict subset of Go templates + Helm functions) for several value sets, and
the manifests are checked structurally:

  * every value is documented in values.yaml and every .Values path a
    template names exists there (the renderer also fails on a missing one);
  * every manifest is YAML without duplicate keys, with kind/name/labels;
  * every daemon flag rendered with the default values is an ABSL_FLAG of
    coordinator/main.cc or worker/main.cc; flags the daemons lack are only
    rendered behind values that default off, and are listed as PENDING in
    baq_sources.PENDING_FLAGS;
  * --listen/--metrics_listen ports equal the container ports, gRPC probes
    point at the gRPC port (TCP when TLS is on), Services select pods and
    target ports that exist, mounts name volumes, PVCs exist, GPUs are
    requested iff gpu.enabled and match --devices, the worker's grace period
    outlasts its preStop, the PDB and ServiceMonitor select what they should.

With `--compare-helm` (or whenever a `helm` binary or the helm_python
package is importable) it also renders with real Helm and requires identical
manifests, which keeps gotemplate.py honest.

Usage: helm_chart_test.py [--source-dir REPO] [--compare-helm]
"""

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # No __pycache__ in the source tree.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baq_sources as src  # noqa: E402

try:
    import yaml
except ImportError:  # Debian: python3-yaml (a dependency of yamllint).
    print("SKIP: PyYAML is not installed (apt-get install python3-yaml)")
    sys.exit(src.SKIP)

import gotemplate  # noqa: E402  (needs yaml)

CHART = "deploy/helm/baq"
RELEASE, NAMESPACE = "rel", "ml"
CONTAINER_MAIN = {"coordinator": "coordinator/main.cc", "worker": "worker/main.cc"}
# Keys whose children are Kubernetes objects passed through unchanged: their
# sub-keys need no comment of their own in values.yaml.
PASSTHROUGH = {"resources", "nodeSelector", "tolerations", "affinity", "podAnnotations",
               "podLabels", "annotations", "labels", "securityContext", "podSecurityContext",
               "volume"}

ALL_ON = {
    "tls": {"enabled": True, "secretName": "baq-tls"},
    "auth": {"enabled": True, "existingSecret": "baq-token"},
    "sharedStorage": {"enabled": True, "volume": {"persistentVolumeClaim": {"claimName": "m"}}},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "coordinator": {"podDisruptionBudget": {"enabled": True},
                    "persistence": {"existingClaim": "baq-old-data"},
                    "podLabels": {"team": "ml"}, "podAnnotations": {"a": "b"},
                    "nodeSelector": {"pool": "cpu"}, "priorityClassName": "high",
                    "env": [{"name": "GRPC_VERBOSITY", "value": "info"}]},
    "worker": {"devices": ["cuda:0", "cuda:1"], "gpu": {"count": 2},
               "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
               "affinity": {"nodeAffinity": {}}},
    "imagePullSecrets": [{"name": "regcred"}],
    "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
    "grafanaDashboard": {"namespace": "monitoring", "annotations": {"grafana_folder": "baq"}},
    "scratch": {"enabled": True, "storageClassName": "nfs"},
}
# name -> (overrides, flags must all exist (no pending ones))
VALUE_SETS = {
    "default": ({}, True),
    "cpu": ({"worker": {"gpu": {"enabled": False}, "threads": 8, "replicas": 3}}, True),
    "gpu4-no-metrics-no-pvc": ({"worker": {"gpu": {"count": 4}}, "metrics": {"enabled": False},
                                "coordinator": {"persistence": {"enabled": False}},
                                "serviceAccount": {"create": False},
                                "fullnameOverride": "q"}, True),
    "all-on": (ALL_ON, False),
}


class UniqueKeyLoader(yaml.SafeLoader):
    """Kubernetes' YAML decoder rejects duplicate keys; so does this."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, "duplicate key %r" % (key,), key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_docs(text):
    return [d for d in yaml.load_all(text, Loader=UniqueKeyLoader) if d]


def check_values_documented(values_text, report):
    stack = []  # [(indent, key)]
    prev = ""
    for n, line in enumerate(values_text.splitlines(), 1):
        m = re.match(r"^(\s*)([A-Za-z][\w.-]*):", line)
        if m:
            indent, key = len(m.group(1)), m.group(2)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            exempt = any(k in PASSTHROUGH for _, k in stack)
            documented = prev.strip().startswith("#") or " # " in line
            report.check(exempt or documented,
                         "values.yaml:%d: %s has no comment" % (n, ".".join(
                             [k for _, k in stack] + [key])))
            stack.append((indent, key))
        if line.strip():
            prev = line


def value_paths(values, prefix=()):
    yield prefix
    if isinstance(values, dict):
        for k, v in values.items():
            yield from value_paths(v, prefix + (k,))


def check_value_references(chart_dir, values, report):
    known = set(value_paths(values))
    tdir = os.path.join(chart_dir, "templates")
    for fn in sorted(os.listdir(tdir)):
        text = src.read(os.path.join(tdir, fn))
        for m in re.finditer(r"\.Values((?:\.[A-Za-z_]\w*)+)", text):
            path = tuple(m.group(1).strip(".").split("."))
            report.check(path in known, "%s: .Values.%s is not in values.yaml"
                         % (fn, ".".join(path)))
        if fn.startswith("_"):
            report.check(not re.search(r"^\s*-\s*--\w", text, re.M),
                         "%s: daemon flags belong in the workload templates" % fn)


def containers_of(doc):
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return spec, spec.get("containers", [])


def port_number(container, name):
    for p in container.get("ports", []):
        if p.get("name") == name:
            return p.get("containerPort")
    return None


def arg_flags(args):
    out = {}
    for a in args or []:
        m = re.match(r"^--([A-Za-z][\w-]*)(?:=(.*))?$", str(a))
        if m:
            out[m.group(1)] = m.group(2)
    return out


def check_manifests(set_name, docs, values, strict_flags, report, root):
    where = "[%s]" % set_name
    by_kind = {}
    for d in docs:
        ok = report.check(all(k in d for k in ("apiVersion", "kind", "metadata")),
                          "%s manifest without apiVersion/kind/metadata: %r" % (where, d))
        if not ok:
            continue
        name = d["metadata"].get("name", "")
        report.check(0 < len(name) <= 63 and re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", name),
                     "%s %s name %r is not a DNS label" % (where, d["kind"], name))
        report.check(d["metadata"].get("labels", {}).get("app.kubernetes.io/instance") == RELEASE,
                     "%s %s/%s lacks the instance label" % (where, d["kind"], name))
        by_kind.setdefault(d["kind"], []).append(d)

    workloads = by_kind.get("Deployment", []) + by_kind.get("StatefulSet", [])
    report.check(len(by_kind.get("Deployment", [])) == 1 and
                 len(by_kind.get("StatefulSet", [])) == 1,
                 "%s expected one coordinator Deployment and one worker StatefulSet" % where)
    services = by_kind.get("Service", [])
    pvcs = {d["metadata"]["name"] for d in by_kind.get("PersistentVolumeClaim", [])}
    coordinator_service = None

    for w in workloads:
        wname = "%s %s/%s" % (where, w["kind"], w["metadata"]["name"])
        pod_spec, containers = containers_of(w)
        pod_labels = w["spec"]["template"]["metadata"].get("labels", {})
        selector = w["spec"]["selector"]["matchLabels"]
        report.check(all(pod_labels.get(k) == v for k, v in selector.items()),
                     "%s: selector %s does not match pod labels" % (wname, selector))
        report.check(pod_spec.get("securityContext", {}).get("runAsNonRoot") is True,
                     "%s: pod does not set runAsNonRoot" % wname)
        volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
        for v in volumes.values():
            claim = v.get("persistentVolumeClaim", {}).get("claimName")
            if claim and v["name"] == "data":
                existing = values["coordinator"]["persistence"]["existingClaim"]
                report.check(claim in pvcs or claim == existing,
                             "%s: volume %s claims %s, which is not rendered"
                             % (wname, v["name"], claim))
        for c in containers:
            cname = "%s container %s" % (wname, c["name"])
            for m in c.get("volumeMounts", []):
                report.check(m["name"] in volumes, "%s: mounts undeclared volume %s"
                             % (cname, m["name"]))
            flags = arg_flags(c.get("args"))
            main_cc = os.path.join(root, CONTAINER_MAIN.get(c["name"], "?"))
            accepted = src.accepted_flags(main_cc)
            if accepted is None:
                report.note("%s: %s does not exist yet; flags %s unchecked"
                            % (cname, os.path.relpath(main_cc, root), sorted(flags)))
            else:
                for f in sorted(flags):
                    if f in accepted:
                        continue
                    if f in src.PENDING_FLAGS and not strict_flags:
                        report.note("%s: renders PENDING flag --%s (%s)"
                                    % (cname, f, src.PENDING_FLAGS[f]))
                        continue
                    report.check(False, "%s: %s defines no flag --%s" % (
                        cname, os.path.relpath(main_cc, root), f))
            for f in flags:
                report.check(not (strict_flags and f in src.PENDING_FLAGS),
                             "%s: PENDING flag --%s is rendered by default" % (cname, f))
            grpc_port = port_number(c, "grpc")
            report.check(grpc_port is not None, "%s: no port named grpc" % cname)
            report.check(port_of(flags.get("listen")) == grpc_port,
                         "%s: --listen=%s is not the grpc port %s" % (cname, flags.get("listen"),
                                                                      grpc_port))
            metrics_port = port_number(c, "metrics")
            if values["metrics"]["enabled"]:
                report.check(port_of(flags.get("metrics_listen")) == metrics_port,
                             "%s: --metrics_listen=%s is not the metrics port %s"
                             % (cname, flags.get("metrics_listen"), metrics_port))
            else:
                report.check("metrics_listen" not in flags and metrics_port is None,
                             "%s: metrics rendered with metrics.enabled=false" % cname)
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                p = c.get(probe)
                if not report.check(p is not None, "%s: no %s" % (cname, probe)):
                    continue
                if values["tls"]["enabled"]:
                    report.check(p.get("tcpSocket", {}).get("port") == "grpc",
                                 "%s: %s must be tcpSocket on grpc with TLS" % (cname, probe))
                else:
                    report.check(p.get("grpc", {}).get("port") == grpc_port,
                                 "%s: %s is not a gRPC probe on port %s" % (cname, probe,
                                                                            grpc_port))
            if c["name"] == "worker":
                check_worker(cname, w, c, flags, values, report)
        # Services that select this workload target its named ports.
        for s in services:
            sel = s["spec"].get("selector", {})
            if sel and all(pod_labels.get(k) == v for k, v in sel.items()):
                names = {p.get("name") for c in containers for p in c.get("ports", [])}
                for sp in s["spec"]["ports"]:
                    report.check(sp.get("targetPort") in names,
                                 "%s Service %s targets missing port %s"
                                 % (where, s["metadata"]["name"], sp.get("targetPort")))
                if w["kind"] == "Deployment":
                    coordinator_service = s
                if w["kind"] == "StatefulSet":
                    report.check(s["spec"].get("clusterIP") == "None" and
                                 w["spec"]["serviceName"] == s["metadata"]["name"],
                                 "%s: StatefulSet serviceName is not its headless Service" % where)

    for s in services:
        sel = s["spec"].get("selector", {})
        report.check(any(all(w["spec"]["template"]["metadata"]["labels"].get(k) == v
                             for k, v in sel.items()) for w in workloads),
                     "%s Service %s selects no pods" % (where, s["metadata"]["name"]))

    # Workers dial the coordinator Service.
    sts = by_kind.get("StatefulSet", [{}])[0]
    if coordinator_service and sts:
        _, wc = containers_of(sts)
        addr = arg_flags(wc[0].get("args")).get("coordinator", "")
        host, _, port = addr.rpartition(":")
        report.check(host.split(".")[0] == coordinator_service["metadata"]["name"] and
                     int(port) == values["coordinator"]["grpcPort"],
                     "%s: worker --coordinator=%s is not the coordinator Service" % (where, addr))

    for pdb in by_kind.get("PodDisruptionBudget", []):
        sel = pdb["spec"]["selector"]["matchLabels"]
        report.check(any(all(w["spec"]["template"]["metadata"]["labels"].get(k) == v
                             for k, v in sel.items()) for w in workloads),
                     "%s PDB %s selects no pods" % (where, pdb["metadata"]["name"]))
    report.check(bool(by_kind.get("PodDisruptionBudget")) ==
                 bool(values["worker"]["podDisruptionBudget"]["enabled"] or
                      values["coordinator"]["podDisruptionBudget"]["enabled"]),
                 "%s PDBs rendered iff enabled" % where)

    check_monitoring(where, by_kind, values, workloads, report, root)

    monitors = by_kind.get("ServiceMonitor", [])
    report.check(bool(monitors) == bool(values["serviceMonitor"]["enabled"] and
                                        values["metrics"]["enabled"]),
                 "%s ServiceMonitor rendered iff serviceMonitor and metrics are enabled" % where)
    for sm in monitors:
        sel = sm["spec"]["selector"]["matchLabels"]
        picked = [s for s in services
                  if all(s["metadata"]["labels"].get(k) == v for k, v in sel.items())]
        report.check(len(picked) == 2, "%s ServiceMonitor selects %d Services, want 2"
                     % (where, len(picked)))
        jobs = sorted(s["metadata"]["labels"].get(sm["spec"]["jobLabel"], "") for s in picked)
        report.check(jobs == ["baq-coordinator", "baq-worker"],
                     "%s ServiceMonitor jobs are %s, the dashboard expects baq-coordinator and "
                     "baq-worker" % (where, jobs))
        for e in sm["spec"]["endpoints"]:
            for s in picked:
                report.check(e["port"] in {p["name"] for p in s["spec"]["ports"]},
                             "%s Service %s has no port %s" % (where, s["metadata"]["name"],
                                                               e["port"]))


def check_monitoring(where, by_kind, values, workloads, report, root):
    """The dashboard ConfigMap, the PrometheusRule and the scratch volume."""
    maps = [m for m in by_kind.get("ConfigMap", []) if m["metadata"]["name"].endswith("-dashboard")]
    report.check(len(maps) == int(bool(values["grafanaDashboard"]["enabled"])),
                 "%s dashboard ConfigMap rendered iff grafanaDashboard.enabled" % where)
    with open(os.path.join(root, "deploy/grafana/baq-dashboard.json"), encoding="utf-8") as f:
        dashboard = json.load(f)
    for m in maps:
        text = m.get("data", {}).get("baq-dashboard.json", "")
        try:
            same = json.loads(text) == dashboard
        except ValueError as e:
            same = False
            report.check(False, "%s dashboard ConfigMap: not JSON: %s" % (where, e))
        report.check(same, "%s dashboard ConfigMap differs from deploy/grafana/baq-dashboard.json"
                     % where)
        for k, v in values["grafanaDashboard"]["labels"].items():
            report.check(m["metadata"]["labels"].get(k) == v,
                         "%s dashboard ConfigMap lacks the sidecar label %s" % (where, k))
        ns = values["grafanaDashboard"]["namespace"]
        report.check(m["metadata"].get("namespace", "") == ns,
                     "%s dashboard ConfigMap namespace %r, want %r"
                     % (where, m["metadata"].get("namespace"), ns))
    rules = by_kind.get("PrometheusRule", [])
    report.check(len(rules) == int(bool(values["prometheusRule"]["enabled"])),
                 "%s PrometheusRule rendered iff prometheusRule.enabled" % where)
    with open(os.path.join(root, "deploy/prometheus/baq-rules.yaml"), encoding="utf-8") as f:
        rule_file = yaml.safe_load(f)
    for r in rules:
        report.check(r["spec"] == rule_file, "%s PrometheusRule spec differs from "
                     "deploy/prometheus/baq-rules.yaml" % where)
    pvcs = {d["metadata"]["name"]: d for d in by_kind.get("PersistentVolumeClaim", [])}
    scratch = values["scratch"]
    for w in workloads:
        pod_spec, containers = containers_of(w)
        vol = {v["name"]: v for v in pod_spec.get("volumes", [])}.get("scratch")
        report.check((vol is not None) == bool(scratch["enabled"]),
                     "%s %s: scratch volume iff scratch.enabled" % (where, w["kind"]))
        if vol is None:
            continue
        claim = vol["persistentVolumeClaim"]["claimName"]
        report.check(claim in pvcs or claim == scratch["existingClaim"],
                     "%s scratch claim %s is neither rendered nor existingClaim" % (where, claim))
        if claim in pvcs:
            report.check("ReadWriteMany" in pvcs[claim]["spec"]["accessModes"],
                         "%s scratch PVC is not ReadWriteMany: every worker mounts it" % where)
        for c in containers:
            mounts = [m for m in c.get("volumeMounts", []) if m["name"] == "scratch"]
            report.check(len(mounts) == 1 and not mounts[0].get("readOnly") and
                         mounts[0]["mountPath"] == scratch["mountPath"],
                         "%s %s: scratch not mounted read-write at %s"
                         % (where, c["name"], scratch["mountPath"]))


def port_of(address):
    m = re.search(r":(\d+)$", address or "")
    return int(m.group(1)) if m else None


def check_worker(cname, sts, c, flags, values, report):
    gpu = values["worker"]["gpu"]
    limits = c.get("resources", {}).get("limits", {})
    devices = (flags.get("devices") or "").split(",")
    if gpu["enabled"]:
        report.check(limits.get(gpu["resourceName"]) == gpu["count"],
                     "%s: limits %s lack %s: %s" % (cname, limits, gpu["resourceName"],
                                                    gpu["count"]))
        report.check(all(d.startswith("cuda:") for d in devices),
                     "%s: --devices=%s with GPUs" % (cname, flags.get("devices")))
        if not values["worker"]["devices"]:
            report.check(len(devices) == gpu["count"], "%s: --devices=%s for %d GPUs"
                         % (cname, flags.get("devices"), gpu["count"]))
    else:
        report.check(gpu["resourceName"] not in limits, "%s: requests GPUs in CPU mode" % cname)
        report.check(devices == ["cpu"],
                     "%s: --devices=%s in CPU mode" % (cname, flags.get("devices")))
    pod = sts["spec"]["template"]["spec"]
    pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    report.check(bool(pre), "%s: no preStop hook" % cname)
    sleep = int(pre[-1]) if pre and str(pre[-1]).isdigit() else 0
    grace = pod.get("terminationGracePeriodSeconds", 30)
    report.check(grace > sleep + 60,
                 "%s: terminationGracePeriodSeconds %s leaves no time to finish a block after "
                 "the %ds preStop" % (cname, grace, sleep))
    drain = re.match(r"^(\d+)s$", flags.get("shutdown_grace") or "")
    if report.check(drain is not None, "%s: --shutdown_grace=%s is not N seconds"
                    % (cname, flags.get("shutdown_grace"))):
        report.check(sleep + int(drain.group(1)) + 30 <= grace,
                     "%s: preStop %ds + --shutdown_grace %s + 30 s exceed the pod grace %ss"
                     % (cname, sleep, flags.get("shutdown_grace"), grace))
    # Registered as the pod's stable DNS name under the headless Service.
    want = "$(POD_NAME).%s.%s.svc:%s" % (sts["spec"]["serviceName"], NAMESPACE,
                                           port_number(c, "grpc"))
    report.check(flags.get("advertise") == want,
                 "%s: --advertise=%s, want %s" % (cname, flags.get("advertise"), want))
    report.check(any(e.get("name") == "POD_NAME" for e in c.get("env", [])),
                 "%s: --advertise uses $(POD_NAME), which env does not define" % cname)


def helm_render(chart_dir, overrides):
    """Real Helm's rendering, or None when neither helm nor helm_python exists."""
    exe = shutil.which("helm")
    if exe:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            yaml.safe_dump(overrides, f)
        r = subprocess.run([exe, "template", RELEASE, chart_dir, "-n", NAMESPACE, "-f", f.name,
                            "--output-dir", f.name + ".out"], capture_output=True, text=True)
        os.unlink(f.name)
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        out = {}
        for dirpath, _, files in os.walk(f.name + ".out"):
            for fn in files:
                out[fn] = src.read(os.path.join(dirpath, fn))
        shutil.rmtree(f.name + ".out")
        return out
    try:
        import helm_python
    except ImportError:
        return None
    chart = helm_python.Chart.load(chart_dir)
    rendered = chart.render(copy.deepcopy(overrides) or None, name=RELEASE, namespace=NAMESPACE)
    return {k.rsplit("/", 1)[-1]: v for k, v in rendered.items()}


def main():
    root = src.repo_root()
    report = src.Report("helm_chart_test")
    chart_dir = os.path.join(root, CHART)
    values_text = src.read(os.path.join(chart_dir, "values.yaml"))
    base_values = yaml.safe_load(values_text)
    chart = yaml.safe_load(src.read(os.path.join(chart_dir, "Chart.yaml")))
    report.check(chart.get("apiVersion") == "v2" and chart.get("name") == "baq",
                 "Chart.yaml: apiVersion v2, name baq")
    check_values_documented(values_text, report)
    check_value_references(chart_dir, base_values, report)

    # The renderer is strict about missing values (what makes typos fail).
    try:
        gotemplate.Renderer({"t": "{{ .Values.nope.x }}"}).render("t", {"Values": {}})
        report.check(False, "gotemplate accepted a missing value")
    except gotemplate.TemplateError:
        report.check(True, "")

    # A grace period too short to drain a block is refused at render time.
    try:
        gotemplate.render_chart(chart_dir, {"worker": {"terminationGracePeriodSeconds": 40}})
        report.check(False, "a 40 s worker grace period rendered; the chart must fail it")
    except gotemplate.TemplateError as e:
        report.check("terminationGracePeriodSeconds" in str(e), "unexpected error: %s" % e)

    compare = "--compare-helm" in sys.argv
    helm_seen = False
    for set_name, (overrides, strict_flags) in VALUE_SETS.items():
        values = gotemplate.merge_values(base_values, overrides)
        try:
            rendered = gotemplate.render_chart(chart_dir, overrides, RELEASE, NAMESPACE)
        except gotemplate.TemplateError as e:
            report.check(False, "[%s] render: %s" % (set_name, e))
            continue
        docs = []
        for fn, text in sorted(rendered.items()):
            if fn.endswith(".txt"):
                report.check("Runbook" in text, "[%s] NOTES.txt renders no help" % set_name)
                continue
            try:
                docs += load_docs(text)
            except yaml.YAMLError as e:
                report.check(False, "[%s] %s is not valid YAML: %s" % (set_name, fn, e))
        check_manifests(set_name, docs, values, strict_flags, report, root)

        try:
            real = helm_render(chart_dir, overrides)
        except Exception as e:  # Real Helm refused the chart.
            report.check(False, "[%s] helm: %s" % (set_name, e))
            continue
        if real is None:
            continue
        helm_seen = True
        for fn, text in sorted(real.items()):
            mine = rendered.get(fn)
            if fn.endswith(".txt"):
                same = mine is not None and mine.strip() == text.strip()
            else:
                same = mine is not None and load_docs(mine) == load_docs(text)
            report.check(same, "[%s] %s: gotemplate.py and helm render differently" % (set_name,
                                                                                       fn))
    if not helm_seen:
        msg = "neither helm nor helm_python found; gotemplate.py not compared with real Helm"
        if compare:
            report.check(False, msg)
        else:
            report.note(msg)
    for f in sorted(src.PENDING_FLAGS):
        for binary, main_cc in CONTAINER_MAIN.items():
            flags = src.absl_flags(os.path.join(root, main_cc))
            if flags and f in flags:
                report.note("--%s now exists in %s: drop it from PENDING_FLAGS and the docs"
                            % (f, main_cc))
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
