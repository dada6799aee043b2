# Split the data set by label: one shard per label, read only by that label's jobs.


rule split_label:
    output:
        shard=f"{RESULTS}/shards/{{label}}.pt",
    log:
        f"{RESULTS}/logs/split/{{label}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/split/{{label}}.tsv"
    conda:
        "../../envs/wcgan.yaml"
    params:
        data=data_options(),
        label=lambda wildcards: LABEL_BY_SLUG[wildcards.label],
    shell:
        "wcgan split {params.data} --label={params.label.name:q} --index {params.label.index}"
        " --out {output.shard} 2> {log}"


rule label_table:
    input:
        shards=per_label(f"{RESULTS}/shards/{{label}}.pt"),
    output:
        table=f"{RESULTS}/labels.tsv",
    log:
        f"{RESULTS}/logs/label_table.log",
    benchmark:
        f"{RESULTS}/benchmarks/label_table.tsv"
    conda:
        "../../envs/wcgan.yaml"
    shell:
        "wcgan label-table --shards {input.shards} --out {output.table} 2> {log}"
