#!/usr/bin/env python3
"""Checks the module layering declared in CMakeLists.txt against the includes of every file.

Each `polar_module(NAME DEPS a b ...)` line declares a module (src/NAME/, include/polar/NAME/) and
the modules it may use; a module may include its own headers and those of every module below it
(its dependencies, transitively). Modules are declared bottom-up, so the graph is acyclic.
Prints each violation as FILE:LINE with what it includes and what the module may use; exits 1 if
there is any (or if a module directory is not declared). --graph prints the declared graph.
"""
import argparse
import os
import re
import sys

MODULE_RE = re.compile(r"^\s*polar_module\(\s*(\w+)([^)]*)\)", re.M)
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"polar/(\w+)/([^"]+)"')


def read_modules(cmakelists):
    """[(name, [deps])] in declaration order."""
    text = open(cmakelists, encoding="utf-8").read()
    modules = []
    for m in MODULE_RE.finditer(text):
        words = m.group(2).split()
        deps, section = [], None
        for w in words:
            if w in ("DEPS", "LIBS"):
                section = w
            elif section == "DEPS":
                deps.append(w)
        modules.append((m.group(1), deps))
    return modules


def closures(modules):
    """name -> set of modules it may include (itself and its dependencies, transitively)."""
    out, errors = {}, []
    for name, deps in modules:
        allowed = {name}
        for d in deps:
            if d not in out:
                errors.append(f"CMakeLists.txt: module {name} depends on {d}, which is not declared before it")
                continue
            allowed |= out[d]
        out[name] = allowed
    return out, errors


def module_files(root, name):
    for base in (os.path.join(root, "src", name), os.path.join(root, "include", "polar", name)):
        for dirpath, _, files in os.walk(base):
            for f in sorted(files):
                if f.endswith((".h", ".hpp", ".cpp", ".cu", ".cuh")):
                    yield os.path.join(dirpath, f)


def check(root):
    modules = read_modules(os.path.join(root, "CMakeLists.txt"))
    allowed, errors = closures(modules)
    declared = {name for name, _ in modules}
    for base in (os.path.join(root, "src"), os.path.join(root, "include", "polar")):
        for d in sorted(os.listdir(base)):
            if os.path.isdir(os.path.join(base, d)) and d not in declared:
                errors.append(f"{os.path.relpath(os.path.join(base, d), root)}: module '{d}' is not declared "
                              "with polar_module() in CMakeLists.txt")
    n_files = n_includes = 0
    for name, _ in modules:
        for path in module_files(root, name):
            n_files += 1
            rel = os.path.relpath(path, root)
            for lineno, line in enumerate(open(path, encoding="utf-8", errors="replace"), 1):
                m = INCLUDE_RE.match(line)
                if not m:
                    continue
                n_includes += 1
                if m.group(1) not in allowed[name]:
                    errors.append(f"{rel}:{lineno}: includes polar/{m.group(1)}/{m.group(2)}, but module "
                                  f"{name} may use only: {', '.join(sorted(allowed[name]))}")
    return modules, errors, n_files, n_includes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ap.add_argument("--graph", action="store_true", help="print the declared module graph")
    args = ap.parse_args()
    modules, errors, n_files, n_includes = check(args.root)
    if args.graph:
        for name, deps in reversed(modules):
            print(f"{name:<11} -> {', '.join(deps) if deps else '-'}")
    for e in errors:
        print(e, file=sys.stderr)
    print(f"layering: {len(modules)} modules, {n_files} files, {n_includes} project includes, "
          f"{len(errors)} violation(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
