"""Vision inputs from an image directory (ImageFolder layout: one subdirectory per class), checked and decoded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".ppm", ".tif", ".tiff", ".webp")


def image_files(root: str | Path) -> list[Path]:
    """Every image file (by IMAGE_SUFFIXES, any case) below `root`, sorted; ValueError for a path that is not a
    directory or holds no image."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"image directory {str(root)!r} is not a directory")
    files = sorted(path for path in root.rglob("*") if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{root} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    return files


def labelled_images(root: str | Path) -> list[tuple[Path, str]]:
    """(image, class name) for every image of an ImageFolder directory: the class is the name of the subdirectory
    of `root` that holds it. ValueError for images directly in `root` or no image at all."""
    root = Path(root)
    files = image_files(root)
    loose = [path for path in files if path.parent == root]
    if loose:
        raise ValueError(f"{loose[0]} is not in a class subdirectory of {root} (ImageFolder: {root}/<class>/<image>)")
    return [(path, path.relative_to(root).parts[0]) for path in files]


def load_images(paths: list[Path]) -> list[Any]:
    """The images as RGB PIL images; ValueError naming the first file that does not decode."""
    from PIL import Image, UnidentifiedImageError

    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise ValueError(f"{path} cannot be read as an image: {err}") from None
    return images


def pixel_values(processor: Any, paths: list[Path]) -> torch.Tensor:
    """(len(paths), channels, height, width) float32: the images through the checkpoint's image processor."""
    return processor(images=load_images(paths), return_tensors="pt")["pixel_values"].float()
