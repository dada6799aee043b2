# The generators: one GAN per label under the same budget (the W-CGAN design), the labels_per_job
# GANs of a chunk trained together in one job as one batched network; with train.generator: conditional one class-conditional GAN for every label in
# one job under the labels' budget together (the cGAN baseline); with distributed that GAN
# trained by a server and local critics on devices (wcgan.distributed), in one torchrun job. Checkpoints live outside
# the declared outputs, so a failed or killed job's resume state survives Snakemake's cleanup.
# The training job also draws its labels' samples: the generator is loaded and on its device.


if GENERATOR == "per_label":

    rule train_chunk:
        input:
            shards=rules.split_chunk.output.shards,
            shapes_checked=shape_gate(),
        output:
            **training_outputs(),
        log:
            f"{RESULTS}/logs/train/{{chunk}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/train/{{chunk}}.tsv"
        conda:
            "../../envs/wcgan.yaml"
        threads: config["resources"]["train_threads"]
        resources:
            mem_mb=config["resources"]["train_mem_mb"],
            runtime=TRAIN_RUNTIME,
        params:
            **training_params(),
        shell:
            training_command("wcgan train")

elif GENERATOR == "conditional":

    rule train_conditional:
        input:
            shards=per_chunk(f"{RESULTS}/shards/{{chunk}}"),
            shapes_checked=shape_gate(),
        output:
            **training_outputs(),
        log:
            f"{RESULTS}/logs/train/conditional.log",
        benchmark:
            f"{RESULTS}/benchmarks/train/conditional.tsv"
        conda:
            "../../envs/wcgan.yaml"
        threads: config["resources"]["train_threads"]
        resources:
            mem_mb=config["resources"]["train_mem_mb"],
            runtime=TRAIN_RUNTIME,
        params:
            **training_params(),
        shell:
            training_command("wcgan train")

else:

    # One job of DIST.processes processes (the server and a process per device) on one node,
    # launched by torchrun: on Slurm one task with their CPUs (threads) and memory together.
    rule train_distributed:
        input:
            shards=per_chunk(f"{RESULTS}/shards/{{chunk}}"),
            shapes_checked=shape_gate(),
        output:
            **training_outputs(),
        log:
            f"{RESULTS}/logs/train/distributed.log",
        benchmark:
            f"{RESULTS}/benchmarks/train/distributed.tsv"
        conda:
            "../../envs/wcgan.yaml"
        threads: config["resources"]["train_threads"] * DIST.processes
        resources:
            mem_mb=config["resources"]["train_mem_mb"] * DIST.processes,
            runtime=TRAIN_RUNTIME,
        params:
            **training_params(),
        shell:
            training_command(
                f"torchrun --standalone --nproc-per-node {DIST.processes}"
                " --no-python wcgan train-distributed"
            )


rule models:
    # snakemake models: train every generator and nothing else (what a scaling point times).
    input:
        all_trained("models"),
