# One GAN per label, each an independent job under the same budget. Checkpoints live outside
# the declared outputs, so a failed or killed job's resume state survives Snakemake's cleanup.


rule train_label:
    input:
        shard=rules.split_label.output.shard,
        shapes_checked=shape_gate(),
    output:
        model=f"{RESULTS}/models/{{label}}.pt",
        losses=f"{RESULTS}/losses/{{label}}.csv",
        summary=f"{RESULTS}/training/{{label}}.json",
        # Drawn by the training job itself: the generator is loaded and on its device already.
        samples=f"{RESULTS}/samples/{{label}}.pt",
    log:
        f"{RESULTS}/logs/train/{{label}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{label}}.tsv"
    conda:
        "../../envs/wcgan.yaml"
    threads: config["resources"]["train_threads"]
    resources:
        mem_mb=config["resources"]["train_mem_mb"],
        runtime=TRAIN_RUNTIME,
    params:
        checkpoints=f"{RESULTS}/checkpoints/{{label}}",
        options=format_options(config["train"]),
        samples=config["sampling"]["per_label"],
        samples_seed=config["sampling"]["seed"],
    shell:
        "wcgan train --shard {input.shard} --model-out {output.model}"
        " --losses-out {output.losses} --summary-out {output.summary}"
        " --samples-out {output.samples} --samples {params.samples}"
        " --samples-seed {params.samples_seed}"
        " --checkpoint-dir {params.checkpoints} --threads {threads} {params.options}"
        " 2> {log}"


rule models:
    # snakemake models: train every label and nothing else (what a scaling point times).
    input:
        per_label(rules.train_label.output.model),
