"""The run folder's paths: one object for the rules and the commands."""

from wcgan.layout import RunLayout


def test_a_per_label_run_keeps_a_folder_per_chunk_and_a_file_per_label():
    layout = RunLayout.of("digits")
    assert layout.chunks("shards") == "results/digits/shards/{chunk}"
    assert layout.trained("models") == "results/digits/models/{chunk}"
    assert layout.trained_file("training", "c000-004", "3") == "results/digits/training/c000-004/3.json"
    assert layout.chunk_file("samples", "c000-004", "3") == "results/digits/samples/c000-004/3.pt"
    assert layout.features("c000-004") == "results/digits/features/c000-004.pt"
    assert layout.checkpoints(layout.training_job) == "results/digits/checkpoints/{chunk}"
    assert layout.log("train/{chunk}") == "results/digits/logs/train/{chunk}.log"
    assert layout.benchmark("split/c000-004") == "results/digits/benchmarks/split/c000-004.tsv"
    assert (layout.labels_table, layout.classifier) == (
        "results/digits/labels.tsv",
        "results/digits/classifier/classifier.pt",
    )


def test_a_conditional_run_has_one_file_of_each_kind_for_every_label():
    layout = RunLayout.of_config({"run": "c/compare/cgan-s0", "train": {"generator": "conditional"}})
    assert layout.root == "results/c/compare/cgan-s0" and layout.training_job == "conditional"
    assert layout.trained("snapshots") == "results/c/compare/cgan-s0/snapshots/conditional.pt"
    assert layout.trained_file("models", "c000-004", "3") == layout.trained("models")
    # Samples stay per label, in their chunk's folder, whatever trained them.
    assert layout.chunk_file("samples", "c000-004", "3") == "results/c/compare/cgan-s0/samples/c000-004/3.pt"
