"""Benchmark: the original against the replica, and the parity check against the raw cost, in one run.

    python bench/run.py [--original PATH] [--quick] --out FILE.json

Everything is measured side by side on this machine, on the same realistic batches (batch 8, segment lengths
drawn from the real PercePiano performances), at the published model size. Each figure is the min/median/max
over repeats; ratios are medians divided. The two sides of a ratio are timed alternately (a, b, a, b, ...),
so that drift of a shared machine hits both. Memory: peak RSS of the whole run, and after each batch of one
check over the same batches cycled several times, resident memory and the bytes of live tensors (flat when
nothing accumulates per batch). Not part of the tests.
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
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from percepiano_parity import replica  # noqa: E402
from percepiano_parity.batches.synthetic import generate_batches  # noqa: E402
from percepiano_parity.commands.audit import AuditSettings, audit  # noqa: E402
from percepiano_parity.compare.engine import EngineOptions  # noqa: E402
from percepiano_parity.replica.recipe import ORIGINAL_RECIPE, make_optimizer, make_scheduler  # noqa: E402
from percepiano_parity.subjects.replica_subject import ReplicaSubject  # noqa: E402
from percepiano_parity.subjects.subject import SubjectInfo  # noqa: E402


def timed(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return summarise(times)


def paired(fn_a: Callable[[], Any], fn_b: Callable[[], Any], repeats: int, warm_each: bool = True
           ) -> tuple[dict, dict]:
    """Time two functions alternately: a, b, a, b, ... so that both see the same machine state.

    With `warm_each`, each timed call follows an untimed one of the same function: a model that has just
    run after the other one is measurably slower (allocator and cache state), which says nothing about
    how fast it trains on its own.
    """
    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(timed(fn_a, 1, warmup=1 if warm_each else 0)["median"])
        times_b.append(timed(fn_b, 1, warmup=1 if warm_each else 0)["median"])
    return summarise(times_a), summarise(times_b)


def summarise(times: list[float]) -> dict[str, float]:
    return {"min": min(times), "median": statistics.median(times), "max": max(times), "repeats": len(times)}


def ratio(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """a/b for medians, plus the extremes (a.min/b.max and a.max/b.min)."""
    return {"median": a["median"] / b["median"], "min": a["min"] / b["max"], "max": a["max"] / b["min"]}


def rss_mb() -> float:
    """Peak resident memory of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def live_tensor_mb() -> float:
    """Bytes held by the tensors Python can reach now (each storage once): what the check keeps, free of the
    allocator's caching, which makes resident memory wobble by tens of MB with batch shapes."""
    gc.collect()
    seen: dict[int, int] = {}
    with warnings.catch_warnings():  # isinstance on some deprecated torch objects warns
        warnings.simplefilter("ignore")
        for obj in gc.get_objects():
            if isinstance(obj, torch.Tensor) and not obj.is_sparse and obj.device.type != "meta":
                storage = obj.untyped_storage()
                seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values()) / 2**20


def current_rss_mb() -> float:
    """Resident memory now (Linux /proc; the peak elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return rss_mb()


def model_call(subject_kind: str, model: torch.nn.Module, inp: replica.ModelInput) -> torch.Tensor:
    if subject_kind == "original":
        out = model(inp.x, None, None, inp.note_locations)
        return out[-1] if isinstance(out, tuple) else out
    return model(inp.x, inp.note_locations)


LOCATING_CANDIDATES = {  # user-style replicas whose levels the audit finds by value
    "lightning-example": ROOT / "docs" / "lightning_example.py",  # vectorised, one submodule per stage
    "foreign-style": ROOT / "tests" / "fixtures" / "foreign_replica.py",  # loops, plain functions, padded input
}


def locating_cost(original: Any, variant: str, config: replica.ModelConfig, batches: list, repeats: int
                  ) -> dict[str, Any]:
    """Finding the original's levels by value in a user's model against a plain forward of that model on the
    audit's batches, timed alternately: `locate` is what the audit does once, one recorded forward (every
    intermediate tensor kept, with its source line) of LOCATING_ITEMS items of the batch plus matching every
    level and attention map; `locate_whole` is the same on the whole batch; `record` is a later batch's forward
    with only the located sites recorded. The reference's own forward is not the candidate's cost and is
    excluded."""
    from percepiano_parity.batches.canonical import collate
    from percepiano_parity.compare.engine import LOCATING_ITEMS, Engine
    from percepiano_parity.compare.locate import level_modules, locate
    from percepiano_parity.compare.relations.search import diagnosis_batch
    from percepiano_parity.subjects.level_sites import SiteTap
    from percepiano_parity.subjects.user_subject import call_factory, load_factory, make_user_subject

    out: dict[str, Any] = {}
    for name, path in LOCATING_CANDIDATES.items():
        model, adapter = call_factory(load_factory(f"{path}:build"), name, variant=variant, config=config, seed=7)
        subject = make_user_subject(model, adapter, spec=name, variant=variant, config=config)
        reference = original.subject(variant, config, seed=7)
        engine = Engine(reference, subject, variant=variant, config=config)
        engine.prepare(batches[0])  # pairs the weights, copies them into a private copy and locates once
        ref_taps = [reference.run(b, grads=False) for b in batches]
        inputs = [collate(b) for b in batches]
        modules = level_modules(engine.state.weight_map)
        model = subject.model.eval()
        tap = SiteTap(list(subject.sites.values()))

        def plain(model: torch.nn.Module = model, subject: Any = subject, inputs: list = inputs) -> None:
            with torch.no_grad():
                for inp in inputs:
                    subject.call(model, inp)

        small = [diagnosis_batch(b, LOCATING_ITEMS) for b in batches]
        small_taps = [reference.run(b, grads=False) for b in small]

        def located(subject: Any = subject, ref_taps: list = small_taps, modules: dict = modules,
                    batches: list = small) -> None:
            for b, taps in zip(batches, ref_taps, strict=True):
                records, counts = subject.capture(b)
                locate(taps.levels, taps.attention, records, counts, subject.level_graph(), modules=modules)

        def located_whole(subject: Any = subject, ref_taps: list = ref_taps, modules: dict = modules) -> None:
            for b, taps in zip(batches, ref_taps, strict=True):
                records, counts = subject.capture(b)
                locate(taps.levels, taps.attention, records, counts, subject.level_graph(), modules=modules)

        def recorded(model: torch.nn.Module = model, subject: Any = subject, inputs: list = inputs,
                     tap: SiteTap = tap) -> None:
            with torch.no_grad():
                for inp in inputs:
                    with tap.recording(model):
                        subject.call(model, inp)

        p_a, l_a = paired(plain, located, repeats)
        p_w, l_w = paired(plain, located_whole, repeats)
        p_b, r_b = paired(plain, recorded, repeats)
        found = sum(1 for site in subject.sites.values() if site.found)
        out[name] = {"plain_forward_s": p_a, "locate_s": l_a, "locate_ratio": ratio(l_a, p_a),
                     "locating_items": LOCATING_ITEMS, "batch_items": len(batches[0]),
                     "plain_forward_s_whole": p_w, "locate_whole_s": l_w, "locate_whole_ratio": ratio(l_w, p_w),
                     "plain_forward_s_2": p_b, "record_s": r_b, "record_ratio": ratio(r_b, p_b),
                     "levels_found": found, "levels_looked_for": len(subject.sites) + len(engine.state.not_located)}
        print(f"locating levels, {name:18s} plain forward {p_a['median']:.3f}s  locate ({LOCATING_ITEMS} of "
              f"{len(batches[0])} items) {l_a['median']:.3f}s ({out[name]['locate_ratio']['median']:.2f}x)  "
              f"locate on the whole batch {out[name]['locate_whole_ratio']['median']:.2f}x  record located "
              f"{r_b['median']:.3f}s ({out[name]['record_ratio']['median']:.2f}x)  "
              f"found {found}/{out[name]['levels_looked_for']}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--original", default=os.environ.get("PERCEPIANO_ORIGINAL"))
    ap.add_argument("--quick", action="store_true", help="fewer repeats and batches (under 5 minutes)")
    ap.add_argument("--variant", default="han-total")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--locating-only", action="store_true",
                    help="only the cost of finding levels by value in user-style replicas")
    args = ap.parse_args(argv)
    if not args.original:
        print("bench: give --original PATH or set PERCEPIANO_ORIGINAL (the comparison needs the original)",
              file=sys.stderr)
        return 2
    from percepiano_parity import original_adapter

    device = torch.device(args.device)
    repeats = 3 if args.quick else 7
    n_batches = 2 if args.quick else 4
    memory_cycles = 4 if args.quick else 6
    config = replica.DEFAULT_CONFIG
    original = original_adapter.load(args.original)
    batches = generate_batches(n_batches, seed=2026, batch_size=8, config=config, include_edge_cases=False)
    inputs = [replica.collate(b).to(device) for b in batches]
    lengths = [b.lengths for b in batches]

    if args.locating_only:
        located = locating_cost(original, args.variant, config, batches, repeats)
        Path(args.out).write_text(json.dumps({"locating": located}, indent=2))
        return 0
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

    def forward(kind: str, model: torch.nn.Module) -> Callable[[], None]:
        def run() -> None:
            model.eval()
            with torch.no_grad():
                for inp in inputs:
                    model_call(kind, model, inp)
            sync()
        return run

    def forward_backward(kind: str, model: torch.nn.Module) -> Callable[[], None]:
        def run() -> None:
            model.train()
            for inp in inputs:
                loss = torch.nn.functional.mse_loss(torch.sigmoid(model_call(kind, model, inp)), inp.labels)
                model.zero_grad(set_to_none=True)
                loss.backward()
            sync()
        return run

    def training_steps(kind: str, model: torch.nn.Module) -> Callable[[], None]:
        model = copy.deepcopy(model).train()
        opt = make_optimizer(ORIGINAL_RECIPE, model.parameters())
        sched = make_scheduler(ORIGINAL_RECIPE, opt)

        def run() -> None:
            for inp in inputs:  # one training step per batch, as an epoch runs them
                loss = torch.nn.functional.mse_loss(torch.sigmoid(model_call(kind, model, inp)), inp.labels)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), ORIGINAL_RECIPE.grad_clip)
                opt.step()
                sched.step()
            sync()
        return run

    # original and replica alternate repeat by repeat, so that both see the same machine state
    for name, make, per in (("forward", forward, 1), ("forward_backward", forward_backward, 1),
                            ("train_step", training_steps, len(inputs))):
        a, b = paired(make("original", orig_model), make("replica", rep_model), repeats)
        results[f"original_{name}_s"] = {k: (v / per if k != "repeats" else v) for k, v in a.items()}
        results[f"replica_{name}_s"] = {k: (v / per if k != "repeats" else v) for k, v in b.items()}
    for kind in models:
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

    rss_per_batch: list[float] = []
    tensors_per_batch: list[float] = []
    verdicts: set[str] = set()  # a benchmark of a failing check would measure the wrong thing

    def check(batches_in=batches, sample: bool = False) -> None:
        reference = original.subject(args.variant, config, seed=7)
        reference.model.to(device)
        candidate = ReplicaSubject(replica.build(args.variant, config, seed=7).to(device),
                                   SubjectInfo("replica", "bundled-replica", args.variant))
        options = EngineOptions()
        if sample:  # memory after each folded batch: flat when nothing accumulates per batch
            def progress(stage: str, done: int, total: int) -> None:
                if stage == "batch":
                    rss_per_batch.append(current_rss_mb())
                    tensors_per_batch.append(live_tensor_mb())
            options.progress = progress
        settings = AuditSettings(variant=args.variant, config=config, engine=options)
        report, _ = audit(reference, candidate, batches_in, settings)
        verdicts.add(report.verdict(settings.fail_on))

    # cold: the first check in this process (one-time costs: float64 kernels, the original's recording
    # wrappers); then warm repeats, measured as the raw cost is, after a warm-up
    t = time.perf_counter()
    check()
    results["parity_check_cold_s"] = time.perf_counter() - t
    raw()
    rss_before = rss_mb()
    # interleaved, so that both see the same machine state (a shared 2-core machine drifts by 10-20%)
    results["raw_forward_backward_both_s"], results["parity_check_s"] = paired(raw, check, repeats, warm_each=False)
    results["peak_rss_mb"] = rss_mb()
    results["rss_growth_during_check_mb"] = results["peak_rss_mb"] - rss_before

    # memory against the number of batches: one check over the same 3 batches cycled `memory_cycles` times,
    # resident memory after each; accumulation per batch would make every cycle peak higher than the last
    distinct = generate_batches(3, seed=2027, batch_size=8, config=config, include_edge_cases=False)
    check(distinct * memory_cycles, sample=True)
    results["rss_after_each_batch_mb"] = rss_per_batch
    results["rss_peak_per_cycle_mb"] = [max(rss_per_batch[i:i + 3]) for i in range(0, len(rss_per_batch), 3)]
    results["live_tensor_mb_after_each_batch"] = tensors_per_batch
    # the same batch in every cycle: what is still held after it in the last cycle minus in the first
    results["live_tensor_growth_mb"] = tensors_per_batch[-1] - tensors_per_batch[2]
    print(f"parity check {results['parity_check_s']['median']:.3f}s (cold {results['parity_check_cold_s']:.3f}s) "
          f"raw fwd+bwd of both {results['raw_forward_backward_both_s']['median']:.3f}s", flush=True)
    print(f"after each of {len(rss_per_batch)} batches: resident {', '.join(f'{v:.0f}' for v in rss_per_batch)} MB; "
          f"live tensors {', '.join(f'{v:.1f}' for v in tensors_per_batch)} MB", flush=True)

    results["forward_speedup"] = ratio(results["original_forward_s"], results["replica_forward_s"])
    results["forward_backward_speedup"] = ratio(results["original_forward_backward_s"],
                                                results["replica_forward_backward_s"])
    results["train_step_speedup"] = ratio(results["original_train_step_s"], results["replica_train_step_s"])
    results["parity_check_verdicts"] = sorted(verdicts)
    results["locating"] = locating_cost(original, args.variant, config, batches, repeats)
    results["parity_overhead_ratio"] = ratio(results["parity_check_s"], results["raw_forward_backward_both_s"])
    results["parity_overhead_ratio_cold"] = (results["parity_check_cold_s"]
                                             / results["raw_forward_backward_both_s"]["median"])
    # keep the headline keys flat as documented: medians
    summary = {k: results[k]["median"] for k in ("train_step_speedup", "forward_speedup", "parity_overhead_ratio")}
    out = {**summary, "peak_rss_mb": results["peak_rss_mb"],
           "parity_overhead_ratio_cold": results["parity_overhead_ratio_cold"],
           "live_tensor_growth_mb": results["live_tensor_growth_mb"], "details": results}
    Path(args.out).write_text(json.dumps(out, indent=2))
    for k, v in summary.items():
        r = results[k]
        print(f"{k:24s} median {v:.2f}x  (min {r['min']:.2f}, max {r['max']:.2f})")
    print(f"parity check verdict(s)         {', '.join(sorted(verdicts))}")
    print(f"parity_overhead_ratio_cold      {results['parity_overhead_ratio_cold']:.2f}x (first check in the process)")
    print(f"peak_rss_mb              {results['peak_rss_mb']:.0f}")
    print(f"live_tensor_growth_mb    {results['live_tensor_growth_mb']:.2f} (3 batches cycled {memory_cycles} "
          "times: tensors held after the last batch minus after the same batch in the first cycle)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
