#!/usr/bin/env python3
"""Lints deploy/docker/Dockerfile.* against the repository they build.

No Docker engine runs in CI, so the images cannot be built there; this keeps
the Dockerfiles correct by construction instead. For every Dockerfile:

  * it is multi-stage, and the final stage runs as a non-root USER and has a
    HEALTHCHECK (not NONE) whose probe binary the image builds;
  * every COPY source exists in the repo and is not excluded by the
    Dockerfile's .dockerignore; every COPY --from names an earlier stage;
  * every `cmake --build --target T` names a CMake target, and every build/...
    binary it copies is the output of one of those targets (or of a g++ -o
    in the same RUN); repo paths named in RUN lines exist;
  * every flag in CMD (for a baq daemon ENTRYPOINT) or in the entrypoint
    script's *_ARGS arrays is an ABSL_FLAG of that binary's main.cc;
  * the HEALTHCHECK probes a port the daemon listens on, and the listening
    ports are EXPOSEd;
  * the CUDA worker image installs only packages that .ci/install-deps lists
    (plus the few it documents), and the coordinator image builds no
    LibTorch-linked target;
  * the per-Dockerfile .dockerignore files exist and are identical;
  * hadolint and shellcheck pass, where installed (CI has shellcheck only if
    someone installs it; the test notes what it skipped).

Usage: dockerfile_lint_test.py [--source-dir REPO]
"""

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # No __pycache__ in the source tree.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baq_sources as src  # noqa: E402

DOCKER_DIR = "deploy/docker"
DOCKERFILES = ["Dockerfile.coordinator", "Dockerfile.worker", "Dockerfile.allinone"]
HEALTH_PROBE_SRC = "deploy/docker/baq_health_probe.cc"
# Packages Dockerfile.worker may install beyond .ci/install-deps: the venv for
# the CUDA LibTorch wheel and NCCL (BAQ_WITH_NCCL=ON).
WORKER_EXTRA_PACKAGES = {"python3", "python3-venv", "libnccl-dev"}
# Targets that link LibTorch: not in the slim coordinator image.
TORCH_TARGETS = {"baq_worker_main", "baq_cli_main"}


def parse_dockerfile(text):
    """[(INSTRUCTION, args string, line number)] with continuations joined."""
    out = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        start = i + 1
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.rstrip().endswith("\\") and i < len(lines):
            nxt = lines[i]
            i += 1
            if nxt.lstrip().startswith("#"):
                continue  # Comments inside a continued instruction are dropped.
            line = line.rstrip()[:-1] + " " + nxt.strip()
        parts = line.strip().split(None, 1)
        out.append((parts[0].upper(), parts[1] if len(parts) > 1 else "", start))
    return out


def exec_form(args):
    """["a", "b"] JSON form or shell form -> list of words."""
    args = args.strip()
    if args.startswith("["):
        import json
        return json.loads(args)
    return shlex.split(args)


def flags_in(words):
    """{flag name: value or None} of --flag[=value] words."""
    out = {}
    for w in words:
        m = re.match(r"^--?([A-Za-z][\w-]*)(?:=(.*))?$", w)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def port_of(address):
    m = re.search(r":(\d+)$", address or "")
    return int(m.group(1)) if m else None


def dockerignore_patterns(path):
    pats = []
    for line in src.read(path).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            pats.append(line.rstrip("/"))
    return pats


def ignored(rel, patterns):
    rel = rel.rstrip("/")
    for p in patterns:
        if p.startswith("!"):
            continue
        if fnmatch.fnmatch(rel, p) or rel.startswith(p + "/") or \
                fnmatch.fnmatch(rel.split("/")[0], p):
            return True
    return False


def script_arg_arrays(script_text):
    """{binary: [words]} from NAME_ARGS=(...) arrays and `binary "${NAME_ARGS[@]}"` calls."""
    arrays = {}
    for m in re.finditer(r"^(\w+_ARGS)=\((.*?)^\)", script_text, re.S | re.M):
        words = []
        for line in m.group(2).splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                words += shlex.split(line)
        arrays[m.group(1)] = words
    out = {}
    for m in re.finditer(r'^\s*([\w-]+)\s+"\$\{(\w+_ARGS)\[@\]\}"', script_text, re.M):
        out[m.group(1)] = arrays.get(m.group(2), [])
    return out


def install_deps_packages(root):
    text = src.read(os.path.join(root, ".ci/install-deps"))
    m = re.search(r"PACKAGES=\((.*?)\)", text, re.S)
    return set(m.group(1).split()) if m else set()


def apt_installed(run_args):
    """Package names after `apt-get install` options, up to the next && or ;."""
    pkgs = set()
    for m in re.finditer(r"apt-get install((?:\s+[^&;|]+))", run_args):
        for w in m.group(1).split():
            if re.match(r"^[a-z0-9][a-z0-9+.-]+$", w):  # not options or $(cat list)
                pkgs.add(w)
    return pkgs


def check_dockerfile(root, name, report, binaries, targets):
    path = os.path.join(root, DOCKER_DIR, name)
    if not report.check(os.path.exists(path), "%s missing" % name):
        return
    instrs = parse_dockerfile(src.read(path))
    where = "%s" % name
    stages = []  # [(name, [instructions])]
    for ins in instrs:
        if ins[0] == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", ins[1], re.I)
            stages.append((m.group(2) or str(len(stages)), []))
        elif stages:
            stages[-1][1].append(ins)
    report.check(len(stages) >= 2, "%s: not multi-stage (%d stages)" % (where, len(stages)))
    if not stages:
        return
    final_name, final = stages[-1]

    # Non-root user in the final stage.
    users = [a for (i, a, _) in final if i == "USER"]
    report.check(bool(users), "%s: final stage sets no USER (runs as root)" % where)
    if users:
        user = users[-1].split(":")[0].strip()
        report.check(user not in ("root", "0"), "%s: final USER is root" % where)

    # HEALTHCHECK with a probe the image builds.
    health = [a for (i, a, _) in final if i == "HEALTHCHECK"]
    report.check(bool(health), "%s: no HEALTHCHECK in the final stage" % where)
    health_ports = []
    if health:
        h = health[-1]
        report.check(not h.strip().upper().startswith("NONE"), "%s: HEALTHCHECK NONE" % where)
        cmd = h[h.upper().index("CMD") + 3:] if "CMD" in h.upper() else ""
        words = exec_form(cmd) if cmd.strip() else []
        joined = " ".join(words)
        report.check("baq-health-probe" in joined,
                     "%s: HEALTHCHECK does not use baq-health-probe" % where)
        health_ports = [int(p) for p in re.findall(r"--addr=[\w.\[\]:]*:(\d+)", joined)]
        report.check(bool(health_ports), "%s: HEALTHCHECK probes no --addr port" % where)

    all_runs = " ".join(a for (_, ins) in stages for (i, a, _) in ins if i == "RUN")
    report.check(HEALTH_PROBE_SRC in all_runs,
                 "%s: no stage compiles %s for the HEALTHCHECK" % (where, HEALTH_PROBE_SRC))
    report.check("deploy/docker/runtime-packages.sh" in all_runs,
                 "%s: runtime packages are not derived with runtime-packages.sh" % where)

    # .dockerignore next to the Dockerfile.
    ignore_path = path + ".dockerignore"
    report.check(os.path.exists(ignore_path), "%s: %s.dockerignore missing" % (where, name))
    patterns = dockerignore_patterns(ignore_path) if os.path.exists(ignore_path) else []

    stage_names = set()
    built_targets = set()
    for sname, ins_list in stages:
        for ins, args, line in ins_list:
            loc = "%s:%d" % (name, line)
            if ins == "COPY":
                words = args.split()
                opts = [w for w in words if w.startswith("--")]
                paths = [w for w in words if not w.startswith("--")]
                from_stage = [o.split("=", 1)[1] for o in opts if o.startswith("--from=")]
                if from_stage:
                    report.check(from_stage[0] in stage_names,
                                 "%s: COPY --from=%s names no earlier stage"
                                 % (loc, from_stage[0]))
                    continue
                for s in paths[:-1]:
                    if s == ".":
                        continue
                    report.check(os.path.exists(os.path.join(root, s)),
                                 "%s: COPY source %s does not exist" % (loc, s))
                    report.check(not ignored(s, patterns),
                                 "%s: COPY source %s is excluded by .dockerignore" % (loc, s))
            elif ins == "RUN":
                for m in re.finditer(r"--target((?:\s+[A-Za-z_]\w*)+)", args):
                    for t in m.group(1).split():
                        built_targets.add(t)
                        report.check(t in targets, "%s: --target %s is not a CMake target"
                                     % (loc, t))
                produced = set(re.findall(r"-o\s+(build/[\w.-]+)", args))
                for b in set(re.findall(r"\b(build/[\w./-]+)", args)) - produced:
                    if b.endswith("/"):
                        continue
                    match = [out for out, (t, d, _) in binaries.items()
                             if os.path.relpath(os.path.join(d, out), root) == b[len("build/"):]]
                    report.check(bool(match), "%s: %s is no baq_cc_binary output" % (loc, b))
                    for out in match:
                        report.check(binaries[out][0] in built_targets,
                                     "%s: copies %s but builds no --target %s"
                                     % (loc, b, binaries[out][0]))
                for p in set(re.findall(r"(?<![\w/.-])((?:deploy|\.ci|tools|examples)/[\w./-]+)",
                                        args)):
                    report.check(os.path.exists(os.path.join(root, p)),
                                 "%s: RUN names %s, which does not exist" % (loc, p))
                if name == "Dockerfile.worker":
                    allowed = install_deps_packages(root) | WORKER_EXTRA_PACKAGES
                    for pkg in sorted(apt_installed(args)):
                        report.check(pkg in allowed,
                                     "%s: installs %s, which .ci/install-deps does not list"
                                     % (loc, pkg))
        stage_names.add(sname)

    if name == "Dockerfile.coordinator":
        report.check(not (built_targets & TORCH_TARGETS),
                     "%s: builds LibTorch targets %s into the slim coordinator image"
                     % (where, sorted(built_targets & TORCH_TARGETS)))

    # What runs, with which flags, on which ports.
    entry = [a for (i, a, _) in final if i == "ENTRYPOINT"]
    cmd = [a for (i, a, _) in final if i == "CMD"]
    exposed = set()
    for a in [a for (i, a, _) in final if i == "EXPOSE"]:
        exposed |= {int(p.split("/")[0]) for p in a.split()}
    report.check(bool(entry), "%s: no ENTRYPOINT" % where)
    if not entry:
        return
    entry_words = exec_form(entry[-1])
    runs = {}  # binary -> [argument words]
    if entry_words[0] in binaries:
        runs[entry_words[0]] = entry_words[1:] + (exec_form(cmd[-1]) if cmd else [])
    else:
        script = os.path.join(root, DOCKER_DIR, os.path.basename(entry_words[0]))
        if report.check(os.path.exists(script), "%s: ENTRYPOINT %s is neither a baq binary nor "
                        "a script in %s" % (where, entry_words[0], DOCKER_DIR)):
            report.check(("deploy/docker/" + os.path.basename(script)) in all_runs,
                         "%s: the image does not copy %s" % (where, entry_words[0]))
            runs = script_arg_arrays(src.read(script))
            report.check(bool(runs), "%s: %s starts no baq daemon with *_ARGS arrays"
                         % (where, entry_words[0]))
    listen_ports = set()
    for binary, words in runs.items():
        if not report.check(binary in binaries, "%s: runs unknown binary %s" % (where, binary)):
            continue
        main_cc = binaries[binary][2]
        accepted = src.accepted_flags(main_cc)
        used = flags_in(words)
        if accepted is None:
            report.note("%s: %s does not exist yet; flags %s of %s unchecked"
                        % (where, os.path.relpath(main_cc, root), sorted(used), binary))
        else:
            for f in sorted(used):
                report.check(f in accepted, "%s: %s has no flag --%s (%s)"
                             % (where, binary, f, os.path.relpath(main_cc, root)))
        for f in ("listen", "metrics_listen"):
            if used.get(f):
                port = port_of(used[f])
                if f == "listen":
                    listen_ports.add(port)
                if used[f].startswith("0.0.0.0:"):
                    report.check(port in exposed, "%s: %s --%s port %s is not EXPOSEd"
                                 % (where, binary, f, port))
    for p in health_ports:
        report.check(p in listen_ports, "%s: HEALTHCHECK probes port %d, but no daemon "
                     "--listen's on it (%s)" % (where, p, sorted(listen_ports)))


def run_tool(report, tool, args, what):
    exe = shutil.which(tool)
    if not exe:
        report.note("%s not installed; %s not run" % (tool, what))
        return
    r = subprocess.run([exe] + args, capture_output=True, text=True)
    report.check(r.returncode == 0, "%s %s:\n%s%s" % (tool, " ".join(args), r.stdout, r.stderr))


def main():
    root = src.repo_root()
    report = src.Report("dockerfile_lint_test")
    binaries = src.cmake_binaries(root)
    targets = src.cmake_targets(root)
    for out, (target, d, main_cc) in sorted(binaries.items()):
        if main_cc and not os.path.exists(main_cc):
            report.note("%s (%s) is defined only once %s exists"
                        % (target, out, os.path.relpath(main_cc, root)))
    for name in DOCKERFILES:
        check_dockerfile(root, name, report, binaries, targets)

    ignores = [os.path.join(root, DOCKER_DIR, n + ".dockerignore") for n in DOCKERFILES]
    texts = {src.read(p) for p in ignores if os.path.exists(p)}
    report.check(len(texts) == 1, "the Dockerfile.*.dockerignore files differ")
    for text in texts:
        pats = [line.strip() for line in text.splitlines()]
        for must in (".git", "build", "build-*"):
            report.check(must in pats, ".dockerignore does not exclude %s" % must)

    for name in DOCKERFILES:
        run_tool(report, "hadolint", [os.path.join(root, DOCKER_DIR, name)], "hadolint " + name)
    scripts = [os.path.join(root, DOCKER_DIR, f) for f in sorted(os.listdir(
        os.path.join(root, DOCKER_DIR))) if f.endswith(".sh")]
    for s in scripts:
        report.check(os.access(s, os.X_OK), "%s is not executable" % os.path.relpath(s, root))
    run_tool(report, "shellcheck", scripts, "shellcheck of deploy/docker/*.sh")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
