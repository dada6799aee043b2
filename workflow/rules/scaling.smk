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
        # Only the order: a remeasured earlier point does not make later ones stale.
        previous=lambda wildcards: ancient(previous_scaling_point(wildcards)),
    output:
        table=f"{SCALING_DIR}/{{series}}/n{{n}}.tsv",
    log:
        LAYOUT.log("scaling/{series}/n{n}"),
    benchmark:
        LAYOUT.benchmark("scaling/{series}/n{n}")
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
        run_dir=lambda wildcards: f"{SCALING_DIR}/{wildcards.series}/n{wildcards.n}",
        base=json.dumps(scaling_base_config()),
        iterations=SCALING["iterations"],
        # Relative, like every path here: moving the checkout reruns no measurement.
        snakefile=os.path.relpath(workflow.main_snakefile),
        cores=lambda wildcards: int(wildcards.n) * config["resources"]["train_threads"],
        series_args=lambda wildcards: shlex.join(
            SCALING["series"][wildcards.series]["snakemake_args"]
        ),
    shell:
        "rm -rf {params.run_dir}"
        " && mkdir -p {params.run_dir}"
        " && wcgan scaling-config --base {params.base:q} --run {params.run}"
        " --n {wildcards.n} --iterations {params.iterations}"
        " --out {params.run_dir}/config.yaml 2> {log}"
        # Split first, so that the timed call's only jobs are the N training jobs.
        " && snakemake --snakefile {params.snakefile} --configfile {params.run_dir}/config.yaml --cores {threads}"
        " {params.run_dir}/labels.tsv >> {log} 2>&1"
        " && snakemake --snakefile {params.snakefile} --configfile {params.run_dir}/config.yaml"
        " {params.series_args} --jobs {wildcards.n} --cores {params.cores}"
        " models >> {log} 2>&1"
        " && wcgan scaling-times --config {params.run_dir}/config.yaml"
        " --series {wildcards.series} --out {output.table} 2>> {log}"


rule scaling_report:
    input:
        points=[scaling_point_table(*point) for point in SCALING_POINTS],
    output:
        jobs=f"{SCALING_DIR}/jobs.tsv",
        summary=f"{SCALING_DIR}/summary.tsv",
        projection=f"{SCALING_DIR}/projection.tsv",
    log:
        LAYOUT.log("scaling/report"),
    benchmark:
        LAYOUT.benchmark("scaling/report")
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
            directory(LAYOUT.figure("scaling")),
            patterns=["{name}.png"],
            caption="../report/scaling.rst",
            category="Weak scaling",
        ),
    log:
        LAYOUT.log("figures/scaling"),
    benchmark:
        LAYOUT.benchmark("figures/scaling")
    conda:
        "../../envs/wcgan.yaml"
    shell:
        "wcgan plot-scaling --summary {input.summary} --projection {input.projection}"
        " --out-dir {output.figures} 2> {log}"


rule scaling:
    input:
        rules.plot_scaling.output.figures,
