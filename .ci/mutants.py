#!/usr/bin/env python3
"""Single-point mutation testing of the lock-free code (issue 20, item 2).

Run as `bash .ci/mutants [--files F ...] [--list] [--stress]`. Not part of CI:
each mutant costs one incremental build and one run of a loom suite, so the
whole list takes hours on the 2-core machine; run it for the files you
changed.

Mutation operators, each applied alone to a pristine copy of one file:

* an `Ordering` argument weakened by one step, kept valid for its operation
  (a load never gets `Release`, a CAS failure ordering never `AcqRel`):
  `SeqCst` -> `Acquire` (load) / `Release` (store) / `AcqRel` (read-modify-
  write); `AcqRel` -> `Acquire` and -> `Release`; `Acquire`, `Release` ->
  `Relaxed`;
* a `fence` deleted, and a `SeqCst` fence weakened to `AcqRel`;
* a CAS success check inverted: `.is_ok()` <-> `.is_err()` after a
  `compare_exchange`, or the `Ok`/`Err` arms of a `match` on it swapped.

A mutant is *killed* when its loom suite (then, with `--stress`, the file's
stress tests) fails or runs past the time limit, *survives* when they pass,
and is *unviable* when it does not compile. Orderings that are not a direct
argument of an atomic operation (an ordering chosen by a helper function, a
seeded variant's switch) are weakened from `Acquire`/`Release` to `Relaxed`
only (valid for every operation); other such sites, and the code of the
seeded bugs themselves, are listed as skipped.

The file is restored after every mutant, also on Ctrl-C; the script refuses
to start on a file with uncommitted changes, so a crash cannot lose work.
Results: printed, and written to target/mutants/results.txt (one line per
mutant) and target/mutants/summary.md (the table docs/reliability.md quotes).
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "target", "mutants")

# Which checks can see a file: its loom suites (`--test NAME` under
# `--cfg loom`) and its stress tests (plain `--test NAME`, release).
SUITES = {
    "src/stack.rs": (["loom_stack"], ["stack"]),
    "src/take_all.rs": (["loom_take_all"], ["take_all"]),
    "src/list/map.rs": (["loom_list"], ["list"]),
    "src/list/set.rs": (["loom_list"], ["list"]),
    "src/skiplist/node.rs": (["loom_skiplist"], ["skiplist"]),
    "src/skiplist/raw.rs": (["loom_skiplist"], ["skiplist"]),
    "src/skiplist/map.rs": (["loom_skiplist"], ["skiplist"]),
    "src/skiplist/iter.rs": (["loom_skiplist"], ["skiplist"]),
    "src/skiplist/set.rs": (["loom_skiplist"], ["skiplist"]),
    "src/intrusive.rs": (["loom_heap"], ["heap"]),
    "src/reclaim/mod.rs": (["loom_reclaim", "loom_stack"], ["own_epoch", "hazard_cache", "stack"]),
    "src/reclaim/epoch.rs": (["loom_reclaim", "loom_stack"], ["own_epoch", "hazard_cache", "stack"]),
    "src/reclaim/hazard.rs": (["loom_reclaim", "loom_stack"], ["own_epoch", "hazard_cache", "stack"]),
    "src/reclaim/own_epoch.rs": (["loom_reclaim", "loom_stack"], ["own_epoch", "stack"]),
    "src/heap/fork_gate.rs": (["loom_heap"], ["global"]),
    "src/heap/huge_table.rs": (["loom_heap"], ["heap", "global"]),
    "src/heap/arena.rs": (["loom_heap"], ["heap", "global"]),
    "src/heap/pool.rs": (["loom_heap"], ["heap", "global"]),
    "src/heap/large.rs": (["loom_heap"], ["heap", "realloc", "global"]),
}

LOAD = {"load"}
STORE = {"store"}
RMW = {"swap", "fetch_add", "fetch_sub", "fetch_or", "fetch_and", "fetch_xor",
       "fetch_nand", "fetch_max", "fetch_min"}
CAS = {"compare_exchange", "compare_exchange_weak"}
FENCE = {"fence"}

# Weakenings by (operation kind, ordering).
WEAKER = {
    "load": {"SeqCst": ["Acquire"], "Acquire": ["Relaxed"]},
    "store": {"SeqCst": ["Release"], "Release": ["Relaxed"]},
    "rmw": {"SeqCst": ["AcqRel"], "AcqRel": ["Acquire", "Release"],
            "Acquire": ["Relaxed"], "Release": ["Relaxed"]},
}


def mask(text):
    """The text with comments, strings and char literals blanked (same
    length, newlines kept), so that scanning finds code only."""
    out = list(text)
    i, n = 0, len(text)

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            blank(i, end)
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
        elif c == "'":
            m = re.match(r"'(\\[^']{1,10}|[^\\'])'", text[i:])
            if m:
                blank(i, i + m.end())
                i += m.end()
            else:
                i += 1  # a lifetime
        else:
            i += 1
    return "".join(out)


def enclosing_call(code, pos):
    """(callee name, callee start, open paren, argument index) of the call
    whose argument list holds `pos`, or None."""
    depth, commas, i = 0, 0, pos - 1
    while i >= 0:
        c = code[i]
        if c in ")]}":
            depth += 1
        elif c in "([{":
            if depth == 0:
                if c != "(":
                    return None
                j = i - 1
                while j >= 0 and code[j].isspace():
                    j -= 1
                k = j
                while k >= 0 and (code[k].isalnum() or code[k] == "_"):
                    k -= 1
                name = code[k + 1:j + 1]
                start = k + 1
                while start >= 2 and code[start - 2:start] == "::":
                    s = start - 3
                    while s >= 0 and (code[s].isalnum() or code[s] == "_"):
                        s -= 1
                    start = s + 1
                return name, start, i, commas
            depth -= 1
        elif c == "," and depth == 0:
            commas += 1
        elif c == ";" and depth == 0:
            return None
        i -= 1
    return None


def matching(code, open_pos):
    """Index of the bracket closing the one at `open_pos`."""
    pairs = {"(": ")", "{": "}", "[": "]"}
    stack = []
    for i in range(open_pos, len(code)):
        c = code[i]
        if c in pairs:
            stack.append(pairs[c])
        elif c in ")}]":
            stack.pop()
            if not stack:
                return i
    raise ValueError("unbalanced brackets")


def line_of(text, pos):
    return text.count("\n", 0, pos) + 1


def find_mutants(path, text):
    """(mutants, skipped): each mutant is (line, description, start, end,
    replacement); each skipped site is (line, reason)."""
    code = mask(text)
    mutants, skipped = [], []
    # Code that exists only to be a seeded bug (a `seeded_bug_*` function,
    # the bug's branch `if seeded::...() { ... }`) is not mutated: a mutant
    # of a bug says nothing about the structure.
    seeded_spans = []
    for m in re.finditer(r"\bfn\s+seeded_bug\w*[^{;]*\{|\bif\s+seeded::\w+\(\)\s*\{", code):
        seeded_spans.append((m.start(), matching(code, m.end() - 1)))

    # Nor are the unit tests at the end of a file.
    for m in re.finditer(r"#\[cfg\((?:all\()?test\b[^\]]*\]\s*mod\s+\w+\s*\{", code):
        seeded_spans.append((m.start(), matching(code, m.end() - 1)))

    def in_seeded(pos):
        return any(a <= pos <= b for a, b in seeded_spans)
    for m in re.finditer(r"\b(?:Ordering::)?(SeqCst|AcqRel|Acquire|Release)\b", code):
        order, pos = m.group(1), m.start()
        line = line_of(text, pos)
        if in_seeded(pos):
            skipped.append((line, f"{order} in a seeded bug's own code or a unit test"))
            continue
        if not m.group(0).startswith("Ordering::"):
            # A bare name is an enum variant of something else, or a `use`.
            continue
        call = enclosing_call(code, pos)
        opstart, opend = m.start(1), m.end(1)
        if call is None:
            # An ordering chosen by a helper (a seeded variant's switch, a
            # constant): `Relaxed` is valid for every atomic operation, so
            # `Acquire`/`Release` can still be weakened to it.
            if order in ("Acquire", "Release"):
                mutants.append((line, f"{order} -> Relaxed (an ordering a helper returns)",
                                opstart, opend, "Relaxed"))
            else:
                skipped.append((line, f"{order} not an argument of an atomic operation"))
            continue
        name, cstart, open_paren, arg = call
        if name in FENCE:
            close = matching(code, open_paren)
            mutants.append((line, f"fence({order}) deleted", cstart, close + 1, "()"))
            if order == "SeqCst":
                mutants.append((line, "fence(SeqCst) -> fence(AcqRel)", opstart, opend, "AcqRel"))
            continue
        if name in LOAD:
            kind = "load"
        elif name in STORE:
            kind = "store"
        elif name in RMW:
            kind = "rmw"
        elif name in CAS:
            kind = "rmw" if arg == 2 else "load" if arg == 3 else None
        elif name == "fetch_update":
            kind = "rmw" if arg == 0 else "load" if arg == 1 else None
        else:
            kind = None
        if kind is None and order in ("Acquire", "Release") and name not in FENCE:
            mutants.append((line, f"{order} -> Relaxed (passed to `{name}`)", opstart, opend, "Relaxed"))
            continue
        if kind is None:
            skipped.append((line, f"{order} passed to `{name}`, not an atomic operation"))
            continue
        what = name + ("" if name not in CAS else " success" if arg == 2 else " failure")
        for weaker in WEAKER[kind].get(order, []):
            mutants.append((line, f"{what}: {order} -> {weaker}", opstart, opend, weaker))
    # CAS success checks.
    for m in re.finditer(r"\.\s*(compare_exchange(?:_weak)?)\s*\(", code):
        open_paren = m.end() - 1
        close = matching(code, open_paren)
        line = line_of(text, m.start())
        if in_seeded(m.start()):
            skipped.append((line, "CAS in a seeded bug's own code or a unit test"))
            continue
        rest = code[close + 1:]
        after = re.match(r"\s*\.\s*(is_ok|is_err)\s*\(\s*\)", rest)
        if after:
            old = after.group(1)
            new = "is_err" if old == "is_ok" else "is_ok"
            s = close + 1 + after.start(1)
            mutants.append((line, f"CAS check .{old}() -> .{new}()", s, s + len(old), new))
            continue
        brace = re.match(r"\s*\{", rest)
        if brace and re.search(r"\bmatch\b[^;{}]*$", code[max(0, m.start() - 400):m.start()]):
            body_open = close + 1 + brace.end() - 1
            body_close = matching(code, body_open)
            arms = []
            depth = 0
            i = body_open + 1
            at_arm_start = True
            while i < body_close:
                c = code[i]
                if c in "([{":
                    depth += 1
                elif c in ")]}":
                    depth -= 1
                    if depth == 0 and c == "}":
                        at_arm_start = True
                elif c == "," and depth == 0:
                    at_arm_start = True
                elif not c.isspace() and depth == 0 and at_arm_start:
                    a = re.match(r"(Ok|Err)\s*\(", code[i:])
                    if a:
                        arms.append((i, a.group(1)))
                    at_arm_start = False
                i += 1
            if sorted(a for _, a in arms) == ["Err", "Ok"]:
                mutants.append((line, "CAS match arms Ok <-> Err swapped", arms, None, None))
            else:
                skipped.append((line, "CAS result matched in a form the script does not mutate"))
            continue
        skipped.append((line, "CAS result used in a form the script does not mutate"))
    mutants.sort(key=lambda t: (t[0], t[1]))
    return mutants, skipped


def apply(text, mutant):
    line, desc, start, end, repl = mutant
    if end is None:  # swapped match arms: `start` holds the arm positions
        out = text
        for pos, name in sorted(start, reverse=True):
            new = "Err" if name == "Ok" else "Ok"
            out = out[:pos] + new + out[pos + len(name):]
        return out
    return text[:start] + repl + text[end:]


def run(cmd, env, timeout):
    """(status, seconds, first failing test): status is 'pass', 'fail' or
    'timeout'."""
    t0 = time.time()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        return "timeout", time.time() - t0, ""
    if p.returncode == 0:
        return "pass", time.time() - t0, ""
    failed = re.findall(r"^test (\S+) \.\.\. FAILED", out, re.M)
    if not failed:
        failed = re.findall(r"^---- (\S+) stdout ----", out, re.M)
    what = failed[0] if failed else (out.strip().splitlines() or [""])[-1]
    return "fail", time.time() - t0, what


def cargo(loom, tests, build_only):
    cmd = ["cargo", "test", "--release", "--target-dir",
           os.path.join("target", "mutants", "loom" if loom else "plain")]
    for t in tests:
        cmd += ["--test", t]
    if build_only:
        cmd.append("--no-run")
    env = dict(os.environ)
    env["CARGO_TERM_COLOR"] = "never"
    if loom:
        env["RUSTFLAGS"] = "--cfg loom"
    return cmd, env


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", nargs="*", default=list(SUITES), help="files to mutate (default: all)")
    ap.add_argument("--list", action="store_true", help="list the mutants and skipped sites; run nothing")
    ap.add_argument("--stress", action="store_true", help="run the stress tests on loom survivors")
    ap.add_argument("--lines", help="only mutants on these lines, e.g. 200-260")
    args = ap.parse_args()

    os.makedirs(OUT, exist_ok=True)
    plan = []
    for f in args.files:
        if f not in SUITES:
            sys.exit(f"mutants: no suites are configured for {f}; known: {', '.join(SUITES)}")
        text = open(os.path.join(ROOT, f)).read()
        muts, skipped = find_mutants(f, text)
        if args.lines:
            lo, hi = (int(x) for x in args.lines.split("-"))
            muts = [m for m in muts if lo <= m[0] <= hi]
        plan.append((f, text, muts, skipped))
        print(f"{f}: {len(muts)} mutants, {len(skipped)} sites skipped")
        for line, reason in skipped:
            print(f"  skipped {f}:{line}: {reason}")
        if args.list:
            for m in muts:
                print(f"  {f}:{m[0]}: {m[1]}")
    if args.list:
        return

    dirty = subprocess.run(["git", "status", "--porcelain", "--"] + [p[0] for p in plan],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if dirty:
        sys.exit(f"mutants: commit or stash these first (the script rewrites them):\n{dirty}")

    results = open(os.path.join(OUT, "results.txt"), "w")
    summary = []
    current = {}

    def restore(*_):
        for path, text in current.items():
            open(os.path.join(ROOT, path), "w").write(text)
        if _:
            sys.exit("mutants: interrupted; files restored")

    signal.signal(signal.SIGINT, restore)
    signal.signal(signal.SIGTERM, restore)

    for f, text, muts, skipped in plan:
        loom_tests, stress_tests = SUITES[f]
        # Baseline: the pristine file passes, and its time sets the limit.
        for loom, tests in [(True, loom_tests)] + ([(False, stress_tests)] if args.stress else []):
            st, _, what = run(*cargo(loom, tests, True), timeout=3600)
            if st != "pass":
                sys.exit(f"mutants: the pristine build of {tests} fails: {what}")
        st, base, what = run(*cargo(True, loom_tests, False), timeout=3600)
        if st != "pass":
            sys.exit(f"mutants: the pristine loom suites {loom_tests} fail ({what}); fix that first")
        limit = max(60.0, 3 * base)
        print(f"\n{f}: baseline {loom_tests} {base:.0f}s, limit {limit:.0f}s per mutant")
        counts = {"killed": 0, "timeout": 0, "survived": 0, "unviable": 0}
        for m in muts:
            current[f] = text
            open(os.path.join(ROOT, f), "w").write(apply(text, m))
            try:
                verdict, by = None, ""
                st, _, what = run(*cargo(True, loom_tests, True), timeout=3600)
                if st != "pass":
                    verdict = "unviable"
                else:
                    st, secs, what = run(*cargo(True, loom_tests, False), timeout=limit)
                    if st == "fail":
                        verdict, by = "killed", f"loom {what}"
                    elif st == "timeout":
                        verdict, by = "timeout", f"loom past {limit:.0f}s"
                    elif args.stress:
                        st, _, what = run(*cargo(False, stress_tests, True), timeout=3600)
                        if st == "pass":
                            st, _, what = run(*cargo(False, stress_tests, False), timeout=1800)
                        if st == "fail":
                            verdict, by = "killed", f"stress {what}"
                        elif st == "timeout":
                            verdict, by = "timeout", "stress past 1800s"
                    if verdict is None:
                        verdict = "survived"
            finally:
                open(os.path.join(ROOT, f), "w").write(text)
                current.pop(f, None)
            counts[verdict] += 1
            row = f"{verdict:9} {f}:{m[0]}: {m[1]}" + (f"  [{by}]" if by else "")
            print(row, flush=True)
            results.write(row + "\n")
            results.flush()
        viable = counts["killed"] + counts["timeout"] + counts["survived"]
        rate = 100.0 * (counts["killed"] + counts["timeout"]) / viable if viable else 0.0
        summary.append(f"| `{f}` | {len(muts)} | {counts['killed']} | {counts['timeout']} | "
                       f"{counts['survived']} | {counts['unviable']} | {len(skipped)} | {rate:.0f}% |")
        print(f"{f}: {counts} kill rate {rate:.0f}%")

    with open(os.path.join(OUT, "summary.md"), "w") as s:
        s.write("| file | mutants | killed | timeout | survived | unviable | sites skipped | kill rate |\n")
        s.write("|---|---|---|---|---|---|---|---|\n")
        s.write("\n".join(summary) + "\n")
    print("\n" + open(os.path.join(OUT, "summary.md")).read())


if __name__ == "__main__":
    main()
