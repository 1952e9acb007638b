#!/usr/bin/env python3
"""Module dependency view of a crate: which top-level modules of `src/` refer to which
(`crate::m`, `super::m` from a direct child, and `use` lines), and every cycle among them.

    scripts/module-cycles.py crates/secrets-core [--depth 1|2] [--graph]

Exits 1 when there is a cycle. Depth 2 also splits `mod/sub` modules (e.g. engine/render)
and checks cycles among the submodules of each module. Test-only code (`#[cfg(test)] mod
tests`) is ignored, since it may use anything.
"""
import os
import re
import sys


def strip_tests(text):
    # Drop `#[cfg(test)] mod tests { ... }` blocks (brace matched) and comments.
    text = re.sub(r"//[^\n]*", "", text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while depth and j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def module_of(rel, depth):
    parts = rel[:-3].split("/")
    if parts[-1] == "mod":
        parts = parts[:-1]
    if parts in (["lib"], ["main"]):
        return None
    return "/".join(parts[:depth])


def refs(text, me, depth, full):
    found = set()
    base = full.split("/")
    for m in re.finditer(r"\bcrate::(\w+)(?:::(\w+))?", text):
        found.add("/".join([m.group(1)] + ([m.group(2)] if depth > 1 and m.group(2) else []))[: None])
    # `use crate::{a, b::c}` groups
    for m in re.finditer(r"\buse\s+crate::\{([^;]*)\};", text, re.S):
        for item in re.split(r",(?![^{]*\})", m.group(1)):
            item = item.strip()
            if item:
                head = re.split(r"::|\s", item)[0].strip("{} ")
                if head and head != "self":
                    found.add(head)
    # `super::x` from the file's own module path (not the depth-truncated one).
    parent = base[:-1]
    for m in re.finditer(r"\bsuper::(\w+)", text):
        found.add("/".join((parent + [m.group(1)])[:depth]) if parent else m.group(1))
    return found


def graph(root, depth):
    src = os.path.join(root, "src")
    mods, edges = set(), {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)
            me = module_of(rel, depth)
            if me is None:
                continue
            mods.add(me)
            text = strip_tests(open(os.path.join(dirpath, f), encoding="utf-8").read())
            full = module_of(rel, 99)
            edges.setdefault(me, set()).update(refs(text, me, depth, full))
    tops = {m.split("/")[0] for m in mods}
    clean = {}
    for m, rs in edges.items():
        keep = set()
        for r in rs:
            r2 = r if r in mods else r.split("/")[0]
            if r2 in mods or r2 in tops:
                if r2 not in mods:
                    continue
                if r2 != m and not m.startswith(r2 + "/") and not r2.startswith(m + "/"):
                    keep.add(r2)
        clean[m] = keep
    return mods, clean


def sccs(nodes, edges):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def main():
    args = sys.argv[1:]
    depth = 2 if "--depth" in args and args[args.index("--depth") + 1] == "2" else 1
    roots = [a for a in args if not a.startswith("--") and not a.isdigit()]
    bad = 0
    for root in roots:
        mods, edges = graph(root, depth)
        if "--graph" in args:
            for m in sorted(edges):
                print(f"{root}: {m} -> {', '.join(sorted(edges[m])) or '-'}")
        cycles = sccs(mods, edges)
        for c in cycles:
            bad += 1
            # One concrete cycle path inside the component, for the message.
            print(f"{root}: cycle among {', '.join(c)}")
            for m in c:
                inside = sorted(x for x in edges.get(m, ()) if x in c)
                print(f"    {m} -> {', '.join(inside)}")
        if not cycles:
            print(f"{root}: no module cycles ({len(mods)} modules, depth {depth})")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
