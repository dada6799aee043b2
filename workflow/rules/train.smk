# One GAN per label, each an independent job under the same budget. Checkpoints live outside
# the declared outputs, so a failed or killed job's resume state survives Snakemake's cleanup.


rule train_label:
    input:
        shard=rules.split_label.output.shard,
        # A gate, not data: every label's shard must exist and share one shape before any
        # training starts; ancient() keeps a rewritten table from retraining every label.
        labels=ancient(rules.label_table.output.table),
    output:
        model=f"{RESULTS}/models/{{label}}.pt",
        losses=f"{RESULTS}/losses/{{label}}.csv",
        summary=f"{RESULTS}/training/{{label}}.json",
    log:
        f"{RESULTS}/logs/train/{{label}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{label}}.tsv"
    conda:
        "../../envs/wcgan.yaml"
    threads: config["resources"]["train_threads"]
    resources:
        mem_mb=config["resources"]["train_mem_mb"],
        runtime=train_runtime,
    params:
        checkpoints=f"{RESULTS}/checkpoints/{{label}}",
        options=format_options(config["train"]),
    shell:
        "wcgan train --shard {input.shard} --model-out {output.model}"
        " --losses-out {output.losses} --summary-out {output.summary}"
        " --checkpoint-dir {params.checkpoints} --threads {threads} {params.options}"
        " 2> {log}"
