"""What the deployment checks need to know about the sources, read from them.

The deploy/ artifacts (Dockerfiles, Helm chart, Grafana dashboard) name
daemon flags, binaries, CMake targets and metric names. This module reads the
real ones from the C++ sources so the tests can compare:

  absl_flags(path)        flag names defined with ABSL_FLAG in a main.cc
  cmake_binaries(root)    OUTPUT_NAME -> (target, source dir, main.cc path)
  exported_metrics(root)  metric name -> type, from the prometheus-cpp builders
  series_names(metrics)   the series names a scrape shows (histogram _bucket...)
  promql_metric_names()   metric names used in a PromQL expression

Only the Python standard library; the callers import PyYAML where they need it.
"""

import os
import re
import sys

# Exit status CTest reads as "skipped" (SKIP_RETURN_CODE in tests/CMakeLists.txt).
SKIP = 77

# Flags every Abseil binary accepts (absl/flags/internal/usage.cc, parse.cc).
ABSL_BUILTIN_FLAGS = {
    "help", "helpfull", "helpshort", "helppackage", "helpon", "helpmatch", "version",
    "only_check_args", "flagfile", "fromenv", "tryfromenv", "undefok",
}

# Flags the chart renders only behind values that default off, because the
# daemons do not define them yet. When one lands in a main.cc the tests say
# so; remove it here and from "Pending" in docs/deployment.md then.
PENDING_FLAGS = {}

# Series Prometheus itself adds to every scrape target; a dashboard may use them.
PROMETHEUS_SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

# Labels Prometheus (or the Prometheus Operator's ServiceMonitor) attaches to
# every target, on top of the labels the daemons export.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "container", "endpoint"}


def repo_root(argv=None):
    """--source-dir DIR from argv, else two levels above this file."""
    argv = sys.argv if argv is None else argv
    if "--source-dir" in argv:
        return os.path.abspath(argv[argv.index("--source-dir") + 1])
    return os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _strip_cpp_comments(src):
    src = re.sub(r"/\*.*?\*/", " ", src, flags=re.S)
    return re.sub(r"//[^\n]*", " ", src)


def absl_flags(main_cc):
    """Names defined by ABSL_FLAG(type, name, ...) in `main_cc`; None if absent."""
    if not os.path.exists(main_cc):
        return None
    src = _strip_cpp_comments(read(main_cc))
    # The type may hold template arguments with commas: match up to the name
    # that is followed by the default value's comma.
    names = set(re.findall(r"\bABSL_FLAG\s*\(\s*(?:[^,()<>]|<[^<>]*>)+,\s*([A-Za-z_]\w*)\s*,",
                           src))
    names |= set(re.findall(r"\bABSL_RETIRED_FLAG\s*\(\s*[^,]+,\s*([A-Za-z_]\w*)\s*,", src))
    return names


def accepted_flags(main_cc):
    flags = absl_flags(main_cc)
    return None if flags is None else flags | ABSL_BUILTIN_FLAGS


def cmake_binaries(root):
    """{output name: (target, dir, main.cc path)} from baq_cc_binary() calls."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames
                       if not d.startswith((".", "build")) and d not in ("deploy", "tests")]
        if "CMakeLists.txt" not in filenames:
            continue
        src = read(os.path.join(dirpath, "CMakeLists.txt"))
        for m in re.finditer(r"baq_cc_binary\(\s*(\w+)([^)]*)\)", src):
            target, rest = m.group(1), m.group(2)
            name = re.search(r"OUTPUT_NAME\s+([\w.-]+)", rest)
            srcs = re.search(r"SRCS\s+([\w./-]+)", rest)
            out[name.group(1) if name else target] = (
                target, dirpath, os.path.join(dirpath, srcs.group(1)) if srcs else None)
    return out


def cmake_targets(root):
    """Every target name defined by add_executable/add_library/baq_cc_* calls."""
    names = set()
    pattern = re.compile(r"\b(?:add_executable|add_library|baq_cc_binary|baq_cc_library|"
                         r"baq_cc_test)\(\s*(\w+)")
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "build"))]
        if "CMakeLists.txt" in filenames:
            names |= set(pattern.findall(read(os.path.join(dirpath, "CMakeLists.txt"))))
    return names


def _cc_sources(root, dirs, suffix=".cc"):
    """The comment-stripped text of every file ending in `suffix` under root/<dir>."""
    for d in dirs:
        for dirpath, _, filenames in os.walk(os.path.join(root, d)):
            for fn in filenames:
                if fn.endswith(suffix):
                    yield _strip_cpp_comments(read(os.path.join(dirpath, fn)))


# Metric names the daemons build: baq's own, and the standard process_*
# family of daemon/process_metrics.cc.
_METRIC_LITERAL = re.compile(r'"((?:baq|process)_[a-z0-9_]+)"')

# Source dirs whose .cc files build metrics.
METRIC_DIRS = ("coordinator", "worker", "common", "daemon")


def _metric_literals(root, dirs, suffix=".cc"):
    """(source, match) for every metric-name string literal in the files of `dirs`."""
    for src in _cc_sources(root, dirs, suffix):
        for m in _METRIC_LITERAL.finditer(src):
            yield src, m


_METRIC_KIND = re.compile(r"Build(Counter|Gauge|Histogram|Summary)\s*\(|"
                          r"\b\w*?(Counter|Gauge|Histogram|Summary)\w*\s*\(")


def exported_metrics(root, dirs=METRIC_DIRS):
    """{name: type} of every baq_* metric built in the sources of `dirs`.

    A metric is a string literal "baq_..." passed to .Name(...) of a
    prometheus::BuildX() chain, or to a helper whose name says the type
    (SimpleGauge(registry, "baq_...", ...)): the type is the nearest such
    builder or helper before the literal in the same statement.
    """
    metrics = {}
    for src, m in _metric_literals(root, dirs):
        start = max(src.rfind(";", 0, m.start()), src.rfind("{", 0, m.start()) - 400, 0)
        kinds = [k.group(1) or k.group(2) for k in _METRIC_KIND.finditer(src, start, m.start())]
        if kinds:
            metrics[m.group(1)] = kinds[-1].lower()
    return metrics


def unlabelled_metrics(root, dirs=METRIC_DIRS):
    """Metrics registered with an empty label set at construction (.Add({}) in
    the same statement, or through a helper such as SimpleGauge): a scrape
    shows them from the start. Labelled families appear only once used.
    Only the *_metrics.cc files count: the scrape-time collectors elsewhere
    (gpu_collector.cc, data_dir_collector.cc) export what the host has."""
    out = set()
    for src, m in _metric_literals(root, dirs, "_metrics.cc"):
        # The statement, or the member initializer in a constructor's list.
        ends = [i for i in (src.find(";", m.end()), src.find("Build", m.end()),
                            src.find(".Name(", m.end())) if i >= 0]
        statement = src[m.end():min(ends) if ends else len(src)]
        via_name = re.search(r"\.Name\(\s*$", src[:m.start()]) is not None
        # A helper named *Family(registry, "baq_...") registers a labelled family.
        via_family = re.search(r"\w*Family\(\s*(?:\w+\s*,\s*)?$", src[:m.start()]) is not None
        if re.search(r"\.Add\(\s*\{\s*\}", statement) or not (via_name or via_family):
            out.add(m.group(1))
    return out


def exported_labels(root, dirs=METRIC_DIRS):
    """Label names used in .Add({{"label", ...}}) calls of the metrics code,
    and in label.push_back({"label", ...}) of the scrape-time collectors."""
    labels = set()
    for src in _cc_sources(root, dirs, "_metrics.cc"):
        for add in re.finditer(r"\.Add\(", src):
            labels |= set(re.findall(r'\{\s*"(\w+)"\s*,', _balanced(src, add.end() - 1)))
    for src in _cc_sources(root, dirs, "_collector.cc"):
        labels |= set(re.findall(r'label\.push_back\(\s*\{\s*"(\w+)"\s*,', src))
    return labels


def _balanced(src, open_paren):
    """The text inside the parentheses that open at src[open_paren]."""
    depth = 0
    for i in range(open_paren, len(src)):
        if src[i] == "(":
            depth += 1
        elif src[i] == ")":
            depth -= 1
            if depth == 0:
                return src[open_paren + 1:i]
    return src[open_paren + 1:]


def series_names(metrics):
    """The names a scrape shows for `metrics` ({name: type})."""
    out = set()
    for name, kind in metrics.items():
        out.add(name)
        if kind == "histogram":
            out |= {name + "_bucket", name + "_sum", name + "_count"}
        elif kind == "summary":
            out |= {name + "_sum", name + "_count"}
    return out


_PROMQL_WORDS = {
    "and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left",
    "group_right", "offset", "inf", "nan", "atan2", "start", "end",
}


def _strip_promql(expr):
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    s = re.sub(r"\$\{[^}]*\}|\$\w+|\[\[[^\]]*\]\]", " ", s)  # Grafana variables
    return s


def promql_label_names(expr):
    """Label names in matchers {l="v"}, by/without/on/ignoring (...) clauses."""
    s = _strip_promql(expr)
    labels = set()
    for block in re.findall(r"\{([^}]*)\}", s):
        labels |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", block))
    for block in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)",
                            s):
        labels |= set(re.findall(r"[A-Za-z_]\w*", block))
    return labels


def promql_metric_names(expr):
    """Metric names an expression selects (functions, keywords, labels removed)."""
    s = _strip_promql(expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\boffset\s+-?\w+", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?", s):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _PROMQL_WORDS:
            continue
        names.add(word)
    return names


class Report:
    """Collects failures and notes; prints them and returns the exit status."""

    def __init__(self, name):
        self.name = name
        self.failures = []
        self.notes = []
        self.checks = 0

    def check(self, ok, message):
        self.checks += 1
        if not ok:
            self.failures.append(message)
        return ok

    def note(self, message):
        self.notes.append(message)

    def finish(self):
        for n in self.notes:
            print("note: " + n)
        for f in self.failures:
            print("FAIL: " + f)
        passed = self.checks - len(self.failures)
        print("%s: %d passed, %d failed" % (self.name, passed, len(self.failures)))
        return 1 if self.failures else 0
