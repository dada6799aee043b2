import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from wcgan import figures
from wcgan.figures import plot_label_scores, plot_losses, save_grid, save_merged_grid, tile


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
