#!/usr/bin/python3
"""PyTorch eager peer of bench/ops.c: the same ops, shapes and timing method.

Run by build/ember-bench-ops (make bench-ops); can be run alone:

  /usr/bin/python3 bench/ops_torch.py [--threads N] [--only add,matmul] [--samples K] [--min-ms M]

Prints one JSON object per line. The first describes the peer:

  {"torch": "1.13.1", "threads": 1, "blas": "openblas-pthread/libblas.so.3"}

then one per op, keyed by the ids bench/ops.c uses:

  {"op": "add", "shape": "[4194304] + [4194304]", "threads": 1, "ms": 2.51}

Timing mirrors bench/ops.c: 100 ms of untimed calls, then as many back-to-back calls as
take at least --min-ms (20 ms) per sample, --samples (9) samples, the median per
call. Results are dropped at once, so freeing them is part of the cost.

Needs Debian's python3-torch (1.13) under /usr/bin/python3; install
libopenblas0-pthread too so that matmul uses OpenBLAS rather than the reference BLAS.
PyTorch 1.13 has no rms_norm: it is written the way eager PyTorch models write it.
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F

N4M = 4194304
WARMUP_S = 0.1  # untimed calls before calibration, as in bench/ops.c


def rms_norm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def ops():
    """id -> (function, inputs, shape). Inputs are made once, outside the clock."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)
    m = lambda: r(4096, 1024)
    return {
        "add": (lambda a, b: a + b, lambda: (r(N4M), r(N4M)), "[4194304] + [4194304]"),
        "mul": (lambda a, b: a * b, lambda: (r(N4M), r(N4M)), "[4194304] * [4194304]"),
        "exp": (torch.exp, lambda: (r(N4M),), "[4194304]"),
        "tanh": (torch.tanh, lambda: (r(N4M),), "[4194304]"),
        "gelu": (F.gelu, lambda: (r(N4M),), "[4194304] (erf)"),
        "sigmoid": (torch.sigmoid, lambda: (r(N4M),), "[4194304]"),
        "add_row": (lambda a, b: a + b, lambda: (m(), r(1024)), "[4096,1024] + [1024]"),
        "sum_last": (lambda x: x.sum(-1), lambda: (m(),), "[4096,1024] axis -1"),
        "sum_first": (lambda x: x.sum(0), lambda: (m(),), "[4096,1024] axis 0"),
        "max_last": (lambda x: torch.amax(x, -1), lambda: (m(),), "[4096,1024] axis -1"),
        "mean_last": (lambda x: x.mean(-1), lambda: (m(),), "[4096,1024] axis -1"),
        "argmax_last": (lambda x: x.argmax(-1), lambda: (m(),), "[4096,1024] axis -1"),
        "softmax": (lambda x: torch.softmax(x, -1), lambda: (m(),), "[4096,1024] axis -1"),
        "log_softmax": (lambda x: torch.log_softmax(x, -1), lambda: (m(),), "[4096,1024] axis -1"),
        "layer_norm": (lambda x, w, b: F.layer_norm(x, (1024,), w, b, 1e-5),
                       lambda: (m(), r(1024), r(1024)), "[4096,1024], w b [1024]"),
        "rms_norm": (rms_norm, lambda: (m(), r(1024)), "[4096,1024], w [1024]"),
        "matmul": (torch.matmul, lambda: (r(256, 512), r(512, 512)), "[256,512] @ [512,512]"),
        "linear": (F.linear, lambda: (r(64, 1024), r(4096, 1024), r(4096)),
                   "[64,1024] w[4096,1024] +b"),
        "matmul_batched": (torch.matmul, lambda: (r(8, 256, 64), r(8, 64, 256)),
                           "[8,256,64] @ [8,64,256]"),
        "embedding": (lambda t, i: F.embedding(i, t),
                      lambda: (r(50257, 768), torch.randint(0, 50257, (1024,), generator=g)),
                      "[50257,768] x 1024 i64"),
        "concat": (lambda a, b: torch.cat([a, b], 1), lambda: (r(4096, 512), r(4096, 512)),
                   "2 x [4096,512] axis 1"),
        "transpose": (lambda x: x.t().contiguous(), lambda: (m(),), "[4096,1024].T contiguous"),
        "add_t": (lambda a, b: a.t() + b, lambda: (r(1024, 4096), m()), "[1024,4096].T + [4096,1024]"),
        "cast": (lambda x: x.to(torch.int32), lambda: (r(N4M),), "[4194304] f32 -> i32"),
    }


def time_batch(fn, args, reps):
    t = time.perf_counter()
    for _ in range(reps):
        fn(*args)
    return (time.perf_counter() - t) * 1e3


def median_ms(fn, args, samples, min_ms):
    w0 = time.perf_counter()
    while time.perf_counter() - w0 < WARMUP_S:  # warm up caches and the allocator
        fn(*args)
    reps = 1
    while True:  # grow reps until one batch takes min_ms
        t = time_batch(fn, args, reps)
        if t >= min_ms:
            break
        want = reps * min_ms * 1.2 / t if t > 1e-3 else reps * 100.0
        reps = math.ceil(want) if want > 2 * reps else 2 * reps
    return statistics.median(time_batch(fn, args, reps) / reps for _ in range(samples))


def blas_in_use():
    """The BLAS library this process mapped (Debian picks it by alternatives)."""
    torch.ones(64, 64) @ torch.ones(64, 64)
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
    except OSError:
        return "?"
    names = sorted(p.split("/")[-1] for p in libs)
    openblas = [n for n in names if n.startswith("libopenblas")]
    return openblas[0] if openblas else (", ".join(names) or "none mapped")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="")
    ap.add_argument("--samples", type=int, default=9)
    ap.add_argument("--min-ms", type=float, default=20.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    only = set(filter(None, a.only.split(",")))
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "blas": blas_in_use()}), flush=True)
    for name, (fn, make, shape) in ops().items():
        if only and name not in only:
            continue
        args = make()
        with torch.no_grad():
            ms = median_ms(fn, args, a.samples, a.min_ms)
        print(json.dumps({"op": name, "shape": shape, "threads": a.threads,
                          "ms": round(ms, 5)}), flush=True)
        print(f"torch: {name:15s} {shape} ... {ms:.4f} ms", file=sys.stderr, flush=True)
        del args


if __name__ == "__main__":
    main()
