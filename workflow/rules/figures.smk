# Figures and the report, all from files in results/: rerunning them never retrains anything.


localrules:
    label_table,
    plot_sample_grids,
    plot_merged_grid,
    plot_losses,
    plot_label_scores,
    plot_ranked_grids,
    figures,


rule plot_sample_grids:
    input:
        samples=per_chunk(LAYOUT.chunks("samples")),
    output:
        # One folder, not one output per label: a DAG of thousands of labels resolves it once.
        # Not in the report: a grid per label made the report of 1,000 labels 13.5 MB;
        # plot_ranked_grids shows the worst and best labels' grids there.
        grids=directory(LAYOUT.figure("samples")),
    log:
        LAYOUT.log("figures/sample_grids"),
    benchmark:
        LAYOUT.benchmark("figures/sample_grids")
    conda:
        "../../envs/wcgan.yaml"
    params:
        samples=every_chunk("samples"),
        per_grid=config["figures"]["grid_samples"],
    shell:
        "wcgan plot-grids --samples {params.samples} --count {params.per_grid}"
        " --out-dir {output.grids} 2> {log}"


rule plot_merged_grid:
    input:
        samples=per_chunk(LAYOUT.chunks("samples")),
    output:
        grid=report(
            LAYOUT.figure("samples_merged.png"),
            caption="../report/samples_merged.rst",
            category="Samples",
            subcategory="All labels",
        ),
    log:
        LAYOUT.log("figures/samples_merged"),
    benchmark:
        LAYOUT.benchmark("figures/samples_merged")
    conda:
        "../../envs/wcgan.yaml"
    params:
        samples=every_chunk("samples"),
        per_label=config["figures"]["merged_per_label"],
        max_labels=config["figures"]["merged_max_labels"],
    shell:
        "wcgan plot-merged --samples {params.samples} --per-label {params.per_label}"
        " --max-labels {params.max_labels} --out {output.grid} 2> {log}"


rule plot_losses:
    input:
        losses=all_trained("losses"),
        # A plain path, not rules.label_table.output: Snakemake's rule-dependency lookup is
        # quadratic in the length of this rule's other (per-label) input list.
        labels=LAYOUT.labels_table,
    output:
        plot=report(
            LAYOUT.figure("losses.png"),
            caption="../report/losses.rst",
            category="Training",
        ),
    log:
        LAYOUT.log("figures/losses"),
    benchmark:
        LAYOUT.benchmark("figures/losses")
    conda:
        "../../envs/wcgan.yaml"
    params:
        losses=all_trained_option("losses"),
    shell:
        "wcgan plot-losses --losses {params.losses} --labels {input.labels}"
        " --out {output.plot} 2> {log}"


rule plot_label_scores:
    input:
        metrics=rules.score.output.table,
    output:
        plot=report(
            LAYOUT.figure("fid_per_label.png"),
            caption="../report/fid_per_label.rst",
            category="Metrics",
        ),
    log:
        LAYOUT.log("figures/fid_per_label"),
    benchmark:
        LAYOUT.benchmark("figures/fid_per_label")
    conda:
        "../../envs/wcgan.yaml"
    shell:
        "wcgan plot-scores --metrics {input.metrics} --out {output.plot} 2> {log}"


rule plot_ranked_grids:
    input:
        metrics=rules.score.output.table,
        grids=rules.plot_sample_grids.output.grids,
    output:
        plot=report(
            LAYOUT.figure("grids_by_fid.png"),
            caption="../report/grids_by_fid.rst",
            category="Samples",
            subcategory="Worst and best labels",
        ),
    log:
        LAYOUT.log("figures/grids_by_fid"),
    benchmark:
        LAYOUT.benchmark("figures/grids_by_fid")
    conda:
        "../../envs/wcgan.yaml"
    params:
        ranked=config["figures"]["ranked_labels"],
    shell:
        "wcgan plot-ranked-grids --metrics {input.metrics} --grids {input.grids}"
        " --count {params.ranked} --out {output.plot} 2> {log}"


rule figures:
    input:
        get_figures(),
