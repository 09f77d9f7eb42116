"""A small Go text/template + Helm renderer, enough for deploy/helm/baq.

CI has no `helm` binary (and no Go toolchain new enough to build one), so the
chart tests render the templates with this instead. It implements the subset
of text/template and of Helm's functions that the chart uses, and is stricter
than Helm where strictness finds bugs:

  * a missing key under .Values is an error, not an empty string, so a typo
    in a template (or a value renamed in values.yaml only) fails the test;
  * an unknown function is an error.

Fidelity: tests/deploy/helm_chart_test.py --compare-helm renders the chart
with both this and real Helm (a `helm` binary, or the helm_python package)
and compares the parsed manifests, so a divergence shows up there.

Supported: {{ }} actions with `-` trimming, .Files.Get, comments, pipelines, parenthesized
sub-pipelines, variables ($x := / $x =, $ for the root), if/else if/else,
with/else, range (with one or two variables), define, and the functions in
FUNCS below (Go's and, or, not, eq, ne, lt, le, gt, ge, len, index, printf, print;
Sprig's default, trunc, trimSuffix, contains, replace, quote, join, until,
list, append, int, add, sub, toString, empty, hasKey, fail; Helm's include,
required, toYaml, fromYaml, nindent, indent).
"""

import re

import yaml


class TemplateError(Exception):
    pass


_NOFINAL = object()  # "no piped value" (None is a value).


# --------------------------------------------------------------------------
# Lexing: text and actions, with {{- and -}} trimming applied.

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)


def _lex(src, name):
    """Yields ("text", str) and ("action", str, lineno) tokens."""
    tokens = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(src):
        text = src[pos:m.start()]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        tokens.append(("text", text))
        body = m.group(2).strip()
        line = src.count("\n", 0, m.start()) + 1
        if not (body.startswith("/*") and body.endswith("*/")):
            tokens.append(("action", body, "%s:%d" % (name, line)))
        trim_next = bool(m.group(3))
        pos = m.end()
    text = src[pos:]
    if trim_next:
        text = text.lstrip(" \t\r\n")
    tokens.append(("text", text))
    return tokens


# --------------------------------------------------------------------------
# Parsing actions into pipelines.

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")
     |(?P<raw>`[^`]*`)
     |(?P<num>-?\d+(?:\.\d+)?)
     |(?P<decl>:=)
     |(?P<assign>=)
     |(?P<pipe>\|)
     |(?P<lp>\()
     |(?P<rp>\))
     |(?P<comma>,)
     |(?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
     |(?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
     |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    )""", re.X)


def _tokenize(expr, where):
    out = []
    pos = 0
    expr = expr.rstrip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise TemplateError("%s: cannot parse %r" % (where, expr[pos:]))
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
        # A field chain right after ")" applies to the parenthesized value.
        if kind == "rp":
            m2 = re.match(r"((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", expr[pos:])
            if m2:
                out.append(("postfield", m2.group(1)))
                pos += m2.end()
    return out


class _Parser:
    def __init__(self, tokens, where):
        self.t = tokens
        self.i = 0
        self.where = where

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else (None, None)

    def next(self):
        tok = self.peek()
        self.i += 1
        return tok

    def pipeline(self, stop=None):
        """[decl] command ('|' command)*; returns ("pipe", decls, op, cmds)."""
        decls, op = [], None
        # Variable declaration: $a := ..., $a, $b := ..., or $a = ...
        j = self.i
        names = []
        while j < len(self.t) and self.t[j][0] == "var":
            names.append(self.t[j][1])
            if j + 1 < len(self.t) and self.t[j + 1][0] == "comma":
                j += 2
                continue
            j += 1
            break
        if names and j < len(self.t) and self.t[j][0] in ("decl", "assign"):
            decls, op = names, self.t[j][0]
            self.i = j + 1
        cmds = [self.command(stop)]
        while self.peek()[0] == "pipe":
            self.next()
            cmds.append(self.command(stop))
        return ("pipe", decls, op, cmds)

    def command(self, stop):
        args = []
        while True:
            kind, _ = self.peek()
            if kind is None or kind in ("pipe", "rp"):
                break
            args.append(self.operand())
        if not args:
            raise TemplateError("%s: empty command" % self.where)
        return args

    def operand(self):
        kind, val = self.next()
        if kind == "str":
            return ("lit", bytes(val[1:-1], "utf-8").decode("unicode_escape"))
        if kind == "raw":
            return ("lit", val[1:-1])
        if kind == "num":
            return ("lit", float(val) if "." in val else int(val))
        if kind == "var":
            parts = val.split(".")
            return ("var", parts[0], parts[1:])
        if kind == "field":
            return ("field", [p for p in val.split(".") if p])
        if kind == "ident":
            if val in ("true", "false"):
                return ("lit", val == "true")
            if val == "nil":
                return ("lit", None)
            return ("func", val)
        if kind == "lp":
            inner = self.pipeline()
            if self.next()[0] != "rp":
                raise TemplateError("%s: missing )" % self.where)
            fields = []
            if self.peek()[0] == "postfield":
                fields = [p for p in self.next()[1].split(".") if p]
            return ("paren", inner, fields)
        raise TemplateError("%s: unexpected %r" % (self.where, val))


def _parse_pipeline(expr, where):
    p = _Parser(_tokenize(expr, where), where)
    pipe = p.pipeline()
    if p.peek()[0] is not None:
        raise TemplateError("%s: trailing tokens in %r" % (where, expr))
    return pipe


_KEYWORD = re.compile(
    r"^(if|else if|else with|else|end|range|with|define|template|block)\b\s*(.*)$", re.S)


def _parse(tokens, defines):
    """Builds the node tree; `define` bodies go to `defines`."""
    root = []
    stack = [("root", root)]

    def body():
        return stack[-1][1]

    for tok in tokens:
        if tok[0] == "text":
            if tok[1]:
                body().append(("text", tok[1]))
            continue
        _, action, where = tok
        m = _KEYWORD.match(action)
        kw, rest = (m.group(1), m.group(2)) if m else (None, action)
        if kw in ("if", "with", "range"):
            node = {"kind": kw, "branches": [(_parse_pipeline(rest, where), [])], "else": None,
                    "where": where}
            body().append(("block", node))
            stack.append((kw, node["branches"][0][1], node))
        elif kw in ("else if", "else with"):
            frame = stack.pop()
            node = frame[2]
            branch = (_parse_pipeline(rest, where), [])
            node["branches"].append(branch)
            stack.append((frame[0], branch[1], node))
        elif kw == "else":
            frame = stack.pop()
            node = frame[2]
            node["else"] = []
            stack.append((frame[0], node["else"], node))
        elif kw == "end":
            frame = stack.pop()
            if frame[0] == "root":
                raise TemplateError("%s: unexpected end" % where)
        elif kw == "define":
            name = re.match(r'^"([^"]+)"$', rest.strip())
            if not name:
                raise TemplateError("%s: bad define %r" % (where, rest))
            nodes = []
            defines[name.group(1)] = nodes
            stack.append(("define", nodes, None))
        elif kw in ("template", "block"):
            raise TemplateError("%s: use include, not %s" % (where, kw))
        else:
            body().append(("action", _parse_pipeline(action, where), where))
    if len(stack) != 1:
        raise TemplateError("unclosed %s" % stack[-1][0])
    return root


# --------------------------------------------------------------------------
# Evaluation.

class _Missing:
    """A missing map key (Helm prints it as empty; strict mode raises)."""


def truth(v):
    if v is None or v is _Missing:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v != 0
    if isinstance(v, (str, list, dict, tuple)):
        return len(v) > 0
    return True


def to_string(v):
    if v is None or v is _Missing:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(to_string(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join("%s:%s" % (k, to_string(v[k])) for k in sorted(v)) + "]"
    return str(v)


def to_yaml(v):
    if v is None or v is _Missing:
        return "null"
    return yaml.safe_dump(v, default_flow_style=False, sort_keys=True,
                          allow_unicode=True).rstrip("\n").removesuffix("\n...")


def _go_printf(fmt, *args):
    out, i, k = [], 0, 0
    while i < len(fmt):
        c = fmt[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        verb = fmt[i + 1]
        i += 2
        if verb == "%":
            out.append("%")
            continue
        a = args[k]
        k += 1
        if verb in ("s", "v"):
            out.append(to_string(a))
        elif verb == "d":
            out.append(str(int(a)))
        elif verb == "q":
            out.append(_quote1(to_string(a)))
        else:
            raise TemplateError("printf verb %%%s unsupported" % verb)
    return "".join(out)


def _quote1(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _indent(n, s):
    pad = " " * int(n)
    return "\n".join(pad + line for line in to_string(s).split("\n"))


def _eq(a, *bs):
    return any(a == b for b in bs)


def _required(msg, v):
    if v is None or v is _Missing or (isinstance(v, str) and v == ""):
        raise TemplateError("required: " + msg)
    return v


def _fail(msg):
    raise TemplateError("fail: " + msg)


def _index(coll, *keys):
    for k in keys:
        if isinstance(coll, dict):
            coll = coll.get(k)
        else:
            coll = coll[int(k)]
    return coll


FUNCS = {
    "not": lambda v: not truth(v),
    "eq": _eq,
    "ne": lambda a, b: a != b,
    "len": lambda v: len(v),
    "index": _index,
    "printf": _go_printf,
    "print": lambda *a: "".join(to_string(x) for x in a),
    "default": lambda d, v=None: v if truth(v) else d,
    "trunc": lambda n, s: to_string(s)[:int(n)] if int(n) >= 0 else to_string(s)[int(n):],
    "trimSuffix": lambda suf, s: to_string(s)[:-len(suf)] if suf and to_string(s).endswith(suf)
    else to_string(s),
    "contains": lambda sub, s: sub in to_string(s),
    "replace": lambda old, new, s: to_string(s).replace(old, new),
    "quote": lambda *a: " ".join(_quote1(to_string(x)) for x in a if x is not None),
    "join": lambda sep, lst: sep.join(to_string(x) for x in (lst or [])),
    "until": lambda n: list(range(int(n))),
    "list": lambda *a: list(a),
    "append": lambda lst, v: list(lst or []) + [v],
    "int": lambda v: int(float(v)) if v not in (None, "") and v is not _Missing else 0,
    "toString": to_string,
    "empty": lambda v: not truth(v),
    "hasKey": lambda d, k: isinstance(d, dict) and k in d,
    "required": _required,
    "fail": _fail,
    "add": lambda *a: sum(int(x) for x in a),
    "sub": lambda a, b: int(a) - int(b),
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "toYaml": to_yaml,
    "nindent": lambda n, s: "\n" + _indent(n, s),
    "fromYaml": lambda s: yaml.safe_load(s) or {},
    "indent": _indent,
}


class Renderer:
    """Renders the templates of one chart directory with given values."""

    def __init__(self, files, strict=True):
        """`files`: {name: source} of every template, helpers included."""
        self.defines = {}
        self.trees = {}
        self.strict = strict
        for name, src in sorted(files.items()):
            self.trees[name] = _parse(_lex(src, name), self.defines)

    def render(self, name, data):
        out = []
        self._exec(self.trees[name], data, [{"$": data}], out)
        return "".join(out)

    # -- internals --------------------------------------------------------

    def _lookup_var(self, scopes, name):
        for scope in reversed(scopes):
            if name in scope:
                return scope[name]
        raise TemplateError("undefined variable %s" % name)

    def _field(self, v, path, where):
        for i, p in enumerate(path):
            if isinstance(v, dict):
                if p not in v:
                    if self.strict and path[0] == "Values":
                        raise TemplateError("%s: missing value .%s" % (where, ".".join(path)))
                    v = _Missing
                    continue
                v = v[p]
            elif v is None or v is _Missing:
                if self.strict:
                    raise TemplateError("%s: nil pointer evaluating .%s" % (where, ".".join(path)))
                return _Missing
            else:
                raise TemplateError("%s: cannot take .%s of %r" % (where, p, v))
        return v

    def _operand(self, op, dot, scopes, where, final=None):
        final = _NOFINAL if final is None else final
        kind = op[0]
        if kind == "lit":
            return op[1]
        if kind == "field":
            return self._field(dot, op[1], where)
        if kind == "var":
            v = self._lookup_var(scopes, op[1])
            return self._field(v, op[2], where) if op[2] else v
        if kind == "paren":
            v = self._pipe(op[1], dot, scopes, where)
            return self._field(v, op[2], where) if op[2] else v
        if kind == "func":
            return self._call(op[1], [], dot, scopes, where, final)
        raise TemplateError("%s: bad operand %r" % (where, op))

    def _call(self, fname, arg_ops, dot, scopes, where, final):
        if fname in ("and", "or"):
            # Go evaluates lazily and returns the deciding operand; a piped
            # value is the last operand.
            v = None
            for o in arg_ops:
                v = self._operand(o, dot, scopes, where)
                if (fname == "and") != truth(v):
                    return v
            return final if final is not _NOFINAL else v
        args = [self._operand(o, dot, scopes, where) for o in arg_ops]
        if final is not _NOFINAL:
            args.append(final)
        if fname == "include":
            name, data = args
            if name not in self.defines:
                raise TemplateError("%s: no template %r" % (where, name))
            out = []
            self._exec(self.defines[name], data, [{"$": data}], out)
            return "".join(out)
        if fname not in FUNCS:
            raise TemplateError("%s: unknown function %s" % (where, fname))
        try:
            return FUNCS[fname](*args)
        except TemplateError:
            raise
        except Exception as e:  # A wrong argument count or type.
            raise TemplateError("%s: %s: %s" % (where, fname, e))

    def _pipe(self, pipe, dot, scopes, where):
        _, decls, op, cmds = pipe
        v = _NOFINAL
        for cmd in cmds:
            head = cmd[0]
            if head[0] == "func":
                v = self._call(head[1], cmd[1:], dot, scopes, where, v)
            else:
                target = self._operand(head, dot, scopes, where)
                if callable(target):  # A method, e.g. .Files.Get "path".
                    args = [self._operand(o, dot, scopes, where) for o in cmd[1:]]
                    if v is not _NOFINAL:
                        args.append(v)
                    v = target(*args)
                    continue
                if len(cmd) > 1 or v is not _NOFINAL:
                    raise TemplateError("%s: cannot call a non-function" % where)
                v = target
        if decls and op == "decl":
            scopes[-1][decls[0]] = v
        elif decls and op == "assign":
            for scope in reversed(scopes):
                if decls[0] in scope:
                    scope[decls[0]] = v
                    break
            else:
                raise TemplateError("%s: assignment to undeclared %s" % (where, decls[0]))
        return v

    def _exec(self, nodes, dot, scopes, out):
        for node in nodes:
            if node[0] == "text":
                out.append(node[1])
            elif node[0] == "action":
                _, pipe, where = node
                v = self._pipe(pipe, dot, scopes, where)
                if not pipe[1]:  # Declarations print nothing.
                    if v is _Missing:
                        v = None
                    out.append(to_string(v))
            else:
                self._block(node[1], dot, scopes, out)

    def _block(self, node, dot, scopes, out):
        kind, where = node["kind"], node["where"]
        if kind == "range":
            pipe, body = node["branches"][0]
            _, decls, _, cmds = pipe
            coll = self._pipe(("pipe", [], None, cmds), dot, scopes, where)
            items = []
            if isinstance(coll, dict):
                items = [(k, coll[k]) for k in sorted(coll)]
            elif isinstance(coll, (list, tuple)):
                items = list(enumerate(coll))
            elif isinstance(coll, int):
                items = list(enumerate(range(coll)))
            if not items:
                if node["else"] is not None:
                    self._exec(node["else"], dot, scopes + [{}], out)
                return
            for k, v in items:
                scope = {}
                if len(decls) == 1:
                    scope[decls[0]] = v
                elif len(decls) == 2:
                    scope[decls[0]], scope[decls[1]] = k, v
                self._exec(body, v, scopes + [scope], out)
            return
        for pipe, body in node["branches"]:
            scope = {}
            v = self._pipe(pipe, dot, scopes + [scope], where)
            if truth(v):
                self._exec(body, v if kind == "with" else dot, scopes + [scope], out)
                return
        if node["else"] is not None:
            self._exec(node["else"], dot, scopes + [{}], out)


# --------------------------------------------------------------------------
# Helm on top: values merging, the built-in objects, and manifests.

def merge_values(base, override):
    """Helm's coalescing: maps merge recursively, anything else replaces."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        return override
    out = dict(base)
    for k, v in override.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_values(out[k], v)
        else:
            out[k] = v
    return out


def _chart_file(chart_dir, path):
    import os
    full = os.path.join(chart_dir, path)
    if path.startswith("templates/") or not os.path.isfile(full):
        return ""
    with open(full, encoding="utf-8") as f:
        return f.read()


def render_chart(chart_dir, overrides=None, release="baq", namespace="default", strict=True):
    """Returns {template path: rendered text} like `helm template`."""
    import os
    with open(os.path.join(chart_dir, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    with open(os.path.join(chart_dir, "values.yaml")) as f:
        values = yaml.safe_load(f) or {}
    values = merge_values(values, overrides or {})
    tdir = os.path.join(chart_dir, "templates")
    files = {}
    for fname in sorted(os.listdir(tdir)):
        with open(os.path.join(tdir, fname)) as f:
            files[fname] = f.read()
    r = Renderer(files, strict=strict)
    data = {
        "Values": values,
        "Chart": {"Name": chart["name"], "Version": chart["version"],
                  "AppVersion": chart.get("appVersion", "")},
        "Release": {"Name": release, "Namespace": namespace, "Service": "Helm",
                    "IsInstall": True, "IsUpgrade": False, "Revision": 1},
        "Template": {"BasePath": chart["name"] + "/templates"},
        # Helm's .Files.Get: a chart file's text ("" when absent), symbolic
        # links followed as Helm's loader does.
        "Files": {"Get": lambda path: _chart_file(chart_dir, path)},
    }
    out = {}
    for fname in files:
        if fname.startswith("_"):
            continue
        data["Template"]["Name"] = chart["name"] + "/templates/" + fname
        out[fname] = r.render(fname, data)
    return out
