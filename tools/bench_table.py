#!/usr/bin/env python3
"""Markdown tables from Google Benchmark JSON (tokred's CPU and CUDA benchmarks alike).

Each case of a file becomes a row: its median time (the `median` aggregate where the run had
repetitions, else the median of its runs), its bytes and items per second, its counters, and
its speed against two baselines from the same file. The memcpy baseline (function names
matching --baseline, default `memcpy|copy`) gives `% of copy`: the baseline's time over the
case's, as a percentage, which is the share of the copy's bandwidth where both move the same
bytes. The scalar reference (names matching --reference, default `_ref$|_ref<|scalar`) gives
`× ref`: its time over the case's. A case's baseline is, of those whose template arguments
(`float`, `ggml_type::q4_0`, …) and benchmark arguments (`tokens:4096`, `dim:1024`, …) are all
among its own, the one sharing the most with it; none where two share as much. So a baseline
that leaves an argument out (a copy has no `rotation`) serves every value of it. Where no
baseline's template arguments fit, the benchmark arguments alone decide (a copy of fp16 bytes
for a bf16 case of the same shape). Cases that
reported an error show it in place of their figures.

usage: bench_table.py [--time real|cpu] [--baseline REGEX] [--reference REGEX]
                      [--filter REGEX] FILE.json...

--time picks Google Benchmark's real time (default; the manual time of the CUDA benchmarks) or
the CPU time; --filter keeps the cases whose full name matches.
"""
import argparse
import json
import pathlib
import re
import statistics
import sys

# Name parts that say how a case ran rather than what it computed.
RUN_OPTIONS = re.compile(r'^(min_time|min_warmup_time|repeats|iterations):|^(manual_time|real_time|process_time)$')
UNIT_NS = {'ns': 1.0, 'us': 1e3, 'ms': 1e6, 's': 1e9}


def split_name(run_name):
    """('BM_f', '<float, 4>', 'tokens:576/dim:1024') from 'BM_f<float, 4>/tokens:576/dim:1024/min_time:0.1'."""
    depth, cut = 0, len(run_name)
    for i, ch in enumerate(run_name):  # the first '/' outside the template arguments
        depth += {'<': 1, '>': -1}.get(ch, 0)
        if ch == '/' and depth == 0:
            cut = i
            break
    head, args = run_name[:cut], run_name[cut + 1:]
    function, _, template = head.partition('<')
    template = '<' + template if template else ''
    kept = [part for part in args.split('/') if part and not RUN_OPTIONS.match(part)]
    return function, template, '/'.join(kept)


class Case:
    def __init__(self, run_name, entries, time_key):
        self.run_name = run_name
        self.function, self.template, self.args = split_name(run_name)
        errors = [e for e in entries if e.get('error_occurred')]
        self.error = errors[0].get('error_message', 'error') if errors else None
        medians = [e for e in entries if e.get('run_type') == 'aggregate' and e.get('aggregate_name') == 'median']
        runs = [e for e in entries if e.get('run_type', 'iteration') == 'iteration' and not e.get('error_occurred')]
        chosen = medians if medians else runs
        self.time_ns = self.bytes = self.items = None
        self.counters = {}
        if self.error or not chosen:
            return
        first = chosen[0]
        self.time_ns = statistics.median(e[time_key] * UNIT_NS[e.get('time_unit', 'ns')] for e in chosen)
        if 'bytes_per_second' in first:
            self.bytes = statistics.median(e['bytes_per_second'] for e in chosen)
        if 'items_per_second' in first:
            self.items = statistics.median(e['items_per_second'] for e in chosen)
        known = {'name', 'family_index', 'per_family_instance_index', 'run_name', 'run_type', 'repetitions',
                 'repetition_index', 'threads', 'aggregate_name', 'aggregate_unit', 'iterations', 'real_time',
                 'cpu_time', 'time_unit', 'bytes_per_second', 'items_per_second', 'label', 'error_occurred',
                 'error_message'}
        for key in {k for e in chosen for k, v in e.items() if k not in known and isinstance(v, (int, float))}:
            self.counters[key] = statistics.median(e[key] for e in chosen if key in e)


def load_cases(path, time_key, keep):
    data = json.loads(pathlib.Path(path).read_text())
    grouped = {}
    for entry in data.get('benchmarks', []):
        run_name = entry.get('run_name', entry['name'])
        if keep and not keep.search(run_name):
            continue
        grouped.setdefault(run_name, []).append(entry)
    return [Case(name, entries, time_key) for name, entries in grouped.items()]


def parts(case):
    """The case's template arguments and benchmark arguments as two sets (positional arguments
    keep their position)."""
    template = {t.strip() for t in case.template.strip('<>').split(',') if t.strip()}
    args = {a if ':' in a else f'#{i}:{a}' for i, a in enumerate(case.args.split('/')) if a}
    return template, args


def partner(case, candidates):
    """The candidate computed on the case's inputs: of those whose template arguments and
    benchmark arguments are all among the case's, the one that shares the most with it; where
    none qualifies, the same over the benchmark arguments alone (a copy of fp16 bytes serves a
    bf16 case). None where two share as much."""
    template, args = parts(case)
    for use_template in (True, False):
        scored = []
        for c in candidates:
            t, a = parts(c)
            if a <= args and (t <= template or not use_template):
                scored.append((len(a) + (len(t) if use_template else 0), c))
        if scored:
            scored.sort(key=lambda s: -s[0])
            return None if len(scored) > 1 and scored[0][0] == scored[1][0] else scored[0][1]
    return None


def time_text(ns):
    for unit, scale in (('s', 1e9), ('ms', 1e6), ('µs', 1e3)):
        if ns >= scale:
            return f'{ns / scale:.3g} {unit}'
    return f'{ns:.3g} ns'


def rate_text(value):
    for prefix, scale in (('T', 1e12), ('G', 1e9), ('M', 1e6), ('k', 1e3)):
        if value >= scale:
            return f'{value / scale:.3g} {prefix}'
    return f'{value:.3g}'


def table(cases, baseline, reference):
    copies = [c for c in cases if baseline.search(c.function)]
    refs = [c for c in cases if reference.search(c.function) and c not in copies]
    counter_names = sorted({k for c in cases for k in c.counters})
    head = ['case', 'median', 'bytes/s', 'items/s', '% of copy', '× ref'] + counter_names
    rows = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for c in cases:
        name = f'`{c.function}{c.template}' + (f'/{c.args}`' if c.args else '`')
        if c.error:
            rows.append(f'| {name} | error: {c.error} |' + ' |' * (len(head) - 2))
            continue
        if c.time_ns is None:
            continue
        cells = [name, time_text(c.time_ns), rate_text(c.bytes) if c.bytes else '',
                 rate_text(c.items) if c.items else '']
        copy = partner(c, copies) if c not in copies else None
        cells.append(f'{100.0 * copy.time_ns / c.time_ns:.0f} %' if copy and copy.time_ns else '')
        ref = partner(c, refs) if c not in refs and c not in copies else None
        cells.append(f'{ref.time_ns / c.time_ns:.2f}' if ref and ref.time_ns else '')
        cells += [f'{c.counters[k]:.4g}' if k in c.counters else '' for k in counter_names]
        rows.append('| ' + ' | '.join(cells) + ' |')
    return rows


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('files', nargs='+', metavar='FILE.json')
    parser.add_argument('--time', choices=('real', 'cpu'), default='real')
    parser.add_argument('--baseline', default=r'memcpy|copy')
    parser.add_argument('--reference', default=r'_ref$|_ref<|scalar')
    parser.add_argument('--filter', default=None)
    options = parser.parse_args(argv)
    keep = re.compile(options.filter) if options.filter else None
    out = []
    for path in options.files:
        try:
            cases = load_cases(path, options.time + '_time', keep)
        except (OSError, ValueError, KeyError) as e:
            print(f'bench_table.py: {path}: {e}', file=sys.stderr)
            return 1
        out += [f'### {pathlib.Path(path).stem}', '']
        out += table(cases, re.compile(options.baseline), re.compile(options.reference)) + ['']
    print('\n'.join(out).rstrip('\n'))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
