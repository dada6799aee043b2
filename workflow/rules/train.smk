# The generators. Per label (the W-CGAN design): a chunk's labels_per_job GANs trained together
# in one job as one batched network. With train.generator conditional, one class-conditional GAN
# for every label in one job under the labels' budget together (the cGAN baseline); with
# distributed, that GAN trained by a server and local critics on devices (wcgan.distributed,
# wcgan.launch) in one job of several processes. Checkpoints live outside the declared outputs,
# so a failed or killed job's resume state survives Snakemake's cleanup. The training job also
# draws its labels' samples: the generator is loaded and on its device.


rule train_chunk:
    input:
        shards=rules.split_chunk.output.shards,
    output:
        **chunk_outputs(),
    log:
        LAYOUT.log("train/{chunk}"),
    benchmark:
        LAYOUT.benchmark("train/{chunk}")
    conda:
        "../../envs/wcgan.yaml"
    threads: config["resources"]["train_threads"]
    resources:
        **training_resources(),
    params:
        **training_params(chunk_files()),
    shell:
        # The job refuses at its start an estimate over the memory it was given.
        training_shell("wcgan train --mem-mb {resources.mem_mb}")


# The one generator's rule exists only in its runs: without wildcards, Snakemake would prefer it
# to train_chunk for the chunks' samples, which both declare.
if GENERATOR == "conditional":

    use rule train_chunk as train_conditional with:
        input:
            shards=per_chunk(LAYOUT.chunks("shards")),
        output:
            **generator_outputs(),
        log:
            LAYOUT.log("train/conditional"),
        benchmark:
            LAYOUT.benchmark("train/conditional")
        params:
            **training_params(generator_files()),


if GENERATOR == "distributed":

    # One job of DIST.processes processes, the server and a process per device, launched by
    # torchrun on one machine, or as DIST.processes srun tasks over distributed.nodes nodes
    # where the Slurm profile names srun as the job's mpi resource (jsrun likewise on LSF).
    rule train_distributed:
        input:
            shards=per_chunk(LAYOUT.chunks("shards")),
        output:
            **generator_outputs(),
        log:
            LAYOUT.log("train/distributed"),
        benchmark:
            LAYOUT.benchmark("train/distributed")
        conda:
            "../../envs/wcgan.yaml"
        threads: config["resources"]["train_threads"] * DIST.processes
        resources:
            **training_resources(),
        params:
            **training_params(generator_files(), config["distributed"]),
            launcher=launcher,
        shell:
            training_shell("wcgan train-distributed --launch {params.launcher}")


rule models:
    # snakemake models: train every generator and nothing else (what a scaling point times).
    input:
        all_trained("models"),
