# Weak scaling (snakemake scaling): each point trains the first N labels with a fixed number of
# iterations as N concurrent jobs, through a Snakemake call of its own (locally, or through the
# series' profile), in results/<run>/scaling/<series>/n<N>/, a scratch run the point recreates.
# Points run one after the other, each owning the machine, so none disturbs another's timing.


localrules:
    scaling_point,
    scaling_report,
    plot_scaling,
    scaling,


rule scaling_point:
    input:
        previous=previous_scaling_point,
    output:
        table=f"{SCALING_DIR}/{{series}}/n{{n}}.tsv",
    log:
        f"{RESULTS}/logs/scaling/{{series}}/n{{n}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/scaling/{{series}}/n{{n}}.tsv"
    wildcard_constraints:
        series="[A-Za-z0-9_-]+",
        n="[0-9]+",
    conda:
        "../../envs/wcgan.yaml"
    # The point owns the machine while it measures (its jobs run in a Snakemake call of their
    # own); Snakemake lowers this to --cores.
    threads: os.cpu_count()
    params:
        run=lambda wildcards: f"{config['run']}/scaling/{wildcards.series}/n{wildcards.n}",
        base=json.dumps(
            {k: v for k, v in config.items() if k not in ("run", "scaling")}
        ),
        iterations=SCALING["iterations"],
        snakemake=f"{sys.executable} -m snakemake --snakefile {workflow.main_snakefile}",
        targets=scaling_targets,
        series_args=lambda wildcards: shlex.join(
            SCALING["series"][wildcards.series]["snakemake_args"]
        ),
    shell:
        "rm -rf results/{params.run}"
        " && mkdir -p results/{params.run}"
        " && wcgan scaling-config --base {params.base:q} --run {params.run}"
        " --jobs {wildcards.n} --iterations {params.iterations}"
        " --out results/{params.run}/config.yaml 2> {log}"
        # Split first (labels.tsv needs every shard), so that the timed call's only jobs are
        # the N training jobs.
        " && {params.snakemake} --configfile results/{params.run}/config.yaml --cores all"
        " results/{params.run}/labels.tsv >> {log} 2>&1"
        " && {params.snakemake} --configfile results/{params.run}/config.yaml"
        " {params.series_args} --jobs {wildcards.n} {params.targets} >> {log} 2>&1"
        " && wcgan scaling-times --config results/{params.run}/config.yaml"
        " --series {wildcards.series} --out {output.table} 2>> {log}"


rule scaling_report:
    input:
        points=[scaling_point_table(*point) for point in SCALING_POINTS],
    output:
        jobs=f"{SCALING_DIR}/jobs.tsv",
        summary=f"{SCALING_DIR}/summary.tsv",
        projection=f"{SCALING_DIR}/projection.tsv",
    log:
        f"{RESULTS}/logs/scaling/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/scaling/report.tsv"
    conda:
        "../../envs/wcgan.yaml"
    params:
        projection=SCALING["projection_jobs"],
    shell:
        "wcgan scaling-report --points {input.points} --projection {params.projection}"
        " --jobs-out {output.jobs} --summary-out {output.summary}"
        " --projection-out {output.projection} 2> {log}"


rule plot_scaling:
    input:
        summary=rules.scaling_report.output.summary,
        projection=rules.scaling_report.output.projection,
    output:
        figures=report(
            directory(f"{RESULTS}/figures/scaling"),
            patterns=["{name}.png"],
            caption="../report/scaling.rst",
            category="Weak scaling",
        ),
    log:
        f"{RESULTS}/logs/figures/scaling.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/scaling.tsv"
    conda:
        "../../envs/wcgan.yaml"
    shell:
        "wcgan plot-scaling --summary {input.summary} --projection {input.projection}"
        " --out-dir {output.figures} 2> {log}"


rule scaling:
    input:
        rules.plot_scaling.output.figures,
