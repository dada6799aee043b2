# The generators: one GAN per label under the same budget (the W-CGAN design), the
# labels_per_job GANs of a chunk trained together in one job as one batched network; with
# train.generator: conditional one class-conditional GAN for every label in one job under the
# labels' budget together (the cGAN baseline); with distributed that GAN trained by a server and
# local critics on devices (wcgan.distributed, wcgan.launch), in one job of several processes. Checkpoints live outside the
# declared outputs, so a failed or killed job's resume state survives Snakemake's cleanup. The
# training job also draws its labels' samples: the generator is loaded and on its device.


# One rule of three names: train_chunk (a chunk of per-label GANs), train_conditional and
# train_distributed (one job of DIST.processes processes, the server and a process per device,
# launched by torchrun on one machine, or as DIST.processes srun tasks over distributed.nodes
# nodes where the Slurm profile names srun as the job's mpi resource; jsrun likewise on LSF).
rule:
    name:
        TRAIN_RULES[GENERATOR]
    input:
        shards=(
            rules.split_chunk.output.shards
            if GENERATOR == "per_label"
            else per_chunk(LAYOUT.chunks("shards"))
        ),
    output:
        **training_outputs(),
    log:
        LAYOUT.log(f"train/{LAYOUT.training_job}"),
    benchmark:
        LAYOUT.benchmark(f"train/{LAYOUT.training_job}")
    conda:
        "../../envs/wcgan.yaml"
    threads: config["resources"]["train_threads"] * TRAINING_PROCESSES
    resources:
        **training_resources(),
    params:
        **training_params(),
    shell:
        training_command()


rule models:
    # snakemake models: train every generator and nothing else (what a scaling point times).
    input:
        all_trained("models"),
