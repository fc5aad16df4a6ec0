#!/usr/bin/env python3
"""Checks that the documentation still matches the program and the tree.

For README.md and every docs/**/*.md (or the FILEs given), it checks:
  commands  every `polar ...` / `polar-run ...` command line, in code blocks and in inline code,
            is parsed by the built program itself (POLAR_DRY_PARSE, include/polar/cli/dry_parse.h):
            the subcommand exists, every flag is accepted, every required flag is present;
  keys      every config key written as `section.key` (inline code, code blocks, `--set KEY=VALUE`,
            JSON config blocks) is a key of the run config (`polar config --keys`);
  paths     every repository path cited (src/, include/, scripts/, configs/, docs/, tools/, tests/,
            cmake/, relative links) exists;
  outputs   a code block that shows `$ command` lines followed by their output is run (from the
            repository root, with the built binaries) and the output compared, unless the block is
            fenced as illustrative (```text illustrative).
The notation is the one docs/notation.md spells out: [optional] parts, a|b alternatives, CAPITALS
or <names> for placeholders, FILE... for repeated values, a standalone ... for elided flags (a
partial command), and a command without flags names the command only.

Prints each problem as FILE:LINE: reason and exits 1 if there is any.
"""
import argparse
import concurrent.futures
import glob
import json
import os
import re
import shlex
import subprocess
import sys

PLACEHOLDER = "@value@"  # kDryParsePlaceholder in include/polar/cli/dry_parse.h
PROGRAMS = ("polar", "polar-run")
PATH_ROOTS = ("src", "include", "scripts", "configs", "docs", "tools", "tests", "cmake")
FILE_EXTENSIONS = {
    "md", "json", "jsonl", "py", "cpp", "h", "hpp", "cu", "cuh", "txt", "sh", "gz", "zst", "model",
    "safetensors", "log", "yaml", "yml", "bin", "pt", "csv", "png", "svg", "html", "toml", "cmake",
}
SHELL_SEPARATORS = {"|", "||", "&&", ";", "&", "do", "then", "else", "{", "}", "(", ")"}
SHELL_PREFIXES = {"time", "exec", "!", "sudo", "nohup"}
KEY_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
PATH_RE = re.compile(r"(?<![\w./-])(?:\./)?((?:%s)/[^\s`'\"(),;<>|\]\[]*)" % "|".join(PATH_ROOTS))
NOT_IN_TREE_RE = re.compile(r"<!--\s*check_docs:\s*not-in-tree\s+(.*?)-->")
LINK_RE = re.compile(r"\]\(([^)\s]+)\)")
PLACEHOLDER_WORD_RE = re.compile(r"(^|[^A-Za-z0-9])[A-Z][A-Z0-9_]*([^A-Za-z0-9]|$)")


# --------------------------------------------------------------------------------------------
# Markdown: code blocks and inline code, with line numbers.


def read_markdown(path):
    """(blocks, inlines, prose_lines): blocks are (info, start_line, [(line_no, text)])."""
    blocks, inlines, prose = [], [], []
    lines = open(path, encoding="utf-8").read().split("\n")
    fence, info, body, start = None, "", [], 0
    paragraph = []  # [(line_no, text)] outside code blocks, for inline spans across lines
    for i, line in enumerate(lines, 1):
        stripped = line.lstrip()
        if fence is None:
            m = re.match(r"^(`{3,}|~{3,})(.*)$", stripped)
            if m:
                inlines += inline_spans(paragraph)
                paragraph = []
                fence, info, body, start = m.group(1), m.group(2).strip(), [], i
                continue
            prose.append((i, line))
            if line.strip():
                paragraph.append((i, line))
            else:
                inlines += inline_spans(paragraph)
                paragraph = []
        else:
            if stripped.startswith(fence) and stripped.strip() == fence[0] * len(stripped.strip()):
                blocks.append((info, start, body))
                fence = None
            else:
                body.append((i, line))
    inlines += inline_spans(paragraph)
    if fence is not None:
        blocks.append((info, start, body))
    return blocks, inlines, prose


def inline_spans(paragraph):
    """[(line_no, code)] for every `code` span of a paragraph (spans may cross lines)."""
    spans = []
    text, starts = "", []
    for line_no, line in paragraph:
        starts.append((len(text), line_no))
        text += line + "\n"

    def line_of(pos):
        no = starts[0][1]
        for offset, line_no in starts:
            if offset <= pos:
                no = line_no
        return no

    pos = 0
    while True:
        m = re.compile(r"(`+)").search(text, pos)
        if not m:
            break
        ticks = m.group(1)
        end = text.find(ticks, m.end())
        while end != -1 and (text[end + len(ticks):end + len(ticks) + 1] == "`"):
            end = text.find(ticks, end + len(ticks) + 1)
        if end == -1:
            pos = m.end()
            continue
        code = text[m.end():end].replace("\n", " ").strip()
        spans.append((line_of(m.start()), code))
        pos = end + len(ticks)
    return spans


# --------------------------------------------------------------------------------------------
# Shell: splitting lines into simple commands and finding the polar ones.


def join_continuations(body):
    """[(line_no, text)] with `\\`-continued lines joined (numbered by their first line) and
    here-document bodies (`<<'EOF'` ... `EOF`) left out."""
    out, current, first, heredoc_end = [], None, None, None
    for line_no, text in body:
        if heredoc_end is not None:
            if text.strip() == heredoc_end:
                heredoc_end = None
            continue
        m = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", text)
        if m:
            heredoc_end = m.group(1)
        if current is None:
            current, first = text, line_no
        else:
            current += " " + text.lstrip()
        if current.rstrip().endswith("\\") and not current.rstrip().endswith("\\\\"):
            current = current.rstrip()[:-1]
            continue
        out.append((first, current))
        current = None
    if current is not None:
        out.append((first, current))
    return out


def shell_words(text):
    """Words of a shell line without comments; None when it does not split (unbalanced quotes)."""
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        return list(lexer)
    except ValueError:
        return None


def simple_commands(words):
    """Splits words at shell separators (`|`, `&&`, `;`, `do`, ...)."""
    commands, current = [], []
    for w in words:
        if w in SHELL_SEPARATORS:
            commands.append(current)
            current = []
        elif w.endswith(";") and w != ";":
            current.append(w[:-1])
            commands.append(current)
            current = []
        else:
            current.append(w)
    commands.append(current)
    return [c for c in commands if c]


def is_program(word, name):
    base = word.rstrip("/").split("/")[-1]
    return base == name and (word == name or "/" in word)


def program_of(word):
    for name in PROGRAMS:
        if is_program(word, name):
            return name
    return None


def find_polar_commands(words, subcommands):
    """[(program, args)] for the polar / polar-run invocation in one simple command.

    The program is the first word (after VAR=value assignments), or a later word followed by a
    polar subcommand (`srun build/polar train`, `torchrun ... --no-python build/polar train`) or,
    for polar-run, by a flag; not a value such as `--polar build/polar`.
    """
    i = 0
    while i < len(words) and (re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[i]) or words[i] in SHELL_PREFIXES):
        i += 1
    for j in range(i, len(words)):
        prog = program_of(words[j].strip("[]"))
        if prog is None:
            continue
        following = words[j + 1].strip("[]") if j + 1 < len(words) else ""
        if j == i or following.split("|")[0] in subcommands or \
                (prog == "polar-run" and following.startswith("-")):
            return [(prog, words[j + 1:])]
    return []


# --------------------------------------------------------------------------------------------
# Synopsis notation: [optional], a|b, placeholders, FILE..., a standalone ... .


ELIDED_FLAGS = {"ARGS", "ARGS...", "FLAGS", "OPTIONS", "flags", "options", "args"}
UNITS = {"GiB", "MiB", "KiB", "GB", "MB", "s", "ms"}  # a unit stands for a number in it


def is_placeholder(value):
    if value in UNITS:
        return True
    if value in ("...", "…") or "$" in value or re.search(r"<[^>]*>", value):
        return True
    return bool(PLACEHOLDER_WORD_RE.search(value))


def expand(words):
    """(variants, partial): the argument lists a synopsis stands for, and whether it elides flags.

    Brackets are dropped (optional parts are included: each must be accepted); `a|b` gives one
    variant per alternative; a standalone `...` outside brackets and not in a value position marks
    the command partial (inside brackets it means "repeatable"); placeholders become PLACEHOLDER.
    """
    tokens, partial, depth = [], False, 0
    for w in words:
        opens = len(w) - len(w.lstrip("["))
        core = w.lstrip("[")
        closes = len(core) - len(core.rstrip("]"))
        core = core.rstrip("]")
        depth += opens
        if core in ELIDED_FLAGS:
            partial = True  # `polar-run [flags] train ARGS`: flags left out
        elif core in ("...", "…"):
            previous = tokens[-1] if tokens else None
            if previous is not None and previous.startswith("-") and previous != "--":
                tokens.append(PLACEHOLDER)  # `--flag ...`: an elided value
            elif depth == 0:
                partial = True
        elif core:
            tokens.append(core)
        depth = max(0, depth - closes)
    alternatives = []
    for t in tokens:
        m = re.match(r"^([^|=]*=)(.*)$", t)  # key=a|b: alternatives of the value
        prefix, rest = (m.group(1), m.group(2)) if m else ("", t)
        alternatives.append([prefix + a for a in rest.split("|")] if "|" in rest else [t])
    n = max([len(a) for a in alternatives] + [1])
    variants = []
    for k in range(n):
        args = []
        for alts in alternatives:
            word = alts[k % len(alts)]
            if word.endswith("...") and len(word) > 3:
                word = word[:-3]  # FILE...: one value stands for several
            m = re.match(r"^(--[\w-]+)=(.*)$", word)
            if m and is_placeholder(m.group(2)):
                word = m.group(1) + "=" + PLACEHOLDER  # --flag=VALUE
            elif not word.startswith("-") and is_placeholder(word):
                word = PLACEHOLDER
            args.append(word)
        if args not in variants:
            variants.append(args)
    return variants, partial


def has_flags(words):
    return any(w.lstrip("[").startswith("-") for w in words)


# --------------------------------------------------------------------------------------------
# The checker.


class Checker:
    def __init__(self, root, polar, polar_run, list_only=False):
        self.root, self.polar, self.polar_run = root, polar, polar_run
        self.problems = []
        self.list_only = list_only
        self.keys = set() if list_only else self.config_keys()
        self.sections = {k.split(".")[0] for k in self.keys if "." in k}
        self.subcommands = self.polar_subcommands()
        self.not_in_tree = set()
        self.script_cache = {}
        self.pending_runs = []
        self.polar_requests = {}
        self.run_cache = {}
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2))

    def report(self, path, line, reason):
        problem = "%s:%d: %s" % (os.path.relpath(path, self.root), line, reason)
        if problem not in self.problems:
            self.problems.append(problem)

    def polar_subcommands(self):
        """The subcommand names `polar --help` lists."""
        if not os.path.exists(self.polar):
            return {"train", "data", "eval", "score", "bench", "plan", "import", "export", "sample",
                    "serve", "tokenizer", "config"}  # --list without a build
        r = subprocess.run([self.polar, "--help"], capture_output=True, text=True, timeout=120)
        text = r.stdout.split("Subcommands:", 1)[-1]
        return {m.group(1) for m in re.finditer(r"^\s+([a-z][\w-]*)\s", text, re.M)}

    def config_keys(self):
        r = subprocess.run([self.polar, "config", "--keys"], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise SystemExit("check_docs: `%s config --keys` failed:\n%s" % (self.polar, r.stderr))
        return set(line.strip() for line in r.stdout.splitlines() if line.strip())

    # ---- commands

    def dry_parse_run(self, args, partial):
        """A future of polar-run's dry parse of `args` (a small process: one each)."""
        key = (tuple(args), partial)
        if key not in self.run_cache:
            env = dict(os.environ, POLAR_DRY_PARSE="partial" if partial else "1")
            self.run_cache[key] = self.pool.submit(
                subprocess.run, [self.polar_run] + args, capture_output=True, text=True, env=env,
                timeout=120, cwd=self.root)
        return self.run_cache[key]

    def dry_parse_polar(self, requests):
        """{(args, partial): (rc, error)} from one `polar` process (POLAR_DRY_PARSE=batch)."""
        keys = list(requests)
        stdin = "".join(json.dumps({"partial": partial, "args": list(args)}) + "\n"
                        for args, partial in keys)
        r = subprocess.run([self.polar], input=stdin, capture_output=True, text=True, timeout=600,
                           cwd=self.root, env=dict(os.environ, POLAR_DRY_PARSE="batch"))
        replies = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        if r.returncode != 0 or len(replies) != len(keys):
            raise SystemExit("check_docs: `POLAR_DRY_PARSE=batch %s` failed (exit %d):\n%s"
                             % (self.polar, r.returncode, r.stderr))
        return {k: (rep["rc"], rep["error"]) for k, rep in zip(keys, replies)}

    def finish(self):
        """Runs the dry parses collected and reports their failures."""
        while self.pending_runs:
            pending, self.pending_runs = self.pending_runs, []
            for resolve in pending:
                resolve()
        if self.polar_requests:
            results = self.dry_parse_polar(self.polar_requests)
            for key, where in self.polar_requests.items():
                rc, error = results[key]
                args = key[0]
                if rc != 0 and "A subcommand is required" in error and args and \
                        not args[0].startswith("-") and args[0] not in self.subcommands:
                    error += " (`%s` is not one)" % args[0]
                if rc != 0:
                    for path, line, shown in where:
                        self.report(path, line, "`polar %s`: %s"
                                    % (shown, (error or "exit %d" % rc).replace(PLACEHOLDER, "X")))
        self.pool.shutdown()

    def check_command(self, path, line, prog, words):
        if not words:
            return  # the program's name only
        variants, partial = expand(words)
        partial = partial or not has_flags(words)
        for args in variants:
            self.check_variant(path, line, prog, args, partial)
        for w in words:
            m = re.match(r"^\[?([a-z][a-z0-9_.]*)=", w)
            if m and "." in m.group(1):
                self.check_key(path, line, m.group(1), strict=True)

    def check_variant(self, path, line, prog, args, partial):
        shown = " ".join(args).replace(PLACEHOLDER, "X")
        if self.list_only:
            print("%s:%d: %s %s%s" % (os.path.relpath(path, self.root), line, prog, shown,
                                      "   (partial)" if partial else ""))
            return
        if prog == "polar":
            self.polar_requests.setdefault((tuple(args), partial), []).append((path, line, shown))
            return
        if not self.polar_run:
            return
        future = self.dry_parse_run(args, partial)

        def resolve():
            r = future.result()
            if r.returncode != 0:
                self.report(path, line, "`polar-run %s`: %s" % (shown, error_text(r)))
                return
            worker = r.stdout.splitlines()
            if worker and is_program(worker[0], "polar"):
                self.check_variant(path, line, "polar", worker[1:], partial)
        self.pending_runs.append(resolve)

    # ---- Python scripts of the tree

    def check_script_flags(self, path, line, words):
        """`scripts/x.py --flag ...`: every --flag is one the script's argparse `--help` lists."""
        for j, w in enumerate(words):
            script = re.sub(r"^\./", "", w)
            if not (re.match(r"^(scripts|tools)/.*\.py$", script) and
                    os.path.isfile(os.path.join(self.root, script))):
                continue
            accepted = self.script_flags(script)
            if accepted is None or self.list_only:
                return
            for flag in words[j + 1:]:
                flag = flag.strip("[]").split("=")[0]
                if re.match(r"^--[\w-]+$", flag) and flag not in accepted:
                    self.report(path, line, "`%s` has no flag %s (its --help)" % (script, flag))
            return

    def script_flags(self, script):
        if script not in self.script_cache:
            try:
                r = subprocess.run([sys.executable, os.path.join(self.root, script), "--help"],
                                   capture_output=True, text=True, timeout=60, cwd=self.root)
                ok = r.returncode == 0 and "usage:" in r.stdout
            except subprocess.TimeoutExpired:
                ok = False
            self.script_cache[script] = set(re.findall(r"--[\w-]+", r.stdout)) if ok else None
        return self.script_cache[script]

    # ---- keys

    def check_key(self, path, line, key, strict=False):
        """A `section.key`: a key of the run config when its first part is a config section."""
        key = key.rstrip(".,:;")
        if not KEY_RE.match(key):
            return
        parts = key.split(".")
        if parts[0] not in self.sections or (parts[-1] in FILE_EXTENSIONS and not strict):
            return
        if len(parts) > 2 and ".".join(parts[:2]) not in self.keys and not strict:
            return  # a deeper name under no config key (a tensor name such as model.norm.weight)
        if key not in self.keys:
            self.report(path, line, "config key `%s` is not a key of the run config (polar config --keys)"
                        % key)

    def check_words_for_keys(self, path, line, text):
        for w in re.split(r"[\s=,()`'\"]+", text):
            self.check_key(path, line, w)

    def check_json_block(self, path, start, body):
        text = "\n".join(t for _, t in body)
        try:
            obj = json.loads(text)
        except ValueError:
            return
        if not isinstance(obj, dict) or not any(k in self.sections for k in obj):
            return
        for key in json_paths(obj, ""):
            if key not in self.keys:
                line = start + 1 + next((i for i, (_, t) in enumerate(body)
                                         if '"%s"' % key.split(".")[-1] in t), 0)
                self.report(path, line, "config key `%s` is not a key of the run config "
                            "(polar config --keys)" % key)

    # ---- paths

    def check_paths(self, path, line, text):
        for m in PATH_RE.finditer(text):
            self.check_path(path, line, m.group(1))

    def check_path(self, path, line, cited, relative_to=None):
        cited = re.sub(r"[.,:;]+$", "", cited.split("#")[0])
        cited = re.sub(r":\d+(-\d+)?$", "", cited)
        if not cited or is_placeholder(cited) or "{" in cited or cited in self.not_in_tree:
            return
        base = relative_to or self.root
        full = os.path.normpath(os.path.join(base, cited))
        if "*" in cited or "?" in cited:
            if not glob.glob(full):
                self.report(path, line, "path `%s` matches nothing" % cited)
        elif not os.path.exists(full):
            self.report(path, line, "path `%s` does not exist" % cited)

    def check_links(self, path, prose):
        for line_no, text in prose:
            for m in LINK_RE.finditer(text):
                target = m.group(1)
                if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                    continue
                self.check_path(path, line_no, target, os.path.dirname(path))

    # ---- outputs

    def check_output_block(self, path, start, body, info):
        """`$ command` lines with their output below: run and compare, unless illustrative."""
        lines = [(n, t) for n, t in body]
        if self.list_only or not any(t.startswith("$ ") for _, t in lines) or "illustrative" in info.split():
            return
        i = 0
        while i < len(lines):
            n, t = lines[i]
            if not t.startswith("$ "):
                i += 1
                continue
            command = t[2:]
            expected = []
            i += 1
            while i < len(lines) and not lines[i][1].startswith("$ "):
                expected.append(lines[i][1])
                i += 1
            self.run_and_compare(path, n, command, expected)

    def run_and_compare(self, path, line, command, expected):
        words = shell_words(command)
        found = find_polar_commands(words or [], self.subcommands)
        if not found:
            self.report(path, line, "output of `%s` cannot be checked (not a polar command); fence "
                        "the block as illustrative" % command)
            return
        prog, args = found[0]
        binary = self.polar if prog == "polar" else self.polar_run
        try:
            r = subprocess.run([binary] + args, capture_output=True, text=True, cwd=self.root,
                               timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
        except subprocess.TimeoutExpired:
            self.report(path, line, "`%s` did not finish in 300 s" % command)
            return
        if r.returncode != 0:
            self.report(path, line, "`%s` failed (exit %d): %s" % (command, r.returncode,
                                                                    error_text(r)))
            return
        got = [normalize(t) for t in r.stdout.splitlines() if t.strip()]
        want = [normalize(t) for t in expected if t.strip()]
        if got != want:
            for k in range(max(len(got), len(want))):
                g = got[k] if k < len(got) else "(nothing)"
                w = want[k] if k < len(want) else "(nothing)"
                if g != w:
                    self.report(path, line + 1 + k, "output of `%s` differs: the program prints "
                                "`%s`, the document shows `%s`" % (command, g, w))
                    break

    # ---- one document

    def check_file(self, path):
        blocks, inlines, prose = read_markdown(path)
        self.not_in_tree = set()
        for _, text in prose:
            for m in NOT_IN_TREE_RE.finditer(text):
                self.not_in_tree.update(m.group(1).split())
        for info, start, body in blocks:
            language = info.split()[0] if info.split() else ""
            if language == "json" or (not language and body and body[0][1].lstrip().startswith("{")):
                self.check_json_block(path, start, body)
                continue
            if language in ("python", "py", "cpp", "c++", "yaml"):
                for n, t in body:
                    self.check_paths(path, n, t)
                continue
            self.check_output_block(path, start, body, info)
            outputs = output_lines(body)
            for n, text in join_continuations([(n, t) for n, t in body if n not in outputs]):
                if text.startswith("$ "):
                    text = text[2:]
                self.check_paths(path, n, text)
                self.check_words_for_keys(path, n, strip_comment(text))
                words = shell_words(text)
                if words is None:
                    continue
                for simple in simple_commands(words):
                    for prog, args in find_polar_commands(simple, self.subcommands):
                        self.check_command(path, n, prog, args)
                    self.check_script_flags(path, n, simple)
        for n, code in inlines:
            code = code.replace("\\|", "|")
            self.check_paths(path, n, code)
            self.check_words_for_keys(path, n, code)
            words = shell_words(code)
            if words and program_of(words[0].strip("[]")):
                for prog, args in find_polar_commands(words, self.subcommands):
                    self.check_command(path, n, prog, args)
            elif words and re.match(r"^(\./)?(scripts|tools)/", words[0]):
                self.check_script_flags(path, n, words)
        self.check_links(path, prose)


def output_lines(body):
    """Line numbers of output lines (those after a `$ command` line up to the next one)."""
    if not any(t.startswith("$ ") for _, t in body):
        return set()
    return {n for n, t in body if not t.startswith("$ ")}


def strip_comment(text):
    words = shell_words(text)
    return " ".join(words) if words is not None else text


def json_paths(obj, prefix):
    for k, v in obj.items():
        p = prefix + k
        yield p
        if isinstance(v, dict):
            yield from json_paths(v, p + ".")


def normalize(text):
    return " ".join(text.split())


def error_text(result):
    text = (result.stderr.strip() or result.stdout.strip()).splitlines()
    lines = [t for t in text if t.startswith("dry-parse:")] or text[:1] or ["(no message)"]
    msg = lines[0]
    if msg.startswith("dry-parse: "):
        msg = msg[len("dry-parse: "):]
    return msg.replace(PLACEHOLDER, "X")


def problem_order(problem):
    file, line, _ = problem.split(":", 2)
    return (file, int(line))


def default_files(root):
    files = [os.path.join(root, "README.md")]
    files += sorted(glob.glob(os.path.join(root, "docs", "**", "*.md"), recursive=True))
    return [f for f in files if os.path.isfile(f)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--polar", default="build/polar", help="the built polar binary")
    ap.add_argument("--polar-run", default="", help="the built polar-run binary (if built)")
    ap.add_argument("--list", action="store_true",
                    help="print the commands found (as parsed), check nothing")
    ap.add_argument("files", nargs="*", help="markdown files (default: README.md, docs/**/*.md)")
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    checker = Checker(root, os.path.abspath(args.polar),
                      os.path.abspath(args.polar_run) if args.polar_run else "", args.list)
    files = [os.path.abspath(f) for f in args.files] or default_files(root)
    for f in files:
        checker.check_file(f)
    checker.finish()
    checker.problems.sort(key=problem_order)
    for p in checker.problems:
        print(p)
    if checker.problems:
        print("check_docs: %d problem(s) in %d file(s)" % (len(checker.problems), len(files)))
        return 1
    print("check_docs: %d file(s) match the program and the tree" % len(files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
