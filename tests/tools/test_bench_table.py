#!/usr/bin/env python3
"""tools/bench_table.py on Google Benchmark JSON written here: the median it picks, the
baselines it pairs each case with, errors and counters."""
import contextlib
import io
import json
import pathlib
import sys
import tempfile
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / 'tools'))
import bench_table  # noqa: E402


def run(name, real, cpu=None, unit='ns', kind='iteration', aggregate=None, **extra):
    entry = {'name': name + (f'_{aggregate}' if aggregate else ''), 'run_name': name, 'run_type': kind,
             'real_time': real, 'cpu_time': real if cpu is None else cpu, 'time_unit': unit}
    if aggregate:
        entry['aggregate_name'] = aggregate
    entry.update(extra)
    return entry


def median_of(name, real, **extra):
    """The aggregates of a run with repetitions: mean, median and stddev."""
    return [run(name, real * 2, kind='aggregate', aggregate='mean', **extra),
            run(name, real, kind='aggregate', aggregate='median', **extra),
            run(name, 1.0, kind='aggregate', aggregate='stddev')]


class BenchTable(unittest.TestCase):
    def table(self, benchmarks, *options):
        with tempfile.TemporaryDirectory() as d:
            path = pathlib.Path(d) / 'bench_x.json'
            path.write_text(json.dumps({'context': {}, 'benchmarks': benchmarks}))
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                self.assertEqual(bench_table.main([*options, str(path)]), 0)
        lines = out.getvalue().splitlines()
        self.assertEqual(lines[0], '### bench_x')
        header = [c.strip() for c in lines[2].strip('|').split('|')]
        rows = {}
        for line in lines[4:]:
            cells = [c.strip() for c in line.strip('|').split('|')]
            rows[cells[0].strip('`')] = dict(zip(header, cells))
        return rows

    def test_names_split_outside_template_arguments(self):
        self.assertEqual(bench_table.split_name('BM_f<float, ggml_type::q4_0>/tokens:4096/min_time:0.100'),
                         ('BM_f', '<float, ggml_type::q4_0>', 'tokens:4096'))
        self.assertEqual(bench_table.split_name('BM_g/576/1024/manual_time'), ('BM_g', '', '576/1024'))
        self.assertEqual(bench_table.split_name('BM_h'), ('BM_h', '', ''))

    def test_median_aggregate_and_baselines(self):
        rows = self.table(
            median_of('BM_memcpy_cache<float>/tokens:4096', 1000.0, bytes_per_second=2e10)
            + median_of('BM_quantize<ggml_type::q4_0, float>/tokens:4096/rotation:0', 4000.0, items_per_second=1e9)
            + median_of('BM_quantize<ggml_type::q4_0, float>/tokens:4096/rotation:128', 8000.0)
            + median_of('BM_quantize<ggml_type::q4_0, float>/tokens:512/rotation:0', 500.0)
            + median_of('BM_quantize_ref<ggml_type::q4_0>/tokens:4096', 40000.0))
        q = rows['BM_quantize<ggml_type::q4_0, float>/tokens:4096/rotation:0']
        self.assertEqual(q['median'], '4 µs')  # the median, not the mean
        self.assertEqual(q['items/s'], '1 G')
        self.assertEqual(q['% of copy'], '25 %')
        self.assertEqual(q['× ref'], '10.00')
        rotated = rows['BM_quantize<ggml_type::q4_0, float>/tokens:4096/rotation:128']
        self.assertEqual((rotated['% of copy'], rotated['× ref']), ('12 %', '5.00'))  # no rotation in either
        small = rows['BM_quantize<ggml_type::q4_0, float>/tokens:512/rotation:0']
        self.assertEqual((small['% of copy'], small['× ref']), ('', ''))  # no baseline of 512 tokens
        copy = rows['BM_memcpy_cache<float>/tokens:4096']
        self.assertEqual((copy['bytes/s'], copy['% of copy']), ('20 G', ''))

    def test_the_closest_baseline_and_ambiguity(self):
        rows = self.table([run('BM_cuda_memcpy_same_bytes<bf16, avg>/side:24/dim:1024/manual_time', 10.0, unit='us'),
                           run('BM_cuda_memcpy_same_bytes<bf16, max>/side:24/dim:1024/manual_time', 20.0, unit='us'),
                           run('BM_cuda_grid_reduce<bf16, max>/side:24/dim:1024/manual_time', 40.0, unit='us'),
                           run('BM_copy/side:24/manual_time', 1.0, unit='us'),
                           run('BM_copy/side:24/extra:1/manual_time', 1.0, unit='us'),
                           run('BM_other/side:24/dim:1024/extra:1/manual_time', 1.0, unit='us')])
        self.assertEqual(rows['BM_cuda_grid_reduce<bf16, max>/side:24/dim:1024']['% of copy'], '50 %')
        self.assertEqual(rows['BM_cuda_grid_reduce<bf16, max>/side:24/dim:1024']['median'], '40 µs')
        # No template: the memcpy cases do not qualify; of the two copies, the one that also
        # has extra:1 shares more.
        self.assertEqual(rows['BM_other/side:24/dim:1024/extra:1']['% of copy'], '100 %')

    def test_template_arguments_give_way_where_none_fits(self):
        rows = self.table([run('BM_copy<f16>/n:1/bits:2', 1.0), run('BM_copy<f16>/n:2/bits:2', 1.0),
                           run('BM_q<bf16>/n:1/bits:2', 4.0), run('BM_q<f16>/n:1/bits:2', 2.0)])
        self.assertEqual(rows['BM_q<bf16>/n:1/bits:2']['% of copy'], '25 %')
        self.assertEqual(rows['BM_q<f16>/n:1/bits:2']['% of copy'], '50 %')

    def test_equal_candidates_give_no_baseline(self):
        rows = self.table([run('BM_copy/a:1', 1.0), run('BM_copy/b:2', 1.0), run('BM_f/a:1/b:2', 2.0)])
        self.assertEqual(rows['BM_f/a:1/b:2']['% of copy'], '')

    def test_runs_without_aggregates_counters_errors_and_cpu_time(self):
        rows = self.table([run('BM_f/n:1', 3.0, cpu=30.0), run('BM_f/n:1', 1.0, cpu=10.0),
                           run('BM_f/n:1', 2.0, cpu=20.0, TFLOPs=4.0),
                           run('BM_g/n:1', 0.0, error_occurred=True, error_message='disagrees with the reference')],
                          '--time', 'cpu')
        self.assertEqual(rows['BM_f/n:1']['median'], '20 ns')  # of three runs' CPU times
        self.assertEqual(rows['BM_f/n:1']['TFLOPs'], '4')
        self.assertEqual(rows['BM_g/n:1']['median'], 'error: disagrees with the reference')

    def test_filter(self):
        rows = self.table([run('BM_f/n:1', 1.0), run('BM_g/n:1', 1.0)], '--filter', '^BM_g')
        self.assertEqual(list(rows), ['BM_g/n:1'])

    def test_unreadable_file(self):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            self.assertEqual(bench_table.main(['/nonexistent/bench.json']), 1)
        self.assertIn('/nonexistent/bench.json', err.getvalue())


if __name__ == '__main__':
    unittest.main()
