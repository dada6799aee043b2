"""Where a finished run's time went, by rule, from its Snakemake benchmark files.

    python bench/run_time_by_rule.py [results/digits]

Prints jobs, total/mean/max wall seconds per rule and each rule's share of the summed job time.
The summed job time exceeds the run's elapsed time by the parallelism Snakemake achieved.
"""

import sys

from wcgan.benchmarks import read_benchmarks, time_by_rule

run_dir = sys.argv[1] if len(sys.argv) > 1 else "results/digits"
table = time_by_rule(read_benchmarks(run_dir))
print(f"run {run_dir}: {int(table['jobs'].sum())} jobs, {table['total_s'].sum():.1f} job-seconds")
print(table.to_string(float_format=lambda v: f"{v:.2f}"))
