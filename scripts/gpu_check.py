"""Print the figures of a scripts/gpu_check.sh run (its output folder is the argument) next to their targets."""
import json, sys
from pathlib import Path


def load(p):
    try: return json.loads(Path(p).read_text())
    except (OSError, ValueError): return None


def main(out):
    out = Path(out)
    rows = []
    def row(what, value, target, ok): rows.append((what, value, target, "yes" if ok else ("NO" if ok is not None else "-")))
    fed = load(out / "federated" / "results.json")
    if fed:
        rounds = fed.get("rounds", [])
        timed = rounds[1:] or rounds  # the first round includes CUDA start-up
        if timed:
            sec = sum(r["train_seconds"] for r in timed) / len(timed)
            sps = sum(r["samples"] for r in timed) / sum(r["train_seconds"] for r in timed)
            row(f"06_federated (papermill), {fed['params'].get('num_clients')} one-user clients, engine "
                f"{fed['final'].get('engine')}, device {fed['final'].get('device')}: local training s/round "
                f"(rounds 2..{len(rounds)})", f"{sec:.3f} s ({sps:,.0f} samples/s)", "< 1 s", sec < 1)
        row("06_federated final test MAE / RMSE", f"{fed['final'].get('test_mae', float('nan')):.4f} / "
            f"{fed['final'].get('test_rmse', float('nan')):.4f}", "", None)
    else:
        row("06_federated (papermill)", "no results.json", "", False)
    defences = load(out / "bench_defences.json")
    for r in (defences or {}).get("rows", []):
        row(f"bench_defences ({defences['device']}, {defences['clients']:,} one-user clients): {r['server_step']}",
            f"{r['seconds_per_round']:.3f} s/round, {r['ratio_to_fedavg']:.2f}x FedAvg", "<= 3x FedAvg", r["ratio_to_fedavg"] <= 3)
    targets = {"users1m": ("< 1 s per round", lambda b: b["vectorized_s"] < 1),
               "iid1m": (">= 5M samples/s", lambda b: b["vectorized_samples_per_s"] >= 5e6),
               "iid1m_exp": (">= 5M samples/s", lambda b: b["vectorized_samples_per_s"] >= 5e6),
               "users100k": ("", None), "peruser100k": ("(the per-user figure's configuration)", None),
               "iid1m_b2048": ("(batch 2048, for reference)", None)}
    for name, (target, test) in targets.items():
        b = load(out / f"bench_{name}.json")
        if not b:
            if name in ("users1m", "users100k"): row(f"bench {name}", "missing", target, False if test else None)
            continue
        what = (f"bench: {b['dataset']}, {b['clients']:,} {b['setting']} clients, model {b['model']}, batch {b['batch_size']}, "
                f"{b['device']}")
        val = f"{b['vectorized_s']:.3f} s, {b['vectorized_samples_per_s']:,.0f} samples/s, peak {b['peak_memory_bytes'] / 2**30:.2f} GiB"
        if "speedup" in b: val += f"; sequential {b['sequential_s']:.2f} s ({b['speedup']:.1f}x)"
        if "max_relative_difference_params" in b: val += f"; rel. diff {b['max_relative_difference_params']:.1e}"
        row(what, val, target, test(b) if test else None)
    imp = load(out / "bench_implicit.json")
    for f in (imp or {}).get("figures", []):
        row(f"bench_implicit ({imp['device']}, {imp['clients']:,} one-user clients): {f['model']}",
            f"vectorized {f['seconds']['vectorized']:.3f} s, sequential {f['seconds']['sequential']:.2f} s "
            f"({f['speedup']:.1f}x)", ">= 10x", f["speedup"] >= 10)
    w = max(len(r[0]) for r in rows)
    print("\nFigures (vectorized path unless named otherwise)")
    for what, value, target, ok in rows: print(f"  {what:<{w}}  {value}  target {target or '-'}  met: {ok}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/gpu_check")
