#!/usr/bin/env python3
"""Writes an upgrade script from its hand-written part and the install script's sources.

    scripts/build_update.py src/sql/updates/1.5--1.6.sql src/sql/schema.sql src/sql/scoring.sql ...

The hand-written part (src/sql/updates/FROM--TO.sql) holds only what cannot be derived: ALTERs of
tables and types, data moves, DROPs of functions whose signature changed and of views whose
columns changed.  Its line "-- @functions" is replaced by every function and aggregate of the
sources, each as CREATE OR REPLACE with the statements that describe it (COMMENT ON, GRANT,
REVOKE), in the sources' order; what comes before that line runs before them, what comes after
runs with them in place.  A line "-- @create NAME" is replaced by the CREATE VIEW, TYPE or TABLE
of NAME and its comments (COMMENT ON it, COMMENT ON COLUMN of it) as the sources have them: a new
object, or a view the hand-written part dropped before it.  The result goes to standard output
(the Makefile writes extension/engagement_scoring--FROM--TO.sql).

Only the current version's upgrade script is written this way: a released one is frozen, since
the sources move on.  test/shell/upgrade.sh checks that the committed script is what this writes,
and that the updated database matches a fresh install, object by object.
"""
import os
import re
import sys

MARKER = "-- @functions"
# The statements carried over from the sources, by their first words.
ROUTINE = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?(FUNCTION|AGGREGATE)\b", re.I)
ABOUT_ROUTINE = re.compile(r"(COMMENT\s+ON\s+(FUNCTION|AGGREGATE)|REVOKE\s+\w+\s+ON\s+FUNCTION|GRANT\s+\w+\s+ON\s+FUNCTION)\b", re.I)


def statements(text):
    """Splits SQL into (leading comment lines, statement) pairs at top-level semicolons, reading
    quotes, quoted identifiers, dollar quotes and comments as PostgreSQL's lexer does."""
    out, start, i, n = [], 0, 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("--", i):
            i = text.find("\n", i)
            i = n if i < 0 else i + 1
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while depth and i < n:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c in "'\"":
            escapes = c == "'" and i > 0 and text[i - 1] in "eE" and not (text[i - 2:i - 1].isalnum() if i > 1 else False)
            i += 1
            while i < n:
                if escapes and text[i] == "\\":
                    i += 2
                elif text[i] == c:
                    if text.startswith(c * 2, i):
                        i += 2
                    else:
                        break
                else:
                    i += 1
            i += 1
        elif c == "$" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$", text[i:])
            if m:
                end = text.find(m.group(0), i + len(m.group(0)))
                if end < 0:
                    sys.exit("build_update.py: unterminated dollar quote %s" % m.group(0))
                i = end + len(m.group(0))
            else:
                i += 1
        elif c == ";":
            out.append(text[start:i + 1])
            start = i = i + 1
        else:
            i += 1
    if text[start:].strip() and not all(l.strip().startswith("--") or not l.strip() for l in text[start:].splitlines()):
        sys.exit("build_update.py: a statement without its semicolon at the end of the input")
    result = []
    for chunk in out:
        lines = chunk.strip("\n").split("\n")
        # the comment lines right above the statement describe it; blank lines before them do not
        k = 0
        while k < len(lines) and (lines[k].strip().startswith("--") or not lines[k].strip()):
            k += 1
        comment = [l for l in lines[:k]]
        while comment and comment[0].strip() == "":
            comment.pop(0)
        # a comment block separated from the statement by a blank line is a section heading: dropped
        if "" in [l.strip() for l in comment]:
            comment = comment[len(comment) - [l.strip() for l in comment][::-1].index(""):]
        result.append(("\n".join(comment), "\n".join(lines[k:])))
    return result


CREATE_MARKER = re.compile(r"^-- @create (\w+)\n", re.M)
CREATE_OBJECT = re.compile(r"CREATE\s+(?:VIEW|TYPE|TABLE)\s+@extschema@\.(\w+)\b", re.I)
ABOUT_OBJECT = re.compile(r"COMMENT\s+ON\s+(?:(?:VIEW|TYPE|TABLE)\s+@extschema@\.(\w+)\s|COLUMN\s+@extschema@\.(\w+)\.)", re.I)


def object_statements(name, sources):
    """The statements of the sources that create view, type or table name or comment on it or its
    columns."""
    found, created = [], False
    for path in sources:
        with open(path) as f:
            for comment, stmt in statements(f.read()):
                create, about = CREATE_OBJECT.match(stmt), ABOUT_OBJECT.match(stmt)
                if (create and create.group(1) == name) or (about and name in about.groups()):
                    created = created or create is not None
                    found.append((comment + "\n" if comment else "") + stmt + "\n")
    if not created:
        sys.exit("build_update.py: no CREATE VIEW, TYPE or TABLE of %s in the sources" % name)
    return "".join(found)


def main(argv):
    if len(argv) < 3:
        sys.exit("usage: build_update.py HAND_PART SOURCE.sql...")
    hand_path, sources = argv[1], argv[2:]
    with open(hand_path) as f:
        hand = f.read()
    if hand.count(MARKER + "\n") != 1:
        sys.exit("build_update.py: %s must have exactly one line \"%s\"" % (hand_path, MARKER))
    hand = CREATE_MARKER.sub(lambda m: object_statements(m.group(1), sources), hand)
    if re.search(r"^--\s*@create\b", hand, re.M):
        sys.exit("build_update.py: a line \"-- @create NAME\" not understood in %s" % hand_path)
    before, after = hand.split(MARKER + "\n")
    generated = []
    for path in sources:
        with open(path) as f:
            parts = [(c, s) for c, s in statements(f.read()) if ROUTINE.match(s) or ABOUT_ROUTINE.match(s)]
        if not parts:
            continue
        generated.append("-- ----- from %s\n" % os.path.relpath(path))
        for comment, stmt in parts:
            stmt = ROUTINE.sub(lambda m: "CREATE OR REPLACE " + m.group(1).upper(), stmt, count=1)
            generated.append((comment + "\n" if comment else "") + stmt + "\n")
    sys.stdout.write(before)
    sys.stdout.write("-- Every function and aggregate of this version, as the install script creates them (written\n"
                     "-- by scripts/build_update.py from %s; edit those, not this part).\n\n"
                     % os.path.relpath(os.path.dirname(sources[0]) or "."))
    sys.stdout.write("\n".join(generated))
    sys.stdout.write(after)


if __name__ == "__main__":
    main(sys.argv)
