"""Benchmark: the original against the replica, and the parity check against the raw cost, in one run.

    python bench/run.py [--original PATH] [--quick] --out FILE.json

Everything is measured side by side on this machine, on the same realistic batches (batch 8, segment lengths
drawn from the real PercePiano performances), at the published model size. Each figure is the min/median/max
over repeats; ratios are medians divided. Not part of the tests.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import replica  # noqa: E402
from parity.audit import AuditSettings, audit  # noqa: E402
from parity.batches import generate_batches  # noqa: E402
from parity.replica_subject import ReplicaSubject  # noqa: E402
from parity.subject import SubjectInfo  # noqa: E402
from replica.recipe import ORIGINAL_RECIPE, make_optimizer, make_scheduler  # noqa: E402


def timed(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"min": min(times), "median": statistics.median(times), "max": max(times), "repeats": repeats}


def ratio(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """a/b for medians, plus the extremes (a.min/b.max and a.max/b.min)."""
    return {"median": a["median"] / b["median"], "min": a["min"] / b["max"], "max": a["max"] / b["min"]}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def model_call(subject_kind: str, model: torch.nn.Module, inp: replica.ModelInput) -> torch.Tensor:
    if subject_kind == "original":
        out = model(inp.x, None, None, inp.note_locations)
        return out[-1] if isinstance(out, tuple) else out
    return model(inp.x, inp.note_locations)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--original", default=os.environ.get("PERCEPIANO_ORIGINAL"))
    ap.add_argument("--quick", action="store_true", help="fewer repeats and batches (under 5 minutes)")
    ap.add_argument("--variant", default="han-total")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    if not args.original:
        print("bench: give --original PATH or set PERCEPIANO_ORIGINAL (the comparison needs the original)",
              file=sys.stderr)
        return 2
    import original_adapter

    device = torch.device(args.device)
    repeats = 3 if args.quick else 7
    n_batches = 2 if args.quick else 4
    config = replica.DEFAULT_CONFIG
    original = original_adapter.load(args.original)
    batches = generate_batches(n_batches, seed=2026, batch_size=8, config=config, include_edge_cases=False)
    inputs = [replica.collate(b).to(device) for b in batches]
    lengths = [b.lengths for b in batches]

    orig_model = original.build(args.variant, config, seed=7).to(device)
    rep_model = replica.build(args.variant, config, seed=7).to(device)
    rep_model.load_state_dict(orig_model.state_dict())
    models = {"original": orig_model, "replica": rep_model}
    results: dict[str, Any] = {"variant": args.variant, "device": str(device), "batch_lengths": lengths,
                               "threads": torch.get_num_threads(), "platform": platform.platform(),
                               "torch": torch.__version__, "quick": args.quick}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for kind, model in models.items():
        model.eval()
        def fwd(model=model, kind=kind) -> None:
            with torch.no_grad():
                for inp in inputs:
                    model_call(kind, model, inp)
            sync()
        results[f"{kind}_forward_s"] = timed(fwd, repeats)
        model.train()
        def fwd_bwd(model=model, kind=kind) -> None:
            for inp in inputs:
                loss = torch.nn.functional.mse_loss(torch.sigmoid(model_call(kind, model, inp)), inp.labels)
                model.zero_grad(set_to_none=True)
                loss.backward()
            sync()
        results[f"{kind}_forward_backward_s"] = timed(fwd_bwd, repeats)
        train_copy = copy.deepcopy(model)
        opt = make_optimizer(ORIGINAL_RECIPE, train_copy.parameters())
        sched = make_scheduler(ORIGINAL_RECIPE, opt)
        def step(model=train_copy, kind=kind, opt=opt, sched=sched) -> None:
            inp = inputs[0]
            loss = torch.nn.functional.mse_loss(torch.sigmoid(model_call(kind, model, inp)), inp.labels)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), ORIGINAL_RECIPE.grad_clip)
            opt.step()
            sched.step()
            sync()
        results[f"{kind}_train_step_s"] = timed(step, repeats)
        print(f"{kind:9s} forward {results[f'{kind}_forward_s']['median']:.3f}s  "
              f"fwd+bwd {results[f'{kind}_forward_backward_s']['median']:.3f}s  "
              f"train step {results[f'{kind}_train_step_s']['median']:.3f}s", flush=True)

    # parity check against the raw cost of both models' forward+backward on the same batches (eval mode, as
    # the check runs them)
    def raw() -> None:
        for kind, model in models.items():
            model.eval()
            for inp in inputs:
                loss = torch.nn.functional.mse_loss(torch.sigmoid(model_call(kind, model, inp)), inp.labels)
                model.zero_grad(set_to_none=True)
                loss.backward()
        sync()

    def check() -> None:
        reference = original.subject(args.variant, config, seed=7)
        candidate = ReplicaSubject(replica.build(args.variant, config, seed=7).to(device),
                                   SubjectInfo("replica", "bundled-replica", args.variant))
        audit(reference, candidate, batches, AuditSettings(variant=args.variant, config=config))

    check_repeats = max(1, repeats // 2)
    results["raw_forward_backward_both_s"] = timed(raw, check_repeats)
    rss_before = rss_mb()
    results["parity_check_s"] = timed(check, check_repeats, warmup=0)
    results["peak_rss_mb"] = rss_mb()
    results["rss_growth_during_check_mb"] = results["peak_rss_mb"] - rss_before

    results["forward_speedup"] = ratio(results["original_forward_s"], results["replica_forward_s"])
    results["forward_backward_speedup"] = ratio(results["original_forward_backward_s"],
                                                results["replica_forward_backward_s"])
    results["train_step_speedup"] = ratio(results["original_train_step_s"], results["replica_train_step_s"])
    results["parity_overhead_ratio"] = ratio(results["parity_check_s"], results["raw_forward_backward_both_s"])
    # keep the headline keys flat as documented: medians
    summary = {k: results[k]["median"] for k in ("train_step_speedup", "forward_speedup", "parity_overhead_ratio")}
    out = {**summary, "peak_rss_mb": results["peak_rss_mb"], "details": results}
    Path(args.out).write_text(json.dumps(out, indent=2))
    for k, v in summary.items():
        r = results[k]
        print(f"{k:24s} median {v:.2f}x  (min {r['min']:.2f}, max {r['max']:.2f})")
    print(f"peak_rss_mb              {results['peak_rss_mb']:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
