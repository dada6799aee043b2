# Scores with torch-fidelity, in one job that loads the feature extractor once: all labels'
# samples merged (IS, FID, KID, precision/recall) and each label against its own images (FID,
# KID, precision/recall). Without Inception weights the features come from a classifier trained
# on the real images.


rule train_classifier:
    input:
        shards=per_label(f"{RESULTS}/shards/{{label}}.pt"),
    output:
        model=f"{RESULTS}/classifier/classifier.pt",
        report=f"{RESULTS}/classifier/report.json",
    log:
        f"{RESULTS}/logs/train_classifier.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_classifier.tsv"
    conda:
        "../../envs/wcgan.yaml"
    threads: config["resources"]["classifier_threads"]
    params:
        options=format_options(config["metrics"]["classifier"]),
    shell:
        "wcgan train-classifier --shards {input.shards} --out {output.model}"
        " --report-out {output.report} --threads {threads} {params.options} 2> {log}"


rule score:
    input:
        samples=per_label(f"{RESULTS}/samples/{{label}}.pt"),
        shards=per_label(f"{RESULTS}/shards/{{label}}.pt"),
        extractor=extractor_input(),
    output:
        table=report(
            f"{RESULTS}/scores/metrics.tsv",
            caption="../report/metrics.rst",
            category="Metrics",
        ),
    log:
        f"{RESULTS}/logs/score.log",
    benchmark:
        f"{RESULTS}/benchmarks/score.tsv"
    conda:
        "../../envs/wcgan.yaml"
    threads: config["resources"]["score_threads"]
    params:
        extractor=extractor_option,
        options=score_options(),
    shell:
        "wcgan score --samples {input.samples} --shards {input.shards} {params.extractor}"
        " {params.options} --threads {threads} --out {output.table} 2> {log}"


rule score_curve:
    # FID against compute: every train.snapshots point, all labels merged.
    input:
        snapshots=per_trained(f"{RESULTS}/snapshots/{{label}}.pt"),
        shards=per_label(f"{RESULTS}/shards/{{label}}.pt"),
        extractor=extractor_input(),
    output:
        table=f"{RESULTS}/scores/curve.tsv",
    log:
        f"{RESULTS}/logs/score_curve.log",
    benchmark:
        f"{RESULTS}/benchmarks/score_curve.tsv"
    conda:
        "../../envs/wcgan.yaml"
    threads: config["resources"]["score_threads"]
    params:
        extractor=extractor_option,
        options=score_options(),
    shell:
        "wcgan score-curve --snapshots {input.snapshots} --shards {input.shards}"
        " {params.extractor} {params.options} --threads {threads} --out {output.table}"
        " 2> {log}"
