import pandas as pd
import torch
from PIL import Image

from wcgan.figures import plot_label_scores, plot_losses, save_grid, save_merged_grid, tile


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
    save_merged_grid(
        [("zero", images[:5]), ("a long label name", images[:3])], tmp_path / "merged.png", "title"
    )
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
