"""Several generators side by side, fed the same noise and the same labels: one picture, a column each.

Every column draws the same cells. A conditional generator's rows are its classes in label order,
every row holding the same ``per_cell`` noise vectors (a cell's place in its row is one "style"
across classes and columns); an unconditional generator's rows are ``rows`` groups of ``per_cell``
noise vectors. The noise is drawn once per picture from a fixed seed, at the widest noise size among
the columns, and a generator whose noise has d coordinates takes the first d, as an ensemble's mean
feeds its members (``genopt.ensemble.generator``). So two columns of one noise size see the very same
vectors and labels, and every difference between them is the generators'.

What to draw and how each column is headed (a study's trials, an export and its members) is
``genopt.report.compare``'s; this module only draws.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from genopt.errors import GenoptError
from genopt.grid import GRID_NOISE_SEED
from genopt.models import Generator

# Images per cell and, for an unconditional generator, rows: a few dozen samples per generator.
PER_CELL = 4
GAN_ROWS = 8
FONT_SIZE = 13
# Pixels between images in a cell, between rows, and between columns.
IMAGE_GAP, ROW_GAP, COLUMN_GAP, MARGIN = 2, 6, 16, 10
TEXT, BACKGROUND, GREY = (34, 34, 34), (255, 255, 255), (128, 128, 128)

Draw = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass(frozen=True)
class Column:
    """One column of a comparison.

    Attributes:
        name: what the column is in an error, e.g. ``"trial 3"``.
        heading: its lines of text above the images: its name, scores and key parameters.
        draw: ``(noise (N, noise_dim), labels (N,) or None) -> images (N, C, H, W) in [0, 1]``.
        noise_dim: the noise coordinates ``draw`` takes.
        image_shape: its images' (C, H, W).
        num_classes: its classes; 0 for an unconditional generator.
    """

    name: str
    heading: tuple[str, ...]
    draw: Draw
    noise_dim: int
    image_shape: tuple[int, int, int]
    num_classes: int


def generator_column(generator: Generator, *, name: str, heading: Sequence[str]) -> Column:
    """A column drawn by one genopt generator (its images in [-1, 1] are shown in [0, 1])."""
    config = generator.config

    @torch.no_grad()
    def draw(noise: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        was_training = generator.training
        generator.eval()
        device = next(generator.parameters()).device
        y = labels.to(device) if labels is not None else None
        images = generator(noise.to(device), y).float().cpu()
        generator.train(was_training)
        return (images + 1) / 2

    return Column(name, tuple(heading), draw, config.noise_dim, tuple(config.image_shape), config.num_classes)


@dataclass
class Comparison:
    """A drawn comparison: the picture and where each cell lies in it.

    Attributes:
        image: the RGB picture.
        cells: ``cells[row][column]``, the (left, top, right, bottom) box of one cell's images.
        row_names: each row's label (class names, or empty for an unconditional generator).
        headings: each column's heading, left to right.
    """

    image: Image.Image
    cells: list[list[tuple[int, int, int, int]]] = field(default_factory=list)
    row_names: tuple[str, ...] = ()
    headings: tuple[tuple[str, ...], ...] = ()

    def png(self) -> bytes:
        """The picture as PNG bytes."""
        buffer = io.BytesIO()
        self.image.save(buffer, format="png")
        return buffer.getvalue()


def check_columns(columns: Sequence[Column]) -> None:
    """Refuse columns that cannot share cells: every one must draw one image shape and class count.

    Raises:
        GenoptError: no column, or one whose images or classes differ from the first's.
    """
    if not columns:
        raise GenoptError("nothing to compare: name at least one trial or an export")
    first = columns[0]
    for column in columns[1:]:
        if (column.image_shape, column.num_classes) != (first.image_shape, first.num_classes):
            raise GenoptError(
                f"{column.name} draws {_shape(column)} but {first.name} draws {_shape(first)}: "
                "compare generators of one image shape and one set of classes"
            )


def draw_comparison(
    columns: Sequence[Column],
    *,
    row_names: Sequence[str] = (),
    per_cell: int = PER_CELL,
    rows: int = GAN_ROWS,
    seed: int = GRID_NOISE_SEED,
) -> Comparison:
    """Draw ``columns`` side by side from one noise draw (see the module's docstring).

    Args:
        columns: what to draw, left to right; all of one image shape and class count.
        row_names: a conditional generator's class names in label order (default their indices).
        per_cell: images per cell, the same noise vectors in every column.
        rows: an unconditional generator's rows (a conditional one has one per class).
        seed: the noise seed; the same seed draws the same picture.

    Raises:
        GenoptError: columns that differ in image shape or classes, or a bad ``per_cell``/``rows``.
    """
    check_columns(columns)
    if per_cell < 1 or rows < 1:
        raise GenoptError(
            f"a comparison needs at least one image per cell and one row, got {per_cell}, {rows}"
        )
    classes = columns[0].num_classes
    noise_dim = max(c.noise_dim for c in columns)
    rng = torch.Generator("cpu").manual_seed(seed)
    if classes:
        n_rows = classes
        noise = torch.randn(per_cell, noise_dim, generator=rng).repeat(n_rows, 1)
        labels = torch.arange(n_rows).repeat_interleave(per_cell)
        names = tuple(row_names) if len(row_names) == classes else tuple(str(k) for k in range(classes))
    else:
        n_rows = rows
        noise = torch.randn(n_rows * per_cell, noise_dim, generator=rng)
        labels, names = None, ()
    images = [_pixels(c.draw(noise[:, : c.noise_dim], labels), columns[0].image_shape) for c in columns]
    return _compose(columns, images, names, n_rows, per_cell)


def _pixels(images: torch.Tensor, shape: tuple[int, int, int]) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> (N, H', W', 3) uint8, scaled up for small images, grey as RGB."""
    images = images.detach().float().cpu().nan_to_num(0.5).clamp(0, 1)  # a diverged generator: grey
    scale = _scale(shape)
    if scale > 1:
        images = F.interpolate(images, scale_factor=scale, mode="nearest")
    images = images.repeat(1, 3, 1, 1) if images.shape[1] == 1 else images[:, :3]
    return (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _scale(shape: tuple[int, int, int]) -> int:
    """Small images drawn larger, nearest-neighbour: 28 pixels twice as large, 64 as they are."""
    return max(1, min(4, 64 // shape[1]))


def _compose(
    columns: Sequence[Column], images: list[np.ndarray], names: tuple[str, ...], n_rows: int, per_cell: int
) -> Comparison:
    font = _font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def width(text: str) -> int:
        return int(measure.textlength(text, font=font))

    line = FONT_SIZE + 4
    h, w = images[0].shape[1:3]
    cell_w = per_cell * w + (per_cell - 1) * IMAGE_GAP
    widths = [max(cell_w, *(width(t) for t in c.heading)) if c.heading else cell_w for c in columns]
    label_w = max((width(n) for n in names), default=0)
    left = MARGIN + (label_w + COLUMN_GAP // 2 if label_w else 0)
    top = MARGIN + line * max(len(c.heading) for c in columns) + ROW_GAP
    total_w = left + sum(widths) + COLUMN_GAP * (len(columns) - 1) + MARGIN
    total_h = top + n_rows * h + (n_rows - 1) * ROW_GAP + MARGIN
    canvas = np.full((total_h, total_w, 3), BACKGROUND, dtype=np.uint8)

    cells: list[list[tuple[int, int, int, int]]] = [[] for _ in range(n_rows)]
    x = left
    for pixels, column_w in zip(images, widths, strict=True):
        for row in range(n_rows):
            y = top + row * (h + ROW_GAP)
            for k in range(per_cell):
                x0 = x + k * (w + IMAGE_GAP)
                canvas[y : y + h, x0 : x0 + w] = pixels[row * per_cell + k]
            cells[row].append((x, y, x + cell_w, y + h))
        x += column_w + COLUMN_GAP

    picture = Image.fromarray(canvas, "RGB")
    draw = ImageDraw.Draw(picture)
    x = left
    for column, column_w in zip(columns, widths, strict=True):
        for i, text in enumerate(column.heading):
            draw.text((x, MARGIN + i * line), text, fill=TEXT if i == 0 else GREY, font=font)
        x += column_w + COLUMN_GAP
    for row, name in enumerate(names):
        y = top + row * (h + ROW_GAP) + (h - FONT_SIZE) // 2
        draw.text((MARGIN, y), name, fill=GREY, font=font)
    return Comparison(picture, cells, names, tuple(c.heading for c in columns))


def placeholder(text: str) -> Comparison:
    """A picture holding one line of ``text``: what stands in before any trial has finished."""
    font = _font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    size = (int(measure.textlength(text, font=font)) + 2 * MARGIN, FONT_SIZE + 2 * MARGIN)
    picture = Image.new("RGB", size, BACKGROUND)
    ImageDraw.Draw(picture).text((MARGIN, MARGIN), text, fill=GREY, font=font)
    return Comparison(picture)


def _font():
    """Pillow's own scalable font (no font file to find); its fixed bitmap font before Pillow 10.1."""
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except TypeError:
        return ImageFont.load_default()


def _shape(column: Column) -> str:
    c, h, w = column.image_shape
    kind = f"{column.num_classes} classes" if column.num_classes else "no classes"
    return f"{c}x{h}x{w} images with {kind}"
