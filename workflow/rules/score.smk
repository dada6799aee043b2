# Scores with torch-fidelity: all labels' samples merged (IS, FID, KID, precision/recall) and
# each label against its own images (FID, KID, precision/recall). Without Inception weights the
# features come from a classifier trained on the real images.


rule train_classifier:
    input:
        # labels.tsv stands for every chunk's shards: its job reads them all, so a re-split chunk
        # retrains the classifier. One input per chunk would cost Snakemake a comparison per
        # chunk for each feature job's look-up of the classifier, quadratic in the chunks (a dry
        # run of 21,841 labels at K = 1 did not end in 11 minutes).
        shards=LAYOUT.labels_table,
    output:
        model=LAYOUT.classifier,
        report=LAYOUT.path("classifier", "report.json"),
    log:
        LAYOUT.log("train_classifier"),
    benchmark:
        LAYOUT.benchmark("train_classifier")
    conda:
        "../../envs/wcgan.yaml"
    threads: config["resources"]["classifier_threads"]
    params:
        shards=f"{LAYOUT.path('shards')} {CHUNKS_OPTION}",
        options=format_options(config["metrics"]["classifier"]),
    shell:
        "wcgan train-classifier --shards {params.shards} --out {output.model}"
        " --report-out {output.report} --threads {threads} {params.options} 2> {log}"


# Scoring as map and reduce: one feature job per chunk sends each of its labels' real and
# generated images through the extractor once and scores each label on the job's device; its
# file (features/<chunk>.pt) keeps the scores, the moments of the features and a subset of each
# label's. One merge job concatenates the label rows and scores all labels merged from those.


rule features_chunk:
    input:
        samples=LAYOUT.chunks("samples"),
        shards=LAYOUT.chunks("shards"),
        snapshots=chunk_snapshots(),
        extractor=extractor_input(),
    output:
        features=LAYOUT.features(),
    log:
        LAYOUT.log("features/{chunk}"),
    benchmark:
        LAYOUT.benchmark("features/{chunk}")
    conda:
        "../../envs/wcgan.yaml"
    threads: config["resources"]["score_threads"]
    params:
        files=feature_files,
        extractor=extractor_option(),
        options=f"{feature_options()} {merge_options()}",
    shell:
        "wcgan features {params.files} {params.extractor} {params.options}"
        " --threads {threads} --out {output.features} 2> {log}"


rule score:
    input:
        features=per_chunk(LAYOUT.features()),
    output:
        table=report(
            LAYOUT.scores("metrics.tsv"),
            caption="../report/metrics.rst",
            category="Metrics",
        ),
    log:
        LAYOUT.log("score"),
    benchmark:
        LAYOUT.benchmark("score")
    conda:
        "../../envs/wcgan.yaml"
    params:
        features=every_chunk("features"),
        options=merge_options(),
    shell:
        "wcgan merge-scores --features {params.features} {params.options}"
        " --out {output.table} 2> {log}"


rule score_curve:
    # FID against compute: every train.snapshots point, all labels merged, from the snapshot
    # scores of the feature jobs.
    input:
        features=per_chunk(LAYOUT.features()),
    output:
        table=LAYOUT.scores("curve.tsv"),
    log:
        LAYOUT.log("score_curve"),
    benchmark:
        LAYOUT.benchmark("score_curve")
    conda:
        "../../envs/wcgan.yaml"
    params:
        features=every_chunk("features"),
        options=merge_options(),
    shell:
        "wcgan merge-curve --features {params.features} {params.options}"
        " --out {output.table} 2> {log}"
