"""Read dataset images from a directory or straight from a .zip archive (e.g. COCO's val2017.zip).

An :class:`ImageSource` is cheap to construct and safe to use from DataLoader
workers: a zip archive is opened lazily, once per process.

Names are relative paths inside the root. A name that leaves the root (absolute, ``..``
past the top, or a symlink in the folder whose target lies outside it) is refused before
anything outside the root is opened: :meth:`ImageSource.has` is False for it and
:meth:`ImageSource.read_bytes` raises :class:`UnsafePathError`. Subfolders are fine.

In a zip archive a name is matched exactly first; failing that, a member whose path ends
with ``/<name>`` is used when exactly one does (COCO's val2017.zip stores
``val2017/000000000139.jpg`` while its captions say ``000000000139.jpg``). Two such
members make the name ambiguous (:class:`BadImageError` naming both).
"""

from __future__ import annotations

import io
import logging
import os
import posixpath
import warnings
import zipfile
from pathlib import Path

from PIL import Image, ImageFile, UnidentifiedImageError

from .hashing import sha256_stream

# A truncated JPEG must be an error, not a silently half-grey image.
ImageFile.LOAD_TRUNCATED_IMAGES = False

log = logging.getLogger(__name__)


class BadImageError(ValueError):
    """An image that cannot be read; the message names the file."""


class UnsafePathError(BadImageError):
    """An image name that leads outside the image root; nothing was opened."""


# ----------------------------------------------------------------------------- pixel modes
_UINT16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _scale_to_8bit(img: Image.Image) -> Image.Image:
    """A high-bit-depth single-channel image as 8-bit ``L``, by the rule of its mode.

    - ``I;16`` (any byte order): ``round(v / 257)``, so 0 -> 0 and 65535 -> 255.
    - ``I`` (32-bit signed): when every value is in [0, 65535] (how PIL loads 16-bit PNG/TIFF
      on some versions) the 16-bit rule; otherwise a min-max stretch of the image's own range
      to [0, 255] (a constant image becomes 0).
    - ``F`` (32-bit float): when every finite value is in [0, 1], ``round(v * 255)``;
      otherwise a min-max stretch of the finite values. NaN becomes 0; +-inf saturate.
    """
    import numpy as np

    a = np.asarray(img).astype(np.float64)
    if img.mode in _UINT16_MODES:
        a = a / 257.0
    else:
        finite = np.isfinite(a)
        lo, hi = (float(a[finite].min()), float(a[finite].max())) if finite.any() else (0.0, 0.0)
        if img.mode == "I" and lo >= 0 and hi <= 65535:
            a = a / 257.0
        elif img.mode == "F" and lo >= 0 and hi <= 1:
            a = a * 255.0
        elif hi > lo:
            a = (a - lo) / (hi - lo) * 255.0
        else:
            a = np.zeros_like(a)
        a = np.nan_to_num(a, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image as RGB.

    Grayscale, CMYK and palette images are converted; alpha (RGBA, LA, PA, palette with
    transparency) is composited on white; 16-bit, 32-bit integer and float images are first
    scaled to 8 bits by :func:`_scale_to_8bit` (a plain ``convert`` would clip them to white).
    """
    if img.mode == "RGB":
        return img
    if img.mode in _UINT16_MODES or img.mode in ("I", "F"):
        return _scale_to_8bit(img).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.split()[-1])
        return bg
    return img.convert("RGB")


# ----------------------------------------------------------------------------- names
def safe_relpath(name) -> str:
    """``name`` as a normalised relative POSIX path; :class:`UnsafePathError` if it leaves the root.

    ``sub/./a.jpg`` -> ``sub/a.jpg``; ``sub/../a.jpg`` -> ``a.jpg``; ``../a.jpg``,
    ``sub/../../a.jpg``, ``/abs/a.jpg``, ``C:/a.jpg`` and names with NUL bytes are refused.
    Only the string is inspected (symlinks are checked by :meth:`ImageSource.locate`).
    """
    if not isinstance(name, str) or not name:
        raise UnsafePathError(f"invalid image name {name!r}")
    if "\x00" in name:
        raise UnsafePathError(f"invalid image name {name!r} (NUL byte)")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":" and name[0].isalpha()):
        raise UnsafePathError(f"image path is absolute, not inside the image root: {name}")
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../"):
        raise UnsafePathError(f"image path leaves the image root: {name}")
    if norm == ".":
        raise UnsafePathError(f"invalid image name {name!r}")
    return norm


class ImageSource:
    """Images addressed by relative file name inside a directory or a zip archive."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.is_zip = self.root.suffix.lower() == ".zip"
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid: int | None = None
        self._members: set[str] | None = None
        self._by_suffix: dict[str, list[str]] | None = None
        self._real_root: str | None = None

    def __repr__(self) -> str:
        return f"ImageSource({str(self.root)!r})"

    def exists(self) -> bool:
        return self.root.exists()

    def check(self) -> None:
        """Raise :class:`BadImageError` unless the root is a directory or a readable zip archive."""
        if self.is_zip:
            self._archive()
        elif not self.root.is_dir():
            raise BadImageError(f"image root is not a directory or a .zip archive: {self.root}")

    # -- zip handling -----------------------------------------------------------
    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip_pid != os.getpid():
            try:
                self._zip = zipfile.ZipFile(self.root)
            except (zipfile.BadZipFile, OSError) as e:
                raise BadImageError(f"cannot read zip archive {self.root} ({type(e).__name__}: {e})") from None
            self._zip_pid = os.getpid()
            members, by_suffix = set(), {}
            for name in self._zip.namelist():
                if name.endswith("/"):
                    continue
                members.add(name)
                parts = name.split("/")
                for i in range(1, len(parts)):
                    by_suffix.setdefault("/".join(parts[i:]), []).append(name)
            self._members, self._by_suffix = members, by_suffix
        return self._zip

    # -- lookup -----------------------------------------------------------------
    def _inside_root(self, rel: str) -> bool:
        """Whether root/rel, with every symlink followed, is still under the root (nothing is opened)."""
        if self._real_root is None:
            self._real_root = os.path.realpath(self.root)
        real = os.path.realpath(os.path.join(self._real_root, rel))
        return real == self._real_root or real.startswith(self._real_root.rstrip(os.sep) + os.sep)

    def locate(self, name: str) -> str:
        """The zip member or relative path ``name`` refers to.

        Raises :class:`UnsafePathError` (leaves the root), or :class:`BadImageError` when the file
        is missing or (zip) the name matches several members.
        """
        rel = safe_relpath(name)
        if self.is_zip:
            self._archive()
            if rel in self._members:
                return rel
            hits = self._by_suffix.get(rel, [])
            if len(hits) == 1:
                return hits[0]
            if hits:
                raise BadImageError(
                    f"ambiguous image name {name}: matches {len(hits)} members of "
                    f"{self.root}: {', '.join(sorted(hits))}"
                )
            raise BadImageError(f"image file missing: {name} (looked in {self.root})")
        if not self._inside_root(rel):
            raise UnsafePathError(f"image path leaves the image root (symlink?): {name} (root {self.root})")
        if not (self.root / rel).is_file():
            raise BadImageError(f"image file missing: {name} (looked in {self.root})")
        return rel

    def names(self) -> set[str]:
        """Every file available: full member paths of a zip, top-level file names of a directory."""
        if self.is_zip:
            self._archive()
            return set(self._members)
        return {p.name for p in self.root.iterdir() if p.is_file()}

    def has(self, name: str) -> bool:
        """Whether ``name`` is one readable file inside the root (False for unsafe or ambiguous names)."""
        try:
            self.locate(name)
        except BadImageError:
            return False
        return True

    def _open_stream(self, name: str):
        member = self.locate(name)
        if self.is_zip:
            return self._archive().open(member)
        return open(self.root / member, "rb")

    def read_bytes(self, name: str) -> bytes:
        """The file's bytes; :class:`BadImageError` naming it when missing, unsafe or unreadable."""
        try:
            with self._open_stream(name) as fh:
                return fh.read()
        except FileNotFoundError:
            raise BadImageError(f"image file missing: {name} (looked in {self.root})") from None
        except (OSError, zipfile.BadZipFile) as e:
            raise BadImageError(f"cannot read image {name} in {self.root} ({type(e).__name__}: {e})") from None

    def sha256(self, name: str, chunk: int = 1 << 20) -> str:
        """sha256 (hex) of the file's bytes, read once as a stream; raises like :meth:`read_bytes`."""
        try:
            with self._open_stream(name) as fh:
                return sha256_stream(fh, chunk)
        except FileNotFoundError:
            raise BadImageError(f"image file missing: {name} (looked in {self.root})") from None
        except (OSError, zipfile.BadZipFile) as e:
            raise BadImageError(f"cannot read image {name} in {self.root} ({type(e).__name__}: {e})") from None

    def open(self, name: str) -> Image.Image:
        """The image as RGB; raise :class:`BadImageError` naming the file when it is missing or corrupt."""
        return decode_image(self.read_bytes(name), f"{self.root}/{name}")


def decode_image(data: bytes, label: str) -> Image.Image:
    """Fully decode image bytes to RGB (so truncation is caught here, not later).

    Raises :class:`BadImageError` naming ``label`` for empty, corrupt or truncated data and for
    images over twice ``PIL.Image.MAX_IMAGE_PIXELS`` (PIL's decompression-bomb error). Images
    between one and two times the limit are accepted: PIL's ``DecompressionBombWarning`` is
    turned into one log warning naming the file (large panoramas are real images).
    """
    if not data:
        raise BadImageError(f"empty image file (0 bytes): {label}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
            img.load()
        except Image.DecompressionBombError as e:
            raise BadImageError(f"image too large: {label} ({e})") from None
        except UnidentifiedImageError:
            raise BadImageError(f"corrupt or truncated image: {label} (not a known image format)") from None
        except Exception as e:  # PIL raises several types for corrupt data
            raise BadImageError(f"corrupt or truncated image: {label} ({type(e).__name__}: {e})") from None
    for w in caught:
        if issubclass(w.category, Image.DecompressionBombWarning):
            log.warning("large image accepted: %s (%s)", label, w.message)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    try:
        return to_rgb(img)
    except Exception as e:
        raise BadImageError(
            f"cannot convert image to RGB: {label} (mode {img.mode}; {type(e).__name__}: {e})"
        ) from None
