#!/usr/bin/env python3
"""Checks the source layout of every crate of the workspace:

  1. no module import cycle inside a crate, file by file (a file that names
     `crate::a::b` or `super::x` depends on the file of that module);
  2. no cycle between the top-level modules of a crate either (`io/src/http`
     may use `io/src/app`, never the other way round) — the layering
     docs/architecture.md draws;
  3. no source file over 500 lines unless its first lines say why
     (a comment holding "longer than" or "one file on purpose").

Prints each crate's top-level dependency table (`--table`) and exits 1 on
any violation. Run by scripts/test.sh.
"""
import os
import re
import sys

LINES_MAX = 500
CRATES = ["pipeline/src", "wal/src", "io/src", "replay/src", "replay/cli/src", "orders/src", "benches/src", "tests/src"]


def modules(src):
    mods = {}
    for dp, _, fs in os.walk(src):
        for f in fs:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dp, f), src)[:-3].split(os.sep)
            if rel[0] == "bin":
                continue
            if rel[-1] in ("mod", "lib", "main"):
                rel = rel[:-1]
            mods[tuple(rel)] = os.path.join(dp, f)
    return mods


def strip(text):
    text = re.sub(r"#\[cfg\(test\)\]\s*mod\s+tests\s*\{.*", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def resolve(mods, path):
    path = tuple(path)
    while path and path not in mods:
        path = path[:-1]
    return path if path in mods else None


def edges(mods):
    g = {m: set() for m in mods}
    for mod, f in mods.items():
        text = strip(open(f, encoding="utf-8").read())
        for m in re.finditer(r"\b(crate|super)((?:::\w+)*)(::\{([^}]*)\})?", text):
            head, path, group = m.group(1), m.group(2), m.group(4)
            if head == "crate":
                base = []
            else:
                # `super` of a.rs (module a) is its parent; of a/mod.rs too.
                base = list(mod[:-1])
            prefix = base + [p for p in path.split("::") if p]
            targets = [prefix]
            if group:
                targets = []
                for part in group.split(","):
                    names = [p for p in part.strip().split("::") if p and p != "self"]
                    targets.append(prefix + names)
            for t in targets:
                r = resolve(mods, t)
                if r is not None and r != mod and not (mod[: len(r)] == r and r != ()):
                    g[mod].add(r)
    return g


def sccs(g):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
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
                out.append(comp)

    for v in g:
        if v not in index:
            visit(v)
    return out


def name(m):
    return "::".join(m) or "(root)"


def main():
    table = "--table" in sys.argv
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    bad = 0
    for crate in CRATES:
        src = os.path.join(root, crate)
        if not os.path.isdir(src):
            continue
        mods = modules(src)
        g = edges(mods)
        for comp in sccs(g):
            bad += 1
            print(f"{crate}: module cycle: " + " <-> ".join(sorted(name(m) for m in comp)))
        top = {}
        for a, bs in g.items():
            if not a:
                continue
            top.setdefault(a[0], set())
            for b in bs:
                if b and b[0] != a[0]:
                    top[a[0]].add(b[0])
        for comp in sccs({k: {b for b in v if b in top} for k, v in top.items()}):
            bad += 1
            print(f"{crate}: top-level cycle: " + " <-> ".join(sorted(comp)))
        if table and top:
            print(f"\n{crate}")
            for a in sorted(top):
                print(f"  {a:<10} -> {', '.join(sorted(top[a])) or '-'}")
    for dp, dirs, fs in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ("target", ".git")]
        for f in fs:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dp, f)
            lines = open(path, encoding="utf-8").read().split("\n")
            if len(lines) > LINES_MAX:
                head = "\n".join(lines[:15]).lower()
                if "longer than" not in head and "one file on purpose" not in head:
                    bad += 1
                    print(f"{os.path.relpath(path, root)}: {len(lines)} lines and no word atop on why")
    if bad:
        print(f"layout: {bad} problem(s)")
        return 1
    print("layout: no module cycle, no oversized file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
