#!/usr/bin/env python3
"""No function in src/, include/ or tools/ is longer than --max lines (default 79: every function
under 80), counted by lizard (its "length": first to last line of the definition). Lists every function over the limit
with its file and line, largest first; exits 1 when there is one.

  scripts/check_function_length.py [--root DIR] [--max 79]
"""
import argparse
import os
import sys

try:
    import lizard
except ImportError:
    sys.exit("check_function_length: the lizard package is missing (scripts/setup.sh installs "
             "scripts/requirements.txt into .venv)")

SOURCE_DIRS = ("src", "include", "tools")
EXTENSIONS = (".cpp", ".h", ".cu", ".cuh")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), ".."))
    ap.add_argument("--max", type=int, default=79, help="longest function allowed, in lines")
    args = ap.parse_args()
    files = []
    for d in SOURCE_DIRS:
        for dirpath, _, names in os.walk(os.path.join(args.root, d)):
            files += [os.path.join(dirpath, n) for n in sorted(names) if n.endswith(EXTENSIONS)]
    too_long, largest = [], (0, "")
    for path in sorted(files):
        for f in lizard.analyze_file(path).function_list:
            where = "%s:%d %s" % (os.path.relpath(path, args.root), f.start_line, f.name)
            largest = max(largest, (f.length, where))
            if f.length > args.max:
                too_long.append((f.length, where))
    for length, where in sorted(too_long, reverse=True):
        print("%s: %d lines (limit %d)" % (where, length, args.max))
    print("check_function_length: %d files, largest function %d lines (%s); %d over %d" %
          (len(files), largest[0], largest[1], len(too_long), args.max))
    return 1 if too_long else 0


if __name__ == "__main__":
    sys.exit(main())
