import dataclasses

import jsonschema
import pytest
import yaml

from conftest import REPO, default_config, merged
from wcgan.config import (
    RECIPES,
    TRAINING_SCHEMES,
    ClassifierConfig,
    DistributedConfig,
    TrainConfig,
    check_run_name,
    coerce_strings,
    config_schema,
    describe_schema_error,
    label_seed,
    scheduler_minutes,
)
from wcgan.errors import WcganError
from wcgan.labels import make_chunks, make_labels
from wcgan.scaling import scaling_points
from wcgan.sources import SOURCES, DataSpec

SCHEMA = config_schema()


def schema_error(config: dict) -> str:
    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(config), key=str)
    assert errors, "expected the schema to reject the config"
    return describe_schema_error(errors[0])


def test_every_config_file_validates():
    for path in sorted((REPO / "config").glob("*.yaml")):
        config = merged(default_config(), yaml.safe_load(path.read_text()))
        jsonschema.validate(config, SCHEMA)
        TrainConfig.from_mapping(config["train"])


def test_schema_mirrors_the_packages_options():
    train = SCHEMA["properties"]["train"]["properties"]
    assert set(train) == {f.name for f in dataclasses.fields(TrainConfig)}
    classifier = SCHEMA["properties"]["metrics"]["properties"]["classifier"]["properties"]
    assert set(classifier) == {f.name for f in dataclasses.fields(ClassifierConfig)}
    assert set(SCHEMA["properties"]["data"]["properties"]["source"]["enum"]) == set(SOURCES)
    assert set(SCHEMA["properties"]["train"]["properties"]["loss"]["enum"]) == set(RECIPES)
    assert set(RECIPES) == {"wgan-gp", "wgan-clip", "dcgan", "hinge"}
    assert SCHEMA["properties"]["train"]["properties"]["training"]["enum"] == list(TRAINING_SCHEMES)


# Each config section's dataclass, by where the section sits in the config.
SECTIONS = {
    ("data",): DataSpec,
    ("train",): TrainConfig,
    ("distributed",): DistributedConfig,
    ("metrics", "classifier"): ClassifierConfig,
}
# TrainConfig leaves the budget unset, which it refuses: a caller states the budget it means.
NO_DEFAULT = {("train",): {"iterations", "seconds"}}


@pytest.mark.parametrize("path", SECTIONS, ids=".".join)
def test_a_sections_options_take_their_defaults_and_help_from_the_schema(path):
    """The schema is the one place a default is written: each dataclass field (what `wcgan
    train` and the package run) has the schema's default and description, and the command's
    --help shows them."""
    schema = SCHEMA
    for name in path:
        schema = schema["properties"][name]
    fields = dataclasses.fields(SECTIONS[path])
    assert list(schema["properties"]) == [f.name for f in fields]
    for field in fields:
        spec = schema["properties"][field.name]
        expected = None if field.name in NO_DEFAULT.get(path, ()) else spec["default"]
        assert field.default == expected and type(field.default) is not list, field.name
        assert field.metadata["help"] == " ".join(spec["description"].split()), field.name


def test_every_key_but_the_runs_name_has_a_default_and_a_description():
    def keys(schema, prefix=()):
        for name, spec in schema.get("properties", {}).items():
            yield (*prefix, name), spec
            yield from keys(spec, (*prefix, name))

    for key, spec in keys(SCHEMA):
        assert spec.get("description"), ".".join(key)
        assert "default" in spec or key in {("run",), ("parent_run",)}, ".".join(key)
    assert yaml.safe_load((REPO / "config" / "config.yaml").read_text()) == {"run": "digits"}


def test_schema_errors_are_one_line_naming_the_key():
    config = default_config()
    config["train"]["foo"] = 1
    assert schema_error(config) == "config key 'train': unknown key 'foo'"
    config = default_config()
    config["train"]["lr"] = "fast"
    assert schema_error(config).startswith("config key 'train.lr': 'fast' is not of type")
    config = default_config()
    config["data"]["source"] = "mnist"
    assert schema_error(config).startswith("config key 'data.source': 'mnist' is not one of")
    config = default_config()
    config["train"]["training"] = "one-stage"
    assert schema_error(config).startswith("config key 'train.training': 'one-stage' is not one of")
    config = default_config()
    del config["run"]
    assert schema_error(config) == "config: 'run' is a required property"
    config = default_config()
    config["data"]["resolution"] = 28
    assert schema_error(config).startswith("config key 'data.resolution': 28 is not one of")
    assert "\n" not in schema_error(config)


def test_recipes_fill_what_the_config_leaves_unset():
    gp = TrainConfig(iterations=1).effective()
    assert (gp["optimizer"], gp["lr"], gp["betas"], gp["critic_steps"], gp["gp_weight"]) == (
        "adam", 1e-4, (0.0, 0.9), 5, 10.0,
    )  # fmt: skip
    clip = TrainConfig(loss="wgan-clip", iterations=1).effective()
    assert (clip["optimizer"], clip["lr"], clip["betas"], clip["clip_value"]) == ("rmsprop", 5e-5, None, 0.01)
    assert TrainConfig(iterations=1, lr=3e-4, critic_steps=1).effective()["lr"] == 3e-4
    dcgan = TrainConfig(loss="dcgan", iterations=1).effective()
    assert (dcgan["optimizer"], dcgan["lr"], dcgan["betas"], dcgan["critic_steps"]) == (
        "adam", 2e-4, (0.5, 0.999), 1,
    )  # fmt: skip
    hinge = TrainConfig(loss="hinge", iterations=1).effective()
    assert (hinge["optimizer"], hinge["lr"], hinge["betas"], hinge["critic_steps"]) == (
        "adam", 2e-4, (0.0, 0.9), 5,
    )  # fmt: skip
    assert gp["training"] == "two_stage"


@pytest.mark.parametrize("loss", sorted(RECIPES))
def test_one_stage_accepts_every_loss(loss):
    TrainConfig(loss=loss, training="one_stage", iterations=1, critic_steps=3).check()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"loss": "lsgan", "iterations": 1}, "train.loss 'lsgan' is unknown"),
        ({"training": "one-stage", "iterations": 1}, "train.training 'one-stage' is unknown"),
        (
            {"loss": "dcgan", "gp_weight": 10.0, "iterations": 1},
            "train.gp_weight does not apply to loss 'dcgan'",
        ),
        (
            {"loss": "hinge", "clip_value": 0.1, "iterations": 1},
            "train.clip_value does not apply to loss 'hinge'",
        ),
        (
            {"loss": "wgan-clip", "gp_weight": 5.0, "iterations": 1},
            "train.gp_weight does not apply to loss 'wgan-clip'",
        ),
        ({"clip_value": 0.1, "iterations": 1}, "train.clip_value does not apply to loss 'wgan-gp'"),
        (
            {"loss": "wgan-clip", "betas": [0.5, 0.9], "iterations": 1},
            "train.betas applies only to optimizer adam",
        ),
        ({}, "both unset: a label needs a budget"),
        ({"iterations": 0}, "train.iterations must be positive, got 0"),
        ({"seconds": -5}, "train.seconds must be positive, got -5"),
        ({"iterations": 1, "speed": 3}, "train.speed is not an option of train"),
        ({"iterations": 1, "device": "tpu"}, "train.device 'tpu'"),
    ],
)
def test_bad_training_options(values, message):
    with pytest.raises(WcganError, match=message.replace(".", r"\.").replace("(", r"\(")):
        TrainConfig.from_mapping(values)


def test_scheduler_minutes_follow_the_budget():
    assert scheduler_minutes(TrainConfig(seconds=600), margin_minutes=5, fallback_minutes=60) == 15
    assert scheduler_minutes(TrainConfig(seconds=61), margin_minutes=0, fallback_minutes=60) == 2
    assert scheduler_minutes(TrainConfig(iterations=10), margin_minutes=5, fallback_minutes=60) == 60
    # Without a seconds budget, a chunk of K labels gets K labels' time.
    assert scheduler_minutes(TrainConfig(iterations=10), 5, fallback_minutes=60, labels=4) == 240
    assert scheduler_minutes(TrainConfig(seconds=600), 5, fallback_minutes=60, labels=4) == 15


def test_label_seeds_are_stable_and_distinct():
    assert label_seed(0, "cat") == label_seed(0, "cat")
    assert len({label_seed(0, "cat"), label_seed(0, "dog"), label_seed(1, "cat")}) == 3


def test_envs_pin_what_pyproject_pins():
    pyproject = (REPO / "pyproject.toml").read_text()
    env = yaml.safe_load((REPO / "envs" / "wcgan.yaml").read_text())
    pins = [d for d in env["dependencies"][-1]["pip"] if "==" in d]
    assert len(pins) >= 10 and all(f'"{pin}"' in pyproject for pin in pins)


def test_strings_from_snakemakes_nested_config_option_are_coerced():
    config = merged(
        default_config(),
        {"train": {"iterations": "150", "seconds": "2.5", "lr": "null", "betas": ["0", "0.9"]}},
    )
    config["data"]["download"] = "true"
    config["data"]["root"] = "150"  # a string where the schema wants one stays a string
    config["run"] = "7"
    coerced = coerce_strings(config, SCHEMA)
    jsonschema.validate(coerced, SCHEMA)
    assert coerced["train"]["iterations"] == 150 and coerced["train"]["seconds"] == 2.5
    assert coerced["train"]["lr"] is None and coerced["train"]["betas"] == [0.0, 0.9]
    assert coerced["data"]["download"] is True and coerced["data"]["root"] == "150" and coerced["run"] == "7"
    assert coerce_strings({"train": {"iterations": "many"}}, SCHEMA)["train"]["iterations"] == "many"
    # A count written 5.0 becomes 5 (the jobs would fail on it, the schema would not); 5.5 stays
    # for the schema to refuse; a float where a number is wanted stays a float.
    written = coerce_strings({"train": {"iterations": 5.0, "batch_size": 5.5, "seconds": 2.0}}, SCHEMA)[
        "train"
    ]
    assert written == {"iterations": 5, "batch_size": 5.5, "seconds": 2.0}
    assert type(written["iterations"]) is int and type(written["seconds"]) is float


def test_the_report_dependency_is_declared():
    """`snakemake --report` needs pygments but snakemake does not require it; a plain install
    (README command 1, no test extras) must still make the report."""
    from importlib.metadata import requires

    assert any(r.startswith("pygments==") for r in requires("wcgan"))


def numeric_bounds(schema: dict, path: tuple[str, ...] = ()):
    """(path, keyword, bound) of every numeric bound in ``schema``; '[]' is an array's items and
    '*' an open mapping's values."""
    for keyword in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        if keyword in schema:
            yield path, keyword, schema[keyword]
    for name, sub in schema.get("properties", {}).items():
        yield from numeric_bounds(sub, (*path, name))
    if isinstance(schema.get("items"), dict):
        yield from numeric_bounds(schema["items"], (*path, "[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        yield from numeric_bounds(schema["additionalProperties"], (*path, "*"))


def build_train(config: dict) -> None:
    """What a training job builds from the train section: the options, then both optimizers."""
    import torch

    from wcgan.losses import make_optimizer

    effective = TrainConfig.from_mapping(config["train"]).effective()
    make_optimizer(effective["optimizer"], [torch.zeros(1)], effective["lr"], effective.get("betas"))


def build_classifier(config: dict) -> None:
    import torch

    classifier = ClassifierConfig.from_mapping(config["metrics"]["classifier"])
    torch.optim.Adam([torch.zeros(1)], lr=classifier.lr)


# Where the package itself checks a key's value; the schema must draw the same line.
CODE_CHECKS = {
    ("data",): lambda c: DataSpec.from_mapping(c["data"]),
    ("train",): build_train,
    ("distributed",): lambda c: DistributedConfig.from_mapping(c["distributed"]),
    ("metrics", "classifier"): build_classifier,
    ("scaling", "series", "*", "max_jobs"): lambda c: scaling_points(c["scaling"]["series"]["s"]["max_jobs"]),
    ("labels_per_job",): lambda c: make_chunks(make_labels(["a", "b", "c"]), c["labels_per_job"]),
}
# Keys the workflow passes on as command options or Snakemake resources, unchecked after the
# schema: their bounds are the schema's alone.
SCHEMA_ONLY = {
    ("sampling",), ("metrics", "max_real_per_label"), ("metrics", "prc_max_images"),
    ("metrics", "overall_per_label"), ("figures",), ("resources",),
    ("scaling", "iterations"), ("scaling", "projection_jobs"), ("compare",),
}  # fmt: skip
# A key whose boundary needs other keys to make sense (a loss option needs its loss).
CONTEXT = {("train", "clip_value"): {"loss": "wgan-clip"}}


def with_value(config: dict, path: tuple[str, ...], value: float) -> dict:
    """``config`` with the key at ``path`` set to ``value`` (both entries of an array)."""
    config = merged(config, {})
    if path[:3] == ("scaling", "series", "*"):
        config["scaling"]["series"] = {"s": {path[3]: value, "snakemake_args": []}}
        return config
    *parents, key = path[:-1] if path[-1] == "[]" else path
    section = config
    for name in parents:
        section = section[name]
    section[key] = [value, value] if path[-1] == "[]" else value
    if path[:1] == ("train",):
        config["train"].update(CONTEXT.get(path[:2], {}))
    return config


def find_schema(path: tuple[str, ...]) -> dict:
    schema = SCHEMA
    for name in path:
        nested = {"[]": schema.get("items"), "*": schema.get("additionalProperties")}.get(name)
        schema = nested or schema["properties"][name]
    return schema


def test_every_schema_bound_is_checked_by_the_code_or_by_the_schema_alone():
    for path, _, _ in numeric_bounds(SCHEMA):
        owners = [p for p in (*CODE_CHECKS, *SCHEMA_ONLY) if path[: len(p)] == p]
        assert owners, f"bound of {'.'.join(path)} is neither in CODE_CHECKS nor in SCHEMA_ONLY"


@pytest.mark.parametrize(
    ("path", "keyword", "bound"),
    [b for b in numeric_bounds(SCHEMA) if any(b[0][: len(p)] == p for p in CODE_CHECKS)],
    ids=lambda v: ".".join(v) if isinstance(v, tuple) else str(v),
)
def test_schema_bounds_accept_and_refuse_what_the_code_does(path, keyword, bound):
    integer = "integer" in str(find_schema(path).get("type"))
    step = 1 if integer else 1e-6
    beyond = {"minimum": -step, "exclusiveMinimum": 0, "maximum": step, "exclusiveMaximum": 0}[keyword]
    within = {"minimum": 0, "exclusiveMinimum": step, "maximum": 0, "exclusiveMaximum": -step}[keyword]
    check = next(c for p, c in CODE_CHECKS.items() if path[: len(p)] == p)
    for value, expected in ((bound + within, True), (bound + beyond, False)):
        config = with_value(default_config(), path, value)
        schema_accepts = not list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(config))
        try:
            check(config)
            code_accepts = True
        except (WcganError, ValueError):
            code_accepts = False
        where = f"{'.'.join(path)} = {value}"
        assert schema_accepts == expected, f"schema: {where}"
        assert code_accepts == expected, f"code: {where}"


@pytest.mark.parametrize(
    ("run", "parent", "message"),
    [
        ("digits", None, None),
        ("digits/compare/wgan-gp-s0", "digits", None),
        ("digits/scaling/local/n4", "digits", None),
        ("digits/compare/wgan-gp-s0", None, "a run name has no '/'"),
        ("digits/scaling/local/n1", None, "a run name has no '/'"),
        (
            "other/compare/wgan-gp-s0",
            "digits",
            "not a compare variant or scaling point of parent_run 'digits'",
        ),
        ("digits/models", "digits", "not a compare variant or scaling point"),
    ],
)
def test_only_compare_variants_and_scaling_points_live_inside_another_run(run, parent, message):
    if message is None:
        check_run_name(run, parent)
    else:
        with pytest.raises(WcganError, match=message):
            check_run_name(run, parent)
