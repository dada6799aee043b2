from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from wcgan import figures
from wcgan.figures import plot_label_scores, plot_losses, plot_ranked_grids, save_grid, save_merged_grid, tile


@pytest.fixture
def drawn(monkeypatch) -> list[plt.Figure]:
    """The figures the functions under test save, to read back what they name."""
    figures_saved = []
    save = figures._save_figure

    def keep(fig, path):
        figures_saved.append(fig)
        save(fig, path)

    monkeypatch.setattr(figures, "_save_figure", keep)
    return figures_saved


def test_tile_places_images_in_rows():
    images = torch.stack([torch.full((1, 2, 2), v, dtype=torch.uint8) for v in (10, 20, 30)])
    mosaic = tile(images, columns=2, padding=1)
    assert mosaic.shape == (7, 7, 3)
    assert mosaic[1, 1, 0] == 10 and mosaic[1, 4, 0] == 20 and mosaic[4, 1, 0] == 30
    assert mosaic[4, 4, 0] == 255  # the empty cell stays white
    assert tile(images, columns=8, padding=1).shape == (4, 10, 3)  # a short row is only as wide as it is


def test_grids_enlarge_tiny_images(tmp_path):
    images = torch.randint(0, 255, (16, 1, 8, 8), dtype=torch.uint8)
    save_grid(images, tmp_path / "grid.png", columns=4)
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.width >= 4 * 48
    save_merged_grid([("zero", images[:5]), ("a long label name", images[:3])], tmp_path / "merged.png")
    assert (tmp_path / "merged.png").stat().st_size > 0


def test_loss_and_score_plots(tmp_path):
    frame = pd.DataFrame(
        {
            "iteration": range(1, 11),
            "wasserstein": range(10),
            "generator_loss": range(10),
            "seconds": range(10),
        }
    )
    plot_losses([("a", frame), ("b", frame)], tmp_path / "losses.png")
    table = pd.DataFrame(
        {
            "scope": ["overall", "label", "label"],
            "label": [None, "a", "b"],
            "fid": [1.0, 2.0, 3.0],
            "extractor": ["wcgan-classifier"] * 3,
        }
    )
    plot_label_scores(table, tmp_path / "fid.png")
    assert (tmp_path / "losses.png").stat().st_size > 0 and (tmp_path / "fid.png").stat().st_size > 0


def test_merged_grid_shows_at_most_the_cap_spread_over_the_labels(tmp_path, drawn):
    samples = torch.randint(0, 255, (300, 4, 1, 8, 8), dtype=torch.uint8)
    rows = [(f"label {i:03d}", samples[i]) for i in range(300)]
    save_merged_grid(rows, tmp_path / "capped.png", max_labels=50)
    save_merged_grid(rows[:50], tmp_path / "fifty.png", max_labels=50)
    with Image.open(tmp_path / "capped.png") as capped, Image.open(tmp_path / "fifty.png") as fifty:
        assert capped.height == fifty.height  # all 300 rows would make it six times as tall
    capped_figure = drawn[0]
    shown = [int(tick.get_text().split()[1]) for tick in capped_figure.axes[0].get_yticklabels()]
    assert len(shown) == 50 and shown[0] == 0 and shown[-1] == 299
    assert max(np.diff(shown)) <= 7  # evenly spread, not the first 50
    assert "50 of 300 labels" in capped_figure.get_suptitle()
    assert "of" not in drawn[1].get_suptitle()  # every label shown: nothing to say


def loss_history(iterations: int, offset: float = 0.0, diverging: bool = False) -> pd.DataFrame:
    steps = np.arange(1, iterations + 1)
    wasserstein = 2 * np.exp(-steps / 50) + 0.3 + offset + (steps / 50 if diverging else 0)
    return pd.DataFrame(
        {
            "iteration": steps,
            "seconds": steps * 0.01,
            "critic_loss": -wasserstein,
            "wasserstein": wasserstein,
            "penalty": 0.01,
            "generator_loss": wasserstein - 1,
        }
    )


def test_loss_figure_names_and_draws_the_diverging_label(tmp_path, drawn):
    # 300 labels, some runs shorter (interrupted, resumed later): label 123 diverges before its
    # run ends at 150; label 299 merely stopped at iteration 60, where every label's estimate is
    # still high, so it must not count as bad.
    histories = [
        (f"label {i:03d}", loss_history(150 if i % 4 == 0 else 200, offset=0.01 * (i % 7 - 3)))
        for i in range(299)
    ]
    histories[123] = ("label 123", loss_history(150, diverging=True))
    histories.append(("label 299", loss_history(60)))
    plot_losses(histories, tmp_path / "losses.png")
    wasserstein_panel = drawn[0].axes[0]
    legend = [text.get_text() for text in wasserstein_panel.get_legend().get_texts()]
    assert legend[:2] == ["10-90 % of labels", "median over labels"]
    assert legend[2].startswith("worst 1: label 123 ") and len(legend) == 2 + figures.WORST_DRAWN
    assert not any("label 299" in text for text in legend)
    (worst_curve,) = [line for line in wasserstein_panel.get_lines() if line.get_label() == legend[2]]
    assert np.nanmax(worst_curve.get_ydata()) > 3  # its own diverging curve, not the median's
    assert "worst: Wasserstein estimate" in drawn[0].get_suptitle()


def test_labels_line_up_by_iteration_not_by_row():
    longer, shorter = loss_history(200), loss_history(100)
    longer["wasserstein"], shorter["wasserstein"] = 0.0, 1.0
    middles, means = figures.iteration_means([("long", longer), ("short", shorter)], "wasserstein", spans=10)
    assert np.allclose(middles, np.arange(10) * 20 + 10.5)
    assert np.array_equal(means[0], np.zeros(10))
    assert np.array_equal(means[1, :5], np.ones(5)) and np.isnan(means[1, 5:]).all()


def test_few_labels_keep_their_own_curves(tmp_path, drawn):
    histories = [(f"label {i}", loss_history(100, offset=0.01 * i)) for i in range(4)]
    histories[2] = ("label 2", loss_history(100, diverging=True))
    plot_losses(histories, tmp_path / "losses.png")
    legend = [text.get_text() for text in drawn[0].axes[0].get_legend().get_texts()]
    assert legend == ["label 0", "label 1", "label 2 (worst)", "label 3"]


def label_scores(fids: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "scope": ["overall"] + ["label"] * len(fids),
            "label": [None] + [f"label {i:03d}" for i in range(len(fids))],
            "fid": np.concatenate([[20.0], fids]),
            "extractor": "wcgan-classifier",
        }
    )


def test_fid_figure_names_the_highest_fids(tmp_path, drawn):
    fids = np.random.default_rng(0).gamma(4, 5, 300)
    fids[[17, 150, 298]] = [300.0, 90.0, 120.0]
    fids[42] = np.nan  # a label without a score
    plot_label_scores(label_scores(fids), tmp_path / "fid.png")
    axis = drawn[0].axes[0]
    named = [text.get_text().split(":")[0] for text in axis.texts]
    highest = [f"label {i:03d}" for i in np.argsort(-np.nan_to_num(fids, nan=-1))[: figures.WORST_NAMED]]
    assert named == highest and named[:3] == ["label 017", "label 298", "label 150"]
    assert not any(tick.get_text().startswith("label") for tick in axis.get_xticklabels())
    legend = [text.get_text() for text in axis.get_legend().get_texts()]
    assert legend == [f"median over labels: {np.nanmedian(fids):.3g}", "all labels merged: 20"]
    assert "1 labels without a value" in axis.get_title()


def test_fid_figure_names_few_labels_on_the_axis_worst_first(tmp_path, drawn):
    fids = np.array([5.0, 30.0, 10.0, 20.0])
    plot_label_scores(label_scores(fids), tmp_path / "fid.png")
    ticks = [tick.get_text() for tick in drawn[0].axes[0].get_xticklabels()]
    assert ticks == ["label 001", "label 003", "label 002", "label 000"]


def ranked_grids_run(tmp_path, fids: np.ndarray) -> tuple[pd.DataFrame, Path]:
    """The metrics table of ``fids`` and a folder of their labels' grids, label i's grid all
    pixels i % 256 in red and i // 256 in green, to tell from the figure which grid it shows."""
    grids = tmp_path / "grids"
    grids.mkdir(parents=True)
    table = label_scores(fids).assign(slug=lambda t: t["label"].str.replace(" ", "-"))
    for i, slug in enumerate(table["slug"].iloc[1:]):
        Image.new("RGB", (4, 4), (i % 256, i // 256, 0)).save(grids / f"{slug}.png")
    return table, grids


def shown_grids(figure: plt.Figure) -> list[tuple[str, int]]:
    """(title, label index of the grid drawn) of every panel that shows one, in order."""
    shown = []
    for axis in (axis for part in figure.subfigs for axis in part.axes if axis.images):
        red, green = axis.images[0].get_array()[0, 0, :2]
        shown.append((axis.get_title(), int(red) + 256 * int(green)))
    return shown


def test_ranked_grids_show_the_worst_and_best_labels_grids(tmp_path, drawn):
    fids = np.random.default_rng(1).gamma(4, 5, 300) + 1
    fids[[17, 150, 298]] = [300.0, 90.0, 120.0]
    fids[[5, 260]] = [0.5, 0.25]
    fids[42] = np.nan  # a label without a score
    table, grids = ranked_grids_run(tmp_path, fids)
    plot_ranked_grids(table, grids, tmp_path / "ranked.png", count=8)
    worst, best = np.argsort(-np.nan_to_num(fids, nan=-1))[:8], np.argsort(np.nan_to_num(fids, nan=1e9))[:8]
    ranks = [*zip(range(1, 9), worst, strict=True), *zip(range(299, 291, -1), best, strict=True)]
    assert shown_grids(drawn[0]) == [(f"{rank}. label {i:03d}: {fids[i]:.3g}", i) for rank, i in ranks]
    assert worst[:3].tolist() == [17, 298, 150] and best[:2].tolist() == [260, 5]
    titles = [part.get_suptitle() for part in drawn[0].subfigs]
    assert titles[0].startswith("the 8 worst of 299 labels by FID")
    assert "1 labels without a value" in titles[0] and titles[1] == "the 8 best, best first"
    # The figure does not grow with the labels: 17 labels make one just as large.
    plot_ranked_grids(*ranked_grids_run(tmp_path / "few", fids[:17]), tmp_path / "few.png", count=8)
    with Image.open(tmp_path / "ranked.png") as many, Image.open(tmp_path / "few.png") as few:
        assert many.size == few.size


def test_ranked_grids_of_few_labels_show_each_label_once_worst_first(tmp_path, drawn):
    fids = np.array([5.0, 30.0, 10.0, 20.0, 1.0])
    plot_ranked_grids(*ranked_grids_run(tmp_path, fids), tmp_path / "ranked.png", count=3)
    assert [index for _, index in shown_grids(drawn[0])] == [1, 3, 2, 0, 4]
    assert [part.get_suptitle() for part in drawn[0].subfigs] == [
        "every label by FID (wcgan-classifier), worst first"
    ]


def test_label_names_are_drawn_as_written(tmp_path, drawn):
    frame = pd.DataFrame({"iteration": range(1, 11), "wasserstein": range(10), "generator_loss": range(10)})
    names = ["$x^$", "cost $5 and $6", "_hidden"]
    plot_losses([(name, frame) for name in names], tmp_path / "losses.png")  # mathtext failed on "$x^$"
    (figure,) = drawn
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend == [f"{names[0]} (worst)", *names[1:]]  # "_hidden" too
    table = pd.DataFrame(
        {"scope": ["overall", *["label"] * 3], "label": [None, *names], "fid": [1.0, 2.0, 3.0, 4.0],
         "extractor": ["wcgan-classifier"] * 4}
    )  # fmt: skip
    plot_label_scores(table, tmp_path / "fid.png")
    assert (tmp_path / "fid.png").stat().st_size > 0


def test_the_merged_grid_leaves_room_for_long_label_names(tmp_path, drawn):
    images = torch.randint(0, 255, (2, 3, 1, 8, 8), dtype=torch.uint8)
    long = "n01440764 tench, Tinca tinca, a freshwater fish of the carp family" + " (Cyprinidae)" * 5
    save_merged_grid([("a", images[0]), (long, images[1])], tmp_path / "merged.png")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = drawn[0]
    renderer = FigureCanvasAgg(figure).get_renderer()
    ticks = figure.axes[0].get_yticklabels()
    assert all(tick.get_window_extent(renderer).x0 >= 0 for tick in ticks)  # nothing cut on the left
    shown = ticks[1].get_text()
    assert len(shown) == 60 and shown.startswith("n01440764 tench") and shown.endswith("(Cyprinidae)")


def test_log_axes_label_ticks_as_plain_numbers(tmp_path, drawn):
    # Label names turn math off everywhere; log ticks, typeset as math by default, then printed
    # their source ("$\mathdefault{10^{2}}$") instead of a number.
    curves = pd.DataFrame(
        {"scheme": "wgan-gp", "seed": 0, "device_seconds": [10.0, 20.0, 40.0], "fid": [500.0, 30.0, 2.0]}
    ).assign(extractor="classifier")
    figures.plot_compare_curves(curves, tmp_path / "curves.png")
    (axis,) = drawn[0].axes
    assert axis.get_yscale() == "log"
    drawn[0].canvas.draw()
    ticks = [t.get_text() for t in axis.get_yticklabels() + axis.get_yticklabels(minor=True) if t.get_text()]
    assert "100" in ticks and not [t for t in ticks if "$" in t or "mathdefault" in t]
