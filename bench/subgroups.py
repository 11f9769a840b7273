"""Subgroup metrics with intervals: fairlearn's own bootstrap (MetricFrame n_boot) against MetricFrame's groups
with this project's bootstrap inside each (emerge_ehr.evaluate.subgroups), on the same data.

    .venv/bin/python bench/subgroups.py --stays 3000 --resamples 1000
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from emerge_ehr.evaluate.metrics import auprc, auroc, brier, ece
from emerge_ehr.evaluate.subgroups import subgroup_metrics


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stays", type=int, default=3000)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    y = (rng.random(args.stays) < 0.1).astype(float)
    p = np.clip(0.1 + 0.3 * (y - 0.1) + rng.normal(0, 0.15, args.stays), 0.001, 0.999)
    sex = rng.choice(["F", "M"], args.stays)

    from fairlearn.metrics import MetricFrame

    started = time.perf_counter()
    frame = MetricFrame(metrics={"auroc": auroc, "auprc": auprc, "brier": brier, "ece": ece}, y_true=y, y_pred=p,
                        sensitive_features={"sex": sex}, n_boot=args.resamples, ci_quantiles=[0.025, 0.975],
                        random_state=0)
    fairlearn_seconds = time.perf_counter() - started
    started = time.perf_counter()
    table = subgroup_metrics(y, [p], {"sex": sex}, args.resamples, 0.95, 0, 50)
    ours_seconds = time.perf_counter() - started
    gap = float(np.max(np.abs(frame.by_group["auroc"].to_numpy() - table.get_column("auroc").to_numpy())))
    print(f"{platform.processor() or platform.machine()}: {args.stays} stays, 2 groups, {args.resamples} resamples, "
          f"4 metrics")
    print(f"fairlearn MetricFrame n_boot: {fairlearn_seconds:.1f} s")
    print(f"MetricFrame groups + emerge_ehr bootstrap: {ours_seconds:.1f} s ({fairlearn_seconds / ours_seconds:.0f}x)")
    print(f"largest difference of the group AUROCs: {gap:.2e}")


if __name__ == "__main__":
    main()
