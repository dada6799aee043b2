# Comparing schemes (snakemake compare): each (scheme, seed) variant trains its generators (one
# per label, or the cgan scheme's one conditional GAN) at the run's budget through a Snakemake
# call of its own, in results/<run>/compare/<scheme>-s<seed>/ (resumed, never deleted); this run
# then scores every variant and its snapshots with its own extractor and real images, and writes
# the tables and figures.


localrules:
    compare_train,
    compare_report,
    plot_compare,
    compare,


rule compare_train:
    output:
        # Written after the variant's call: its own files stay undeclared here (locks).
        budget=f"{COMPARE_DIR}/{{variant}}/budget.tsv",
    log:
        LAYOUT.log("compare/{variant}"),
    benchmark:
        LAYOUT.benchmark("compare/{variant}")
    wildcard_constraints:
        variant="|".join(COMPARE_VARIANTS),
    conda:
        "../../envs/wcgan.yaml"
    # Variants train one after the other, each owning the machine, so a seconds budget buys
    # every scheme the same device time; Snakemake lowers this to --cores.
    threads: os.cpu_count()
    params:
        run=lambda wildcards: f"{config['run']}/compare/{wildcards.variant}",
        run_dir=lambda wildcards: f"{COMPARE_DIR}/{wildcards.variant}",
        scheme=lambda wildcards: COMPARE_VARIANTS[wildcards.variant][0],
        seed=lambda wildcards: COMPARE_VARIANTS[wildcards.variant][1],
        options=lambda wildcards: json.dumps(
            COMPARE["options"].get(COMPARE_VARIANTS[wildcards.variant][0], {})
        ),
        snapshots=COMPARE["snapshots"],
        base=json.dumps(compare_base_config()),
        snakefile=os.path.relpath(workflow.main_snakefile),
        args=shlex.join(COMPARE["snakemake_args"]),
    shell:
        "mkdir -p {params.run_dir}"
        " && wcgan compare-config --base {params.base:q} --run {params.run}"
        " --scheme {params.scheme} --seed {params.seed} --options {params.options:q}"
        " --snapshots {params.snapshots}"
        " --out {params.run_dir}/config.yaml 2> {log}"
        " && snakemake --snakefile {params.snakefile} --configfile {params.run_dir}/config.yaml"
        " {params.args} --cores {threads} models >> {log} 2>&1"
        " && wcgan compare-budget --config {params.run_dir}/config.yaml"
        " --out {output.budget} 2>> {log}"


rule compare_score:
    input:
        # Only the order: the variant's samples exist once its budget table does.
        budget=rules.compare_train.output.budget,
        shards=per_chunk(LAYOUT.chunks("shards")),
        extractor=extractor_input(),
    output:
        table=f"{COMPARE_DIR}/{{variant}}/metrics.tsv",
    log:
        LAYOUT.log("compare/{variant}.score"),
    benchmark:
        LAYOUT.benchmark("compare/{variant}.score")
    wildcard_constraints:
        variant="|".join(COMPARE_VARIANTS),
    conda:
        "../../envs/wcgan.yaml"
    threads: config["resources"]["score_threads"]
    params:
        samples=compare_samples,
        extractor=extractor_option(),
        options=f"{feature_options()} {merge_options()}",
    shell:
        "wcgan score --samples {params.samples} --shards {input.shards} {params.extractor}"
        " {params.options} --threads {threads} --out {output.table} 2> {log}"


rule compare_curve:
    input:
        # Only the order: the variant's snapshots exist once its budget table does.
        budget=rules.compare_train.output.budget,
        shards=per_chunk(LAYOUT.chunks("shards")),
        extractor=extractor_input(),
    output:
        table=f"{COMPARE_DIR}/{{variant}}/curve.tsv",
    log:
        LAYOUT.log("compare/{variant}.curve"),
    benchmark:
        LAYOUT.benchmark("compare/{variant}.curve")
    wildcard_constraints:
        variant="|".join(COMPARE_VARIANTS),
    conda:
        "../../envs/wcgan.yaml"
    threads: config["resources"]["score_threads"]
    params:
        snapshots=compare_snapshots,
        extractor=extractor_option(),
        options=f"{feature_options()} {merge_options()}",
    shell:
        "wcgan score-curve --snapshots {params.snapshots} --shards {input.shards}"
        " {params.extractor} {params.options} --threads {threads} --out {output.table}"
        " 2> {log}"


rule compare_report:
    input:
        budgets=compare_variant_files("budget.tsv"),
        metrics=compare_variant_files("metrics.tsv"),
        curves=compare_variant_files("curve.tsv"),
    output:
        **({"seeds": f"{COMPARE_DIR}/seeds.tsv"} if len(COMPARE["seeds"]) > 1 else {}),
        table=report(
            f"{COMPARE_DIR}/comparison.tsv",
            caption="../report/compare.rst",
            category="Comparing schemes",
        ),
        labels=report(
            f"{COMPARE_DIR}/labels.tsv",
            caption="../report/compare_labels.rst",
            category="Comparing schemes",
        ),
        curve_ends=f"{COMPARE_DIR}/curve_ends.tsv",
    log:
        LAYOUT.log("compare/report"),
    benchmark:
        LAYOUT.benchmark("compare/report")
    conda:
        "../../envs/wcgan.yaml"
    params:
        seeds=lambda wildcards, output: (
            f"--seeds-out {output.seeds}" if "seeds" in output.keys() else ""
        ),
    shell:
        "wcgan compare-report --budgets {input.budgets} --metrics {input.metrics}"
        " --out {output.table} --labels-out {output.labels} {params.seeds}"
        " --curves {input.curves} --curve-ends-out {output.curve_ends} 2> {log}"


rule plot_compare:
    input:
        comparison=rules.compare_report.output.table,
        metrics=compare_variant_files("metrics.tsv"),
        curves=compare_variant_files("curve.tsv"),
    output:
        samples=report(
            LAYOUT.figure("compare/samples.png"),
            caption="../report/compare.rst",
            category="Comparing schemes",
        ),
        fid=report(
            LAYOUT.figure("compare/fid.png"),
            caption="../report/compare.rst",
            category="Comparing schemes",
        ),
        budget=report(
            LAYOUT.figure("compare/fid_budget.png"),
            caption="../report/compare_budget.rst",
            category="Comparing schemes",
        ),
    log:
        LAYOUT.log("figures/compare"),
    benchmark:
        LAYOUT.benchmark("figures/compare")
    conda:
        "../../envs/wcgan.yaml"
    params:
        variants=compare_grid_variants(),
        per_label=min(6, config["figures"]["merged_per_label"]),
        max_labels=config["figures"]["merged_max_labels"],
    shell:
        "wcgan plot-compare --comparison {input.comparison} --metrics {input.metrics}"
        " --curves {input.curves} --variants {params.variants}"
        " --per-label {params.per_label} --max-labels {params.max_labels}"
        " --samples-out {output.samples} --fid-out {output.fid}"
        " --budget-out {output.budget} 2> {log}"


rule compare:
    input:
        rules.compare_report.output,
        rules.plot_compare.output,
