"""Read dataset images from a directory or straight from a .zip archive (e.g. COCO's val2017.zip).

An :class:`ImageSource` is cheap to construct and safe to use from DataLoader
workers: a zip archive is opened lazily, once per process.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

from PIL import Image, ImageFile

# A truncated JPEG must be an error, not a silently half-grey image.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class BadImageError(ValueError):
    """An image that cannot be read; the message names the file."""


def to_rgb(img: Image.Image) -> Image.Image:
    """Grayscale, CMYK, palette and alpha images become RGB (alpha composited on white)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.split()[-1])
        return bg
    return img.convert("RGB")


class ImageSource:
    """Images addressed by file name inside a directory or a zip archive."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.is_zip = self.root.suffix.lower() == ".zip"
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid: int | None = None
        self._members: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"ImageSource({str(self.root)!r})"

    def exists(self) -> bool:
        return self.root.exists()

    # -- zip handling -----------------------------------------------------------
    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip = zipfile.ZipFile(self.root)
            self._zip_pid = os.getpid()
            # COCO's val2017.zip stores "val2017/000000000139.jpg": index by base name too
            members = {}
            for name in self._zip.namelist():
                if not name.endswith("/"):
                    members.setdefault(name, name)
                    members.setdefault(name.rsplit("/", 1)[-1], name)
            self._members = members
        return self._zip

    def names(self) -> set[str]:
        """Every file name available (base names for zip archives)."""
        if self.is_zip:
            self._archive()
            return set(self._members)
        return {p.name for p in self.root.iterdir() if p.is_file()}

    def has(self, name: str) -> bool:
        if self.is_zip:
            self._archive()
            return name in self._members
        return (self.root / name).is_file()

    def read_bytes(self, name: str) -> bytes:
        try:
            if self.is_zip:
                zf = self._archive()
                member = self._members.get(name)
                if member is None:
                    raise FileNotFoundError(name)
                return zf.read(member)
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            raise BadImageError(f"image file missing: {name} (looked in {self.root})") from None

    def open(self, name: str) -> Image.Image:
        """The image as RGB; raise :class:`BadImageError` naming the file when it is missing or corrupt."""
        return decode_image(self.read_bytes(name), f"{self.root}/{name}")


def decode_image(data: bytes, label: str) -> Image.Image:
    """Fully decode image bytes to RGB (so truncation is caught here, not later)."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as e:  # PIL raises several types for corrupt data
        raise BadImageError(f"corrupt or truncated image: {label} ({type(e).__name__}: {e})") from None
    return to_rgb(img)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
