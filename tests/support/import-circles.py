#!/usr/bin/env python3
"""Import circles between the files of src/ (issue 18); run by `make lint`.

A file uses another when one of its paths names an item of the other's
module: `use crate::…`, `use super::…`, `use self::…`, `use child::…` of a
child module it declares (with nested braces, `pub use` too), and inline
`crate::a::b::X` / `super::x::Y` paths.  Each path goes to the file of the
longest module prefix that exists (src/a/b.rs and src/a/b/mod.rs are
crate::a::b, src/lib.rs is crate; `#[path]` is followed; a crate-root
`#[macro_export]` macro goes to the file defining it).  `mod x;` is not a
use, and a file using itself (its own test module) is no edge.  src/bin/*
are crates of their own and are left out.

A circle is a set of files each reaching every other through these edges
(a strongly connected component); each is printed with the edges inside it
and the names that tie them.  Exit 1 if there is any, else 0.

    python3 tests/support/import-circles.py [SRC_DIR]   (default: ./src)
    python3 tests/support/import-circles.py --self-test
"""
import os
import re
import sys
import tempfile

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
RAW = re.compile(r'b?r(#*)"')  # a raw string's start
CHAR = re.compile(r"'(\\u\{[0-9a-fA-F]+\}|\\x[0-9a-fA-F]{2}|\\.|[^\\'])'")  # not a lifetime


def strip(text):
    """The code with comments, strings and char literals blanked (lines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    out.append("\n" if text[i] == "\n" else "")
                    i += 1
        elif c in "br" and RAW.match(text, i) and not re.match(r"\w", text[i - 1:i]):
            m = RAW.match(text, i)
            end = text.find('"' + m.group(1), m.end())
            end = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'":
            m = CHAR.match(text, i)
            if m:
                out.append("' '")
                i = m.end()
            else:  # a lifetime or label
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_of(rel):
    """src-relative file path -> module path as a tuple ('crate', ...)."""
    parts = rel[:-3].split("/")
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return ("crate", *parts)


def use_paths(tree):
    """Expand one use tree (`a::{b, c::{d, e}}`) into full paths."""
    tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+" + IDENT, "", tree))
    paths, stack, prefix, cur = [], [], [], ""
    for ch in tree + ",":
        if ch == "{":
            stack.append(prefix)
            prefix = prefix + [p for p in cur.split("::") if p]
            cur = ""
        elif ch in ",}":
            if cur:
                paths.append(prefix + [p for p in cur.split("::") if p])
            cur = ""
            if ch == "}":
                prefix = stack.pop()
        else:
            cur += ch
    return paths


def scan(path, src_dir):
    """[(path segments as written, inline-module scope)] and child modules."""
    code = strip(open(path, encoding="utf-8").read())
    found, children = [], {}
    # Inline modules (`mod tests { … }`) change what `super` and `self` mean.
    scopes, depth, opened = [], 0, []
    token = re.compile(r"\bmod\s+(" + IDENT + r")\s*([;{])|[{}]"
                       r"|\b(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);"
                       r"|(?<![\w:])\$?((?:crate|super|self)(?:::" + IDENT + r")+)")
    raw = open(path, encoding="utf-8").read()
    for m in re.finditer(r"#\[path\s*=\s*\"([^\"]+)\"\]\s*(?:#\[[^\]]*\]\s*)*mod\s+(" + IDENT + ")", raw):
        target = os.path.normpath(os.path.join(os.path.dirname(path), m.group(1)))
        children[m.group(2)] = os.path.relpath(target, src_dir)
    for m in token.finditer(code):
        text = m.group(0)
        if m.group(1):
            if not scopes:
                children.setdefault(m.group(1), None)
            if m.group(2) == "{":
                depth += 1
                scopes.append(m.group(1))
                opened.append(depth)
        elif text == "{":
            depth += 1
        elif text == "}":
            if opened and opened[-1] == depth:
                opened.pop()
                scopes.pop()
            depth -= 1
        elif m.group(3):
            found += [(p, tuple(scopes)) for p in use_paths(m.group(3))]
        elif m.group(4):
            found.append((m.group(4).split("::"), tuple(scopes)))
    return found, children


def absolute(segs, here, children):
    """Segments as written in module `here` -> absolute path, or None if external."""
    if segs[0] == "crate":
        return ["crate"] + segs[1:]
    if segs[0] in ("self", "super"):
        base = list(here)
        while segs and segs[0] in ("self", "super"):
            if segs.pop(0) == "super":
                base.pop()
        return base + segs
    if segs[0] in children:  # `use child::X` in the file declaring `mod child;`
        return list(here) + segs
    return None


def build(src_dir):
    files = {}
    for root, dirs, names in os.walk(src_dir):
        dirs[:] = sorted(d for d in dirs if os.path.relpath(os.path.join(root, d), src_dir) != "bin")
        for name in sorted(names):
            if name.endswith(".rs"):
                rel = os.path.relpath(os.path.join(root, name), src_dir).replace(os.sep, "/")
                files[rel] = module_of(rel)
    scanned = {rel: scan(os.path.join(src_dir, rel), src_dir) for rel in files}
    for rel, (_, children) in scanned.items():  # `#[path]` files take their declared place
        for name, target in children.items():
            if target in files:
                files[target] = files[rel] + (name,)
    by_module = {mod: rel for rel, mod in files.items()}
    for rel in files:  # crate::some_macro -> the file that exports it
        raw = strip(open(os.path.join(src_dir, rel), encoding="utf-8").read())
        for name in re.findall(r"#\[macro_export\]\s*macro_rules!\s*(" + IDENT + ")", raw):
            by_module.setdefault(("crate", name), rel)
    edges = {}
    for rel, (found, children) in scanned.items():
        for segs, scope in found:
            here = files[rel] + scope
            path = absolute(list(segs), here, children if not scope else {})
            if not path:
                continue
            glob = path[-1] == "*"
            if path[-1] in ("self", "*"):
                path = path[:-1]
            for k in range(len(path), 0, -1):
                target = by_module.get(tuple(path[:k]))
                if target:
                    break
            if target and target != rel:
                name = "::".join(path[k:]) or ("*" if glob else path[k - 1])
                edges.setdefault((rel, target), set()).add(name)
    return files, edges


def circles(files, edges):
    """Strongly connected components of more than one file (Tarjan)."""
    succ = {f: sorted(t for (s, t) in edges if s == f) for f in files}
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for f in sorted(files):
        if f not in index:
            visit(f)
    return sorted(out)


def report(src_dir):
    files, edges = build(src_dir)
    found = circles(files, edges)
    for i, comp in enumerate(found, 1):
        print(f"import-circles: circle {i}, {len(comp)} files: {' '.join('src/' + f for f in comp)}")
        for (s, t), names in sorted(edges.items()):
            if s in comp and t in comp:
                print(f"  src/{s} -> src/{t}: {', '.join(sorted(names))}")
    if found:
        print(f"import-circles: {len(files)} files, {len(edges)} edges, {len(found)} circle(s)")
        return 1
    print(f"import-circles: {len(files)} files, {len(edges)} edges, no circle")
    return 0


def self_test():
    """The checker on two tiny trees: one with a circle, one without."""
    tree = {
        "lib.rs": "pub mod a;\npub mod b;\npub mod c;\npub mod d;\n",
        "a.rs": "use crate::b::{self, inner::{X as Y, Z}};\n"
                "// use crate::c::C;  a comment is no use\n"
                "fn f() -> &'static str { \"crate::c::C in a string\" }\n"
                "#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
        "b.rs": "pub fn back() { let _ = crate::a::f(); }\n",
        "c.rs": "pub struct C;\nfn g() { let _ = r#\"crate::a\"#; let _ = '\"'; }\n"
                "fn h() { crate::b::back() }\n",
        "d/mod.rs": "mod e;\npub use e::E;\n",
        "d/e.rs": "pub struct E;\nuse crate::c::C;\n",
    }
    ok = True
    for with_circle in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            for rel, text in tree.items():
                if rel == "b.rs" and not with_circle:
                    text = "pub fn back() {}\n"
                os.makedirs(os.path.dirname(os.path.join(tmp, rel)), exist_ok=True)
                with open(os.path.join(tmp, rel), "w", encoding="utf-8") as f:
                    f.write(text)
            files, edges = build(tmp)
            want_edges = {("a.rs", "b.rs"), ("c.rs", "b.rs"), ("d/mod.rs", "d/e.rs"), ("d/e.rs", "c.rs")}
            if with_circle:
                want_edges.add(("b.rs", "a.rs"))
            got = circles(files, edges)
            want = [["a.rs", "b.rs"]] if with_circle else []
            if set(edges) != want_edges or got != want:
                print(f"import-circles self-test: edges {sorted(edges)}, circles {got}; "
                      f"wanted edges {sorted(want_edges)}, circles {want}")
                ok = False
    print("import-circles self-test:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(self_test())
    default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src")
    sys.exit(report(os.path.normpath(sys.argv[1] if len(sys.argv) > 1 else default)))
