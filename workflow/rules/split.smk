# Split the data set by label, a chunk of labels_per_job labels per job: one shard per label
# (shards/<chunk>/<label>.pt), read only by the jobs of that label's chunk. A source stored as
# one file is read once per job; a folder source reads only the chunk's folders.


rule split_chunk:
    output:
        shards=directory(LAYOUT.chunks("shards")),
    log:
        LAYOUT.log("split/{chunk}"),
    benchmark:
        LAYOUT.benchmark("split/{chunk}")
    conda:
        "../../envs/wcgan.yaml"
    params:
        data=split_data_options(),
        labels=split_labels,
        # Not in the command: changes with the chunk's file list, and so reruns the job.
        data_fingerprint=split_fingerprint,
    shell:
        "wcgan split {params.data} --out-dir {output.shards} {params.labels} 2> {log}"


rule label_table:
    input:
        shards=per_chunk(LAYOUT.chunks("shards")),
    output:
        table=LAYOUT.labels_table,
    log:
        LAYOUT.log("label_table"),
    benchmark:
        LAYOUT.benchmark("label_table")
    conda:
        "../../envs/wcgan.yaml"
    params:
        shards=every_chunk("shards"),
    shell:
        "wcgan label-table --shards {params.shards} --out {output.table} 2> {log}"
