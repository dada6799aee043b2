# Each label's generator draws the samples that are scored and shown.


rule sample_label:
    input:
        model=rules.train_label.output.model,
    output:
        samples=f"{RESULTS}/samples/{{label}}.pt",
    log:
        f"{RESULTS}/logs/sample/{{label}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/sample/{{label}}.tsv"
    conda:
        "../../envs/wcgan.yaml"
    threads: 1
    params:
        n=config["sampling"]["per_label"],
        seed=config["sampling"]["seed"],
    shell:
        "wcgan sample --model {input.model} -n {params.n} --seed {params.seed}"
        " --threads {threads} --out {output.samples} 2> {log}"
