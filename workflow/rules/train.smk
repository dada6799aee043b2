# The generators: one GAN per label, each an independent job under the same budget (the
# W-CGAN design), or with train.generator: conditional one class-conditional GAN for every label
# in one job under the labels' budget together (the cGAN baseline). Checkpoints live outside
# the declared outputs, so a failed or killed job's resume state survives Snakemake's cleanup.
# The training job also draws its labels' samples: the generator is loaded and on its device.


if IS_CONDITIONAL:

    rule train_conditional:
        input:
            shards=per_label(f"{RESULTS}/shards/{{label}}.pt"),
            shapes_checked=shape_gate(),
        output:
            **training_outputs(
                CONDITIONAL, per_label(f"{RESULTS}/samples/{{label}}.pt")
            ),
        log:
            f"{RESULTS}/logs/train/{CONDITIONAL}.log",
        benchmark:
            f"{RESULTS}/benchmarks/train/{CONDITIONAL}.tsv"
        conda:
            "../../envs/wcgan.yaml"
        threads: config["resources"]["train_threads"]
        resources:
            mem_mb=config["resources"]["train_mem_mb"],
            runtime=TRAIN_RUNTIME,
        params:
            **training_params(CONDITIONAL),
        shell:
            TRAINING_COMMAND

else:

    rule train_label:
        input:
            shards=rules.split_label.output.shard,
            shapes_checked=shape_gate(),
        output:
            **training_outputs("{label}", f"{RESULTS}/samples/{{label}}.pt"),
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
            **training_params("{label}"),
        shell:
            TRAINING_COMMAND


rule models:
    # snakemake models: train every generator and nothing else (what a scaling point times).
    input:
        per_trained(f"{RESULTS}/models/{{label}}.pt"),
