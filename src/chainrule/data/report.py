"""What loading an image folder had to do about its files, said once and in full.

A folder of photos as it really is holds a truncated file, a note beside the images, a
class folder not filled yet, a photo taken at another resolution. Loading skips what it
cannot use and resizes what has another size, and :class:`FolderReport` collects all of
it, so that one warning (:class:`DataWarning`) lists every file at once, or, with
``strict=True``, one error refuses the folder with the whole list.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .resize import format_size

__all__ = ["DataWarning", "FolderReport"]

# Files named in a warning about resized images (skipped files are all named).
_SHOWN = 5


class DataWarning(UserWarning):
    """Loading data skipped or changed something (the message says what, file by file)."""


@dataclass
class FolderReport:
    """Files of an image folder that loading skipped or resized.

    unreadable : messages naming each image file that could not be read (or was too
        large to decode); odd : files in class folders that are not images (by their
        extension); empty_classes : [(class folder, why it is not a class)], a folder
        without any image file or without any that could be read;
    resized : {(H, W): [files]} of the images resized to ``size`` (height, width);
    size_chosen_by : why that size (the most common size, or the one asked for)
    """

    root: str
    unreadable: list[str] = field(default_factory=list)
    odd: list[str] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)
    resized: dict = field(default_factory=lambda: defaultdict(list))
    n_images: int = 0
    size: tuple | None = None
    size_chosen_by: str = "the most common size"

    def skipped(self) -> list[str]:
        """One line per file or folder that loading leaves out."""
        lines = list(self.unreadable)
        lines += [f"{path} is not an image file (.png, .jpg, .jpeg, .bmp)" for path in self.odd]
        lines += [
            f"class folder {name!r} {why}: it is not a class" for name, why in self.empty_classes
        ]
        return lines

    def skipped_text(self) -> str:
        files = len(self.unreadable) + len(self.odd)
        what = [f"{files} file{'s' * (files != 1)}"] if files else []
        if self.empty_classes:
            n = len(self.empty_classes)
            what.append(f"{n} class folder{'s' * (n != 1)}")
        return f"{' and '.join(what)} of {self.root}: " + "; ".join(self.skipped())

    def resized_text(self) -> str | None:
        """One sentence on the resized images, or None when every image had the size."""
        if not self.resized or self.size is None:
            return None
        n = sum(len(files) for files in self.resized.values())
        groups = []
        for (h, w), files in sorted(self.resized.items(), key=lambda kv: -len(kv[1])):
            more = f" and {len(files) - _SHOWN} more" if len(files) > _SHOWN else ""
            groups.append(f"{format_size(h, w)}: {', '.join(files[:_SHOWN])}{more}")
        return (
            f"resized {n} of {self.n_images} images of {self.root} to "
            f"{format_size(*self.size)}, {self.size_chosen_by} (linear, antialiased when "
            f"shrinking; --image-size HEIGHTxWIDTH or image_size=(height, width) sets "
            f"another): " + "; ".join(groups)
        )

    def emit(self, strict: bool) -> None:
        """Warn (:class:`DataWarning`) about everything skipped and resized, or, with
        ``strict``, raise ``ValueError`` listing every file that would be skipped."""
        import warnings

        if self.skipped():
            if strict:
                raise ValueError(
                    "cannot use " + self.skipped_text() + " (without --strict, or "
                    "strict=True, they are left out with a warning)"
                )
            warnings.warn(DataWarning("left out " + self.skipped_text()), stacklevel=3)
        note = self.resized_text()
        if note:
            warnings.warn(DataWarning(note), stacklevel=3)
