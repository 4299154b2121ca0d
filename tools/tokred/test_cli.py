"""End-to-end test of the `tokred` program, reading its outputs back with numpy.

    python3 test_cli.py PATH/TO/tokred SAMPLE_DIR

Runs `tokred list`, `tokred run` on every input format (.npy v1, float32 and float16, (N, D),
(T, N, D) and (T, H, W, D) shapes, .npz stored and compressed, .safetensors F32 / F16 / BF16) and
checks the outputs against numpy: a top-k by token norm recomputed here, provenance invariants and
the files' dtypes and shapes. Then every bad input gets a one-line error and a non-zero exit code,
and a small `tokred bench` writes its report twice with the same figures.
"""
import csv
import json
import os
import re
import struct
import subprocess
import sys
import tempfile

import numpy as np

TOKRED, SAMPLE = sys.argv[1], sys.argv[2]
ASTRONAUT = os.path.join(SAMPLE, "astronaut_mixed5.npy")
failures = []
checks = [0]


def check(cond, what):
    checks[0] += 1
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def tokred(*args):
    return subprocess.run([TOKRED, *args], capture_output=True, text=True)


def run_ok(out, *args):
    p = tokred("run", "--out", out, *args)
    check(p.returncode == 0, f"run {args} exit {p.returncode}: {p.stderr.strip()}")
    return p


def load_outputs(out):
    names = ["tokens", "source", "positions", "sizes", "assign"]
    return {n: np.load(os.path.join(out, n + ".npy")) for n in names}, json.load(open(os.path.join(out, "meta.json")))


def write_safetensors(path, name, array, dtype):
    if dtype == "BF16":
        u = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32).astype(np.uint64)
        data = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16).tobytes()
    else:
        data = np.ascontiguousarray(array, dtype={"F32": np.float32, "F16": np.float16}[dtype]).tobytes()
    header = json.dumps({"__metadata__": {"format": "pt"},
                         name: {"dtype": dtype, "shape": list(array.shape), "data_offsets": [0, len(data)]}})
    header += " " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header.encode() + data)


def numpy_topk_by_norm(x, keep):
    """The kept indices of topk(score=norm): highest norm first, ties to the lower index, in order."""
    norms = np.sqrt((x.astype(np.float64) ** 2).sum(axis=1)).astype(np.float32)
    order = sorted(range(len(norms)), key=lambda i: (-norms[i], i))
    return np.array(sorted(order[:keep]), dtype=np.int64)


def test_list():
    p = tokred("list")
    check(p.returncode == 0 and "tome" in p.stdout and "keep" in p.stdout, "list prints the catalogue")
    p = tokred("list", "--json")
    names = {s["name"] for s in json.loads(p.stdout)["stages"]}
    check({"pool", "topk", "divprune", "cdpruner", "tome", "random", "uniform"} <= names, f"list --json names {names}")


def test_run_topk(tmp):
    x = np.load(ASTRONAUT)  # (1, 17, 17, 768) float16
    flat = x.reshape(-1, x.shape[-1])
    out = os.path.join(tmp, "topk")
    run_ok(out, "--pipeline", "topk(keep=0.25, score=norm)", "--input", ASTRONAUT)
    o, meta = load_outputs(out)
    want = numpy_topk_by_norm(flat.astype(np.float32), 72)  # int(289 * 0.25)
    check(o["tokens"].dtype == np.float32 and o["tokens"].shape == (72, 768), "tokens float32 (72, 768)")
    check(o["source"].dtype == np.int64 and np.array_equal(o["source"], want), "topk source = numpy's top-k by norm")
    check(np.array_equal(o["tokens"], flat[want].astype(np.float32)), "kept rows are the input rows, exactly")
    t, h, w = np.unravel_index(want, x.shape[:3])
    check(o["positions"].dtype == np.int64 and np.array_equal(o["positions"], np.stack([t, h, w], 1)),
          "positions are the (t, h, w) of the source")
    check(np.array_equal(o["sizes"], np.ones(72, np.float32)), "a selection's sizes are 1")
    assign = np.full(289, -1, np.int64)
    assign[want] = np.arange(72)
    check(np.array_equal(o["assign"], assign), "assign: slot of each kept token, -1 for the dropped")
    check(meta["tokens_in"] == 289 and meta["tokens_out"] == 72 and meta["grid"] == [1, 17, 17],
          "meta.json counts and grid")
    check(meta["pipeline"] == "topk(keep=0.25, round=floor, within=global, score=norm)", f"canonical {meta['pipeline']}")
    check(meta["compute_dtype"] == "f16" and meta["input"]["shape"] == [1, 17, 17, 768], "meta.json input")


def test_run_merge(tmp):
    out = os.path.join(tmp, "chain")
    run_ok(out, "--pipeline", "pool(2x2) | tome(r=0.25) | divprune(keep=16)", "--input", ASTRONAUT)
    o, meta = load_outputs(out)
    # pool(2x2) of 17x17 -> 8x8 = 64; ToMe merges 16 -> 48; DivPrune keeps 16.
    check(o["tokens"].shape == (16, 768) and meta["tokens_out"] == 16, "chain count 16")
    landed = o["assign"] >= 0
    check(o["sizes"].sum() == landed.sum(), "sizes sum to the originals that landed")
    check(np.array_equal(o["assign"][o["source"]], np.arange(16)), "every source lands in its own slot")
    # The avg-pooled, merged token is the size-weighted mean of its originals in fp16 compute, so
    # the mean of the originals assigned to a slot approximates the slot's token.
    x = np.load(ASTRONAUT).reshape(-1, 768).astype(np.float32)
    means = np.stack([x[o["assign"] == j].mean(0) for j in range(16)])
    err = np.abs(means - o["tokens"]).max() / np.abs(means).max()
    check(err < 2e-2, f"outputs are the means of the originals assigned to them (max rel diff {err:.2e})")


def test_formats(tmp):
    x = np.load(ASTRONAUT)
    flat = x.reshape(289, 768)
    base = os.path.join(tmp, "base")
    run_ok(base, "--pipeline", "topk(keep=0.25, score=norm)", "--input", ASTRONAUT, "--dtype", "f32")
    ref, _ = load_outputs(base)
    cases = []
    np.save(os.path.join(tmp, "nd.npy"), flat.astype(np.float32))
    cases.append(("nd.npy", ["--grid", "1,17,17"], True))
    np.save(os.path.join(tmp, "tnd.npy"), x.reshape(1, 289, 768))
    cases.append(("tnd.npy", [], True))
    np.savez(os.path.join(tmp, "stored.npz"), feats=x, other=np.zeros(3))
    cases.append(("stored.npz:feats", [], True))
    np.savez_compressed(os.path.join(tmp, "deflated.npz"), feats=x)
    cases.append(("deflated.npz", [], True))
    for dt, same in (("F32", True), ("F16", True), ("BF16", False)):
        write_safetensors(os.path.join(tmp, f"x_{dt}.safetensors"), "vision.out", x.astype(np.float32), dt)
        cases.append((f"x_{dt}.safetensors:vision.out", [], same))
    for i, (spec, extra, same) in enumerate(cases):
        out = os.path.join(tmp, f"fmt{i}")
        run_ok(out, "--pipeline", "topk(keep=0.25, score=norm)", "--input", os.path.join(tmp, spec),
               "--dtype", "f32", *extra)
        o, meta = load_outputs(out)
        check(meta["grid"] == [1, 17, 17], f"{spec}: grid {meta['grid']}")
        check(o["tokens"].shape == (72, 768), f"{spec}: tokens shape")
        if same:
            check(np.array_equal(o["source"], ref["source"]) and np.array_equal(o["tokens"], ref["tokens"]),
                  f"{spec}: same result as the .npy input")


def test_errors(tmp):
    x = np.load(ASTRONAUT)
    good = ["--pipeline", "topk(keep=0.25, score=norm)"]

    def bad(name, args, needle):
        p = tokred(*args)
        lines = p.stderr.strip().splitlines()
        check(p.returncode != 0, f"{name}: non-zero exit")
        check(len(lines) == 1 and needle in p.stderr, f"{name}: one line naming '{needle}', got {p.stderr!r}")
        check(p.stdout == "", f"{name}: nothing on stdout")

    out = os.path.join(tmp, "err_out")
    bad("unknown method", ["run", "--pipeline", "pool | tomee(r=8)", "--input", ASTRONAUT, "--out", out],
        "unknown policy 'tomee'")
    raw = open(ASTRONAUT, "rb").read()
    open(os.path.join(tmp, "trunc_header.npy"), "wb").write(raw[:40])
    bad("truncated header", ["run", *good, "--input", os.path.join(tmp, "trunc_header.npy"), "--out", out], "trunc")
    open(os.path.join(tmp, "trunc_data.npy"), "wb").write(raw[:5000])
    bad("shape larger than the file", ["run", *good, "--input", os.path.join(tmp, "trunc_data.npy"), "--out", out],
        "trunc_data.npy")
    np.save(os.path.join(tmp, "fortran.npy"), np.asfortranarray(x.reshape(289, 768)[:, :5].astype(np.float32)))
    bad("fortran order", ["run", *good, "--input", os.path.join(tmp, "fortran.npy"), "--out", out], "ortran")
    np.save(os.path.join(tmp, "ints.npy"), np.zeros((4, 8), np.int8))
    bad("unsupported dtype", ["run", *good, "--input", os.path.join(tmp, "ints.npy"), "--out", out], "ints.npy")
    bad("grid mismatch", ["run", *good, "--input", ASTRONAUT, "--grid", "1,16,16", "--out", out], "--grid")
    bad("scores needed", ["run", "--pipeline", "topk(keep=8)", "--input", ASTRONAUT, "--out", out], "--scores")
    bad("budget too large", ["run", "--pipeline", "pool(2x2) | topk(keep=100, score=norm)", "--input", ASTRONAUT,
                             "--out", out], "budget_exceeds_input")
    open(os.path.join(tmp, "junk.safetensors"), "wb").write(struct.pack("<Q", 12) + b"{not json}  ")
    bad("malformed safetensors", ["run", *good, "--input", os.path.join(tmp, "junk.safetensors"), "--out", out],
        "junk.safetensors")
    bad("missing member", ["run", *good, "--input", os.path.join(tmp, "stored.npz:nope"), "--out", out], "nope")
    bad("missing file", ["run", *good, "--input", os.path.join(tmp, "absent.npy"), "--out", out], "absent.npy")
    # An output directory holding someone else's file is refused and the file survives.
    users = os.path.join(tmp, "users_dir")
    os.makedirs(users)
    open(os.path.join(users, "thesis.tex"), "w").write("keep me")
    bad("foreign output dir", ["run", *good, "--input", ASTRONAUT, "--out", users], "thesis.tex")
    check(open(os.path.join(users, "thesis.tex")).read() == "keep me" and os.listdir(users) == ["thesis.tex"],
          "the user's directory is untouched")
    bad("bench unknown method", ["bench", "--methods", "nope", "--out", os.path.join(tmp, "r0")], "nope")
    bad("bench bad budget", ["bench", "--budgets", "1.5", "--out", os.path.join(tmp, "r0")], "1.5")
    p = tokred("run", "--pipeline")
    check(p.returncode == 2, "a command line that does not parse exits with 2")


def bench_numbers(path):
    """results.csv without its timing columns."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("median_us", "p90_us", "memcpy_us", "memcpy_multiple"):
            r.pop(k)
    return rows


EVERY_METHOD = {"random", "uniform", "downsample", "pool", "bilinear", "dct", "topk", "relevance", "fastv", "fopru",
                "prumerge", "prumerge+", "hired", "temporal", "dtd", "stc", "divprune", "kcenter", "importance",
                "cdpruner", "tome", "visionzip", "framefusion", "slowfast", "thumbnail"}


def iqr_outlier_count(scores):
    """PruMerge's kept count: int(N * c / N) for the c scores above Q3 + 1.5 (Q3 - Q1)."""
    q1, q3 = np.percentile(scores.astype(np.float32), [25, 75])
    fence = np.float32(q3 + 1.5 * (q3 - q1))
    c = int((scores > fence).sum())
    return int(len(scores) * (c / len(scores)))


def check_runner_counts(results, inputs):
    """The counts of the methods run by their own code, recomputed from the inputs."""
    for r in results["results"]:
        x = inputs[r["item"]].astype(np.float32)
        t, h, w = (x.shape[0], x.shape[1], x.shape[2]) if x.ndim == 4 else (1, x.shape[0], x.shape[1])
        x = x.reshape(t * h * w, -1)
        n, b, method = t * h * w, r["budget"], r["method"]
        if method == "hired":
            check("note" in r and "sub-crops" in r["note"], "hired says why it does not run")
            continue
        if "note" in r:
            continue
        norms = np.sqrt((x.astype(np.float64) ** 2).sum(axis=1)).astype(np.float32)
        expected = None
        if method == "prumerge":
            expected = iqr_outlier_count(norms)
        elif method == "dtd":
            f = x.reshape(t, h * w, -1).astype(np.float64)
            cos = (f[1:] * f[:-1]).sum(-1) / np.sqrt((f[1:] ** 2).sum(-1) * (f[:-1] ** 2).sum(-1))
            expected = h * w + int((cos <= 0.5).sum())
        elif method in ("stc",):
            expected = t * int(h * w * b)
        elif method == "fopru":
            expected = t * w * int(h * b)
        elif method in ("fastv", "framefusion"):
            expected = int(n * b)
        elif method == "slowfast":
            slow, fh, fw = re.search(r"slow_frames=(\d+).*fast=(\d+)x(\d+)", r["spec"]).groups()
            expected = int(slow) * (h * w // 2) + t * int(fh) * int(fw)
        elif method == "thumbnail":
            sampled, frames = map(int, re.search(r"sampled_tokens=(\d+), thumbnail_frames=(\d+)", r["spec"]).groups())
            rows = max(i for i in range(1, frames + 1) if frames % i == 0 and i * i <= frames)
            rows, cols = frames // rows, rows
            expected = sampled + rows * (h // rows) * cols * (w // cols)
        if expected is not None:
            check(r["kept"] == expected, f"{method} on {r['item']} at {b} kept {r['kept']}, expected {expected}")


def test_bench(tmp):
    data = os.path.join(tmp, "bench_data")
    os.makedirs(data)
    x = np.load(ASTRONAUT)
    np.save(os.path.join(data, "image.npy"), x)
    # Two frames of different images: about 250 of the 289 slots are below DTD's threshold.
    cat = np.load(os.path.join(SAMPLE, "chelsea_cat_mixed5.npy"))
    np.save(os.path.join(data, "clip.npy"), np.concatenate([x, cat]))
    args = ["bench", "--data", data, "--budgets", "0.5,0.1", "--repetitions", "2", "--warmup", "0"]
    first, second = os.path.join(tmp, "report1"), os.path.join(tmp, "report2")
    p = tokred(*args, "--out", first)
    check(p.returncode == 0, f"bench exit {p.returncode}: {p.stderr.strip()}")
    check("report: " in p.stdout and "downsample" in p.stdout, "bench prints the summary and the report path")
    tokred(*args, "--out", second, "--quiet")
    results = json.load(open(os.path.join(first, "results.json")))
    methods = {m["name"] for m in results["methods"]}
    check(methods == EVERY_METHOD, f"bench methods {sorted(methods)}")
    own = {m["name"] for m in results["methods"] if m["own_count"]}
    check(own == {"prumerge", "prumerge+", "dtd"}, f"methods deciding their own count {sorted(own)}")
    ran = [r for r in results["results"] if "note" not in r]
    check(len(results["results"]) == 2 * (2 * len(methods - own) + len(own)),
          "one row per item x method x budget, one per item for a method deciding its own count")
    check(all(r["budget"] == 0 for r in results["results"] if r["method"] in own), "own-count rows have budget 0")
    check(all(0 < r["kept_fraction"] <= 0.51 for r in ran if r["method"] not in own | {"slowfast"}),
          "kept fractions follow the budgets")
    check_runner_counts(results, {"image": x.astype(np.float32), "clip": np.load(os.path.join(data, "clip.npy"))})
    check(all(np.isfinite([r["attention_rel_err"], r["recon_rel_l2"], r["coverage_rel"]]).all()
              and r["attention_rel_err"] >= 0 and r["recon_rel_l2"] >= 0 and -1 <= r["recon_mean_cos"] <= 1
              for r in ran), "fidelity figures finite and in range")
    items = {it["name"]: it for it in results["items"]}
    check(items["image"]["query_rows"] == items["image"]["ranking_query_rows"] == 144
          and items["clip"]["query_rows"] == items["clip"]["ranking_query_rows"] == 256,
          "the metric and the query-ranked methods each have min(N/2, 256) default queries")
    temporal = [r for r in results["results"] if r["method"] == "temporal"]
    check(any("note" in r for r in temporal if r["item"] == "image"), "temporal does not run on an image")
    check(bench_numbers(os.path.join(first, "results.csv")) == bench_numbers(os.path.join(second, "results.csv")),
          "the same seed gives the same figures")
    kv = {r["scheme"]: r for r in results["kv"] if r["item"] == "image"}
    check(all("note" not in kv[s] and kv[s]["median_us"] > 0 for s in ("kivi-4", "kivi-2", "vidkv-2", "vidkv-1.5")),
          "KIVI and VidKV are timed on the tokens staged in fp16 beforehand")
    md = open(os.path.join(first, "report.md")).read()
    check("## Summary" in md and "| random |" in md and "| uniform |" in md and "| downsample |" in md,
          "the report has the baselines in its summary")
    try:
        import matplotlib  # noqa: F401
        check(all(os.path.getsize(os.path.join(first, f)) > 1000 for f in ("fidelity.png", "latency.png")),
              "plots drawn")
    except ImportError:
        check("No plots" in md, "the report says why it has no plots")


def bench_quick(data, out, *extra):
    """A fast bench: one timed run, no warm-up, no KV table, no plots."""
    return tokred("bench", "--data", data, "--out", out, "--repetitions", "1", "--warmup", "0", "--no-kv",
                  "--no-plots", "--quiet", *extra)


def results_of(out):
    return json.load(open(os.path.join(out, "results.json")))


def rows_of(results, method, item=None, budget=None):
    return [r for r in results["results"] if r["method"] == method and (item is None or r["item"] == item)
            and (budget is None or r["budget"] == budget)]


def test_bench_fidelity_terms(tmp):
    """dct is measured without its sqrt(N/N') gain, visionzip with group means; score-ranked methods
    read the bench's precomputed scores; the pooling baselines keep what random keeps."""
    data = os.path.join(tmp, "fid_data")
    os.makedirs(data)
    x = np.load(ASTRONAUT)
    np.save(os.path.join(data, "image.npy"), x)
    out = os.path.join(tmp, "fid_report")
    p = bench_quick(data, out, "--budgets", "0.25,0.25", "--methods", "dct,visionzip,topk,importance,pool")
    check(p.returncode == 0, f"fidelity bench exit {p.returncode}: {p.stderr.strip()}")
    res = results_of(out)
    check(res["budgets"] == [0.25], f"repeated budgets counted once: {res['budgets']}")
    check({m["name"] for m in res["methods"]} == {"random", "uniform", "downsample", "dct", "visionzip", "topk",
                                                    "importance", "pool"}, "the baselines join any --methods")
    dct = rows_of(res, "dct")[0]
    check(dct["spec"].startswith("dct(keep=1x8x9"), f"dct keeps the grid nearest the budget: {dct['spec']}")
    # Recompute dct's reconstruction error from `tokred run` with its outputs divided by sqrt(N/K).
    run_out = os.path.join(tmp, "fid_dct")
    run_ok(run_out, "--pipeline", dct["spec"], "--input", ASTRONAUT)
    o, _ = load_outputs(run_out)
    flat = x.reshape(289, 768).astype(np.float64)
    gain = np.sqrt(289 / o["tokens"].shape[0])
    check(np.all(o["assign"] >= 0), "dct assigns every original")
    recon = o["tokens"].astype(np.float64)[o["assign"]] / gain
    want = np.linalg.norm(flat - recon) / np.linalg.norm(flat)
    check(abs(dct["recon_rel_l2"] - want) < 1e-4 * want,
          f"dct's reconstruction is measured after dividing by its gain: {dct['recon_rel_l2']} vs {want}")
    rnd = rows_of(res, "random")[0]
    check(dct["recon_rel_l2"] < rnd["recon_rel_l2"], "dct (gain removed) reconstructs better than random")
    vz = rows_of(res, "visionzip")[0]
    check("merge=group_mean" in vz["spec"], f"visionzip's contextual tokens are group means: {vz['spec']}")
    check(vz["recon_rel_l2"] < rnd["recon_rel_l2"], "visionzip (group means) reconstructs better than random")
    for m in ("topk", "importance"):
        check("score=input" in rows_of(res, m)[0]["spec"], f"{m} reads the bench's precomputed scores")
    check(res["items"][0]["score_us"] > 0, "the token norms are timed on their own")
    for m in ("downsample", "dct"):
        check(rows_of(res, m)[0]["kept"] == rnd["kept"] == 72, f"{m} keeps what random keeps (72 of 289)")
    md = open(os.path.join(out, "report.md")).read()
    check("divided by" in md and "group_mean" in md, "the report says how dct and visionzip are measured")


def test_bench_inputs(tmp):
    """1-row grids, --grid, item names, common summary sets, --scores, kept-nothing and size caps."""
    x = np.load(ASTRONAUT).reshape(289, 768)
    data = os.path.join(tmp, "in_data")
    os.makedirs(data)
    np.save(os.path.join(data, "image.npy"), x.reshape(1, 17, 17, 768))
    np.save(os.path.join(data, "flat.npy"), x[:288].astype(np.float32))  # 288 is no square: a 1 x 288 grid
    out = os.path.join(tmp, "in_report")
    p = bench_quick(data, out, "--budgets", "0.25,0.1", "--methods", "fopru,pool,bilinear")
    check(p.returncode == 0, f"1-row bench exit {p.returncode}: {p.stderr.strip()}")
    res = results_of(out)
    down = rows_of(res, "downsample", "flat", 0.25)[0]
    check("note" not in down and down["spec"] == "adaptive(size=1x1x72, mode=avg)",
          f"downsample pools along the row of a 1-row grid: {down}")
    check("note" not in rows_of(res, "pool", "flat", 0.25)[0], "pool runs along the row of a 1-row grid")
    check("note" in rows_of(res, "fopru", "flat", 0.1)[0] and "note" not in rows_of(res, "fopru", "image", 0.1)[0],
          "fopru runs on the image only at 0.1")
    md = open(os.path.join(out, "report.md")).read()
    # At 0.1 fopru ran on one of the two images, so every mean at 0.1 is over that one input.
    check(re.search(r"\| random \| baseline \| 0\.1 \|[^\n]*\| 1 \| 2 of 2 \|", md) is not None,
          "the summary averages every method over the inputs where all of them ran, and says n")
    # --grid gives the (N, D) input its 2-D grid.
    grid_data = os.path.join(tmp, "grid_data")
    os.makedirs(grid_data)
    np.save(os.path.join(grid_data, "flat.npy"), x[:288].astype(np.float32))
    p = bench_quick(grid_data, os.path.join(tmp, "grid_report"), "--budgets", "0.25", "--grid", "1,16,18",
                    "--methods", "random")
    check(p.returncode == 0, f"bench --grid exit {p.returncode}: {p.stderr.strip()}")
    down = rows_of(results_of(os.path.join(tmp, "grid_report")), "downsample")[0]
    check(down["spec"] == "adaptive(size=1x8x9, mode=avg)", f"bench --grid gives a 2-D grid: {down['spec']}")
    # Archive members are named stem:member; a clash between two files is refused.
    npz_data = os.path.join(tmp, "npz_data")
    os.makedirs(npz_data)
    np.savez(os.path.join(npz_data, "a.npz"), features=x[:64])
    np.savez(os.path.join(npz_data, "b.npz"), features=x[64:128])
    p = bench_quick(npz_data, os.path.join(tmp, "npz_report"), "--budgets", "0.5", "--methods", "random")
    check(p.returncode == 0, f"two archives exit {p.returncode}: {p.stderr.strip()}")
    names = [it["name"] for it in results_of(os.path.join(tmp, "npz_report"))["items"]]
    check(names == ["a:features", "b:features"], f"archive members are named stem:member: {names}")
    write_safetensors(os.path.join(npz_data, "a.safetensors"), "features", x[:64].astype(np.float32), "F32")
    p = bench_quick(npz_data, os.path.join(tmp, "npz_report2"), "--budgets", "0.5")
    check(p.returncode == 1 and "a:features" in p.stderr and len(p.stderr.strip().splitlines()) == 1,
          f"two inputs of one name are refused: {p.stderr!r}")
    # --scores: a missing directory fails; one matching no input warns; constant scores leave
    # PruMerge no outlier, a row that kept nothing and is out of the means.
    p = bench_quick(data, os.path.join(tmp, "sc0"), "--scores", os.path.join(tmp, "no_such_dir"))
    check(p.returncode == 1 and "no_such_dir" in p.stderr, f"a missing --scores directory fails: {p.stderr!r}")
    scores = os.path.join(tmp, "scores")
    os.makedirs(scores)
    p = bench_quick(data, os.path.join(tmp, "sc1"), "--scores", scores, "--budgets", "0.5", "--methods", "topk")
    check(p.returncode == 0 and "warning" in p.stderr and "image.npy" in p.stderr,
          f"--scores matching no input warns: {p.stderr!r}")
    np.save(os.path.join(scores, "image.npy"), np.ones(289, np.float32))
    p = bench_quick(data, os.path.join(tmp, "sc2"), "--scores", scores, "--budgets", "0.5", "--methods", "prumerge")
    check(p.returncode == 0 and "warning" not in p.stderr, f"--scores bench exit {p.returncode}: {p.stderr!r}")
    res = results_of(os.path.join(tmp, "sc2"))
    pm = rows_of(res, "prumerge", "image")[0]
    check(pm.get("note") == "kept no token", f"a method keeping no token has a note, not NaN figures: {pm}")
    md = open(os.path.join(tmp, "sc2", "report.md")).read()
    check("kept no token" in md and "nan" not in md.lower(), "the report says it kept no token, and has no NaN")
    # fopru's stand-in attention map of a 16512-token frame (1.1 GiB) is refused with a note.
    big = os.path.join(tmp, "big_data")
    os.makedirs(big)
    np.save(os.path.join(big, "big.npy"), np.random.default_rng(0).standard_normal((1, 128, 129, 4), np.float32))
    p = bench_quick(big, os.path.join(tmp, "big_report"), "--budgets", "0.5", "--methods", "fopru")
    check(p.returncode == 0, f"big bench exit {p.returncode}: {p.stderr.strip()}")
    fopru = rows_of(results_of(os.path.join(tmp, "big_report")), "fopru")[0]
    check("GiB" in fopru.get("note", ""), f"fopru's map past the cap is a note: {fopru}")


def test_bench_files(tmp):
    """Names that are not UTF-8, links in the output directory, stale plots, at least 3 runs."""
    data = os.path.join(tmp, "utf_data")
    os.makedirs(data)
    x = np.load(ASTRONAUT)
    odd = os.path.join(os.fsencode(data), b"caf\xe9.npy")
    with open(odd, "wb") as f:
        np.save(f, x)
    out = os.path.join(tmp, "utf_report")
    p = subprocess.run([TOKRED, "bench", "--data", data, "--out", out, "--budgets", "0.5", "--methods", "random",
                        "--repetitions", "3", "--warmup", "0", "--max-time", "0.000001", "--no-kv", "--quiet"],
                       capture_output=True)
    check(p.returncode == 0, f"bench on a non-UTF-8 file name exit {p.returncode}: {p.stderr!r}")
    res = json.loads(open(os.path.join(out, "results.json"), "rb").read().decode("utf-8"))
    check(res["items"][0]["name"] == "caf\ufffd", f"an invalid byte is written as U+FFFD: {res['items'][0]['name']}")
    check(all(r["repetitions"] == 3 for r in res["results"] if "note" not in r),
          "--max-time never cuts a measurement below three runs")
    run_out = os.path.join(tmp, "utf_run")
    p = subprocess.run([TOKRED, "run", "--pipeline", "topk(keep=0.25, score=norm)", "--input", odd, "--out", run_out],
                       capture_output=True)
    check(p.returncode == 0 and json.load(open(os.path.join(run_out, "meta.json")))["tokens_out"] == 72,
          f"run on a non-UTF-8 file name exit {p.returncode}: {p.stderr!r}")
    # A previous run's plots do not survive a --no-plots rerun.
    open(os.path.join(out, "fidelity.png"), "wb").write(b"stale")
    p = tokred("bench", "--data", data, "--out", out, "--budgets", "0.5", "--methods", "random", "--repetitions", "1",
               "--no-kv", "--no-plots", "--quiet")
    check(p.returncode == 0 and not os.path.exists(os.path.join(out, "fidelity.png")),
          f"a --no-plots rerun removes the old plots ({p.returncode}: {p.stderr.strip()})")
    # An owned name that is a symbolic link is refused, and its target survives.
    target = os.path.join(tmp, "precious.txt")
    open(target, "w").write("keep me")
    linked = os.path.join(tmp, "linked_out")
    os.makedirs(linked)
    os.symlink(target, os.path.join(linked, "results.csv"))
    p = tokred("bench", "--data", data, "--out", linked, "--budgets", "0.5", "--methods", "random", "--no-kv",
               "--no-plots", "--quiet")
    check(p.returncode == 1 and "results.csv" in p.stderr and open(target).read() == "keep me",
          f"a link named like an output is refused: {p.stderr!r}")
    p = tokred("run", "--pipeline", "topk(keep=0.25, score=norm)", "--input", ASTRONAUT, "--out", linked)
    check(p.returncode == 1 and open(target).read() == "keep me", "run refuses it too")


with tempfile.TemporaryDirectory() as tmp:
    test_list()
    test_run_topk(tmp)
    test_run_merge(tmp)
    test_formats(tmp)
    test_errors(tmp)
    test_bench(tmp)
    test_bench_fidelity_terms(tmp)
    test_bench_inputs(tmp)
    test_bench_files(tmp)

print(f"{checks[0]} checks, {len(failures)} failure(s)")
sys.exit(1 if failures else 0)
