# Split the data set by label, a chunk of labels_per_job labels per job: one shard per label
# (shards/<chunk>/<label>.pt), read only by the jobs of that label's chunk. A source stored as
# one file is read once per job; a folder source reads only the chunk's folders.


rule split_chunk:
    output:
        shards=directory(f"{RESULTS}/shards/{{chunk}}"),
    log:
        f"{RESULTS}/logs/split/{{chunk}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/split/{{chunk}}.tsv"
    conda:
        "../../envs/wcgan.yaml"
    params:
        data=data_options(),
        labels=split_labels,
        # Not in the command: changes with the chunk's file list, and so reruns the job.
        data_fingerprint=split_fingerprint,
    shell:
        "wcgan split {params.data} --out-dir {output.shards} {params.labels} 2> {log}"


rule label_table:
    input:
        shards=per_chunk(f"{RESULTS}/shards/{{chunk}}"),
    output:
        table=f"{RESULTS}/labels.tsv",
    log:
        f"{RESULTS}/logs/label_table.log",
    benchmark:
        f"{RESULTS}/benchmarks/label_table.tsv"
    conda:
        "../../envs/wcgan.yaml"
    params:
        shards=every_chunk("shards"),
    shell:
        "wcgan label-table --shards {params.shards} --out {output.table} 2> {log}"
