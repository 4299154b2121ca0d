#!/usr/bin/env python3
"""Checks (or rewrites) the code snippets in tokred's Markdown docs.

A fenced block directly after a line `<!-- snippet: path/to/file.cpp#region -->` must hold
exactly the lines between `example-begin region` and `example-end region` of that file, with
their common indentation removed, so that every code example in the docs comes from a file the
build compiles.

usage: check_doc_snippets.py {check|expand} ROOT FILE.md...
"""
import pathlib
import re
import sys
import textwrap

MARKER = re.compile(r'^<!-- snippet: (\S+)#(\S+) -->$')


def region(root, path, name):
    lines = (root / path).read_text().splitlines()
    begin = [i for i, l in enumerate(lines) if l.strip().endswith('example-begin ' + name)]
    end = [i for i, l in enumerate(lines) if l.strip().endswith('example-end ' + name)]
    if len(begin) != 1 or len(end) != 1:
        raise SystemExit(f'{path}: region {name} must appear exactly once')
    return textwrap.dedent('\n'.join(lines[begin[0] + 1:end[0]])).splitlines()


def process(root, md, rewrite):
    lines = md.read_text().splitlines()
    out, i, stale = [], 0, 0
    while i < len(lines):
        out.append(lines[i])
        m = MARKER.match(lines[i])
        i += 1
        if not m:
            continue
        lang = 'cmake' if m.group(1).endswith('.txt') else 'cpp'
        want = ['```' + lang] + region(root, m.group(1), m.group(2)) + ['```']
        if i >= len(lines) or not lines[i].startswith('```'):
            raise SystemExit(f'{md}: a snippet marker must be followed by a fenced block')
        end = i + 1
        while end < len(lines) and not lines[end].startswith('```'):
            end += 1
        if lines[i:end + 1] != want:
            stale += 1
            print(f'{md}: snippet {m.group(1)}#{m.group(2)} differs from its source')
        out.extend(want)
        i = end + 1
    if rewrite:
        md.write_text('\n'.join(out) + '\n')
    return stale


def main():
    mode, root, files = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3:]
    stale = sum(process(root, pathlib.Path(f), mode == 'expand') for f in files)
    print(f'{len(files)} documents checked, {stale} stale snippets')
    return 1 if stale and mode == 'check' else 0


if __name__ == '__main__':
    sys.exit(main())
