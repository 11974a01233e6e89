"""The files of one MovieLens copy, in a folder or a zip, and which layout they form."""

from __future__ import annotations

import os
import zipfile
import zlib
from typing import IO

from tfrs_movies.data.layouts import LAYOUTS, Layout
from tfrs_movies.errors import DataError

# What reading a damaged zip member can raise (zlib.error is not an OSError).
READ_ERRORS = (zipfile.BadZipFile, OSError, EOFError, zlib.error)


class MovieLensFiles:
    """The files of one MovieLens copy, in a folder or a zip (possibly one folder deep).

    Args:
        path: the folder or .zip the user named.

    Raises:
        DataError: the path does not exist or is not a readable zip archive.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._zip: zipfile.ZipFile | None = None
        self.prefix = ""
        if not os.path.exists(self.path):
            raise DataError(
                "no such file or folder; expected a MovieLens folder or .zip "
                "(e.g. ml-100k/ or ml-latest-small.zip)",
                path=self.path,
            )
        if os.path.isdir(self.path):
            self._entries = self._folder_entries()
        else:
            try:
                self._zip = zipfile.ZipFile(self.path)
                # Reading the central directory does not check data; testzip would read it all.
                names = self._zip.namelist()
            except READ_ERRORS as error:
                raise DataError(
                    f"not a readable zip archive ({error}); expected a MovieLens folder or the "
                    "GroupLens .zip, e.g. ml-latest-small.zip",
                    path=self.path,
                ) from error
            self._entries = self._zip_entries(names)

    def __enter__(self) -> MovieLensFiles:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._zip is not None:
            self._zip.close()

    def _folder_entries(self) -> dict[str, set[str]]:
        # The folder itself, plus its direct subfolders (a parent folder of an extracted zip).
        entries = {"": {n for n in os.listdir(self.path) if os.path.isfile(self._join("", n))}}
        for child in sorted(os.listdir(self.path)):
            if os.path.isdir(os.path.join(self.path, child)):
                entries[child + "/"] = {
                    n
                    for n in os.listdir(os.path.join(self.path, child))
                    if os.path.isfile(os.path.join(self.path, child, n))
                }
        return entries

    @staticmethod
    def _zip_entries(names: list[str]) -> dict[str, set[str]]:
        entries: dict[str, set[str]] = {"": set()}
        for name in names:
            if name.endswith("/"):
                continue
            folder, _, base = name.rpartition("/")
            if folder.count("/") == 0:  # top level or one folder deep, as GroupLens zips are
                entries.setdefault(folder + "/" if folder else "", set()).add(base)
        return entries

    def _join(self, prefix: str, name: str) -> str:
        return os.path.join(self.path, prefix, name)

    def detect_layout(self) -> Layout:
        """Picks the layout whose files are present and remembers where they are.

        Returns:
            the first entry of :data:`~tfrs_movies.data.layouts.LAYOUTS` whose files are all
            present (at the top, else in the first subfolder that has them).

        Raises:
            DataError: no layout's files are all there; lists what each layout needs.
        """
        partial: list[str] = []
        for prefix in sorted(self._entries, key=lambda p: (p != "", p)):
            present = self._entries[prefix]
            for layout in LAYOUTS:
                required = layout.files
                if all(name in present for name in required):
                    self.prefix = prefix
                    return layout
                if required[0] in present:
                    missing = [n for n in required if n not in present]
                    where = self.display(required[0], prefix)
                    partial.append(
                        f"found {where} but not {', '.join(missing)} "
                        f"(a {layout.description} copy needs all of them)"
                    )
        if partial:
            raise DataError("missing file: " + "; ".join(partial), path=self.path)
        expected = "; ".join(layout.description for layout in LAYOUTS)
        raise DataError(f"no MovieLens files found; expected one of: {expected}", path=self.path)

    @property
    def dataset_name(self) -> str:
        """The copy's name: its folder (or the zip's top folder), without ``.zip``."""
        base = self.prefix.rstrip("/") or os.path.basename(os.path.normpath(self.path))
        return base[:-4] if base.lower().endswith(".zip") else base

    def display(self, name: str, prefix: str | None = None) -> str:
        """How a member file is named in messages, e.g. ``x.zip!ml-latest-small/ratings.csv``."""
        prefix = self.prefix if prefix is None else prefix
        if self._zip is not None:
            return f"{self.path}!{prefix}{name}"
        return self._join(prefix, name)

    def local_path(self, name: str) -> str | None:
        """A real file path when the copy is a folder (pandas reads those fastest)."""
        return None if self._zip is not None else self._join(self.prefix, name)

    def open(self, name: str) -> IO[bytes]:
        """Opens a member for binary reading.

        Raises:
            DataError: the member cannot be read (corrupt zip entry, permissions).
        """
        try:
            if self._zip is not None:
                return self._zip.open(self.prefix + name)
            return open(self._join(self.prefix, name), "rb")
        except (*READ_ERRORS, KeyError) as error:
            problem = "the archive looks corrupt" if self._zip is not None else "cannot read file"
            raise DataError(f"{problem} ({error})", path=self.display(name)) from error

    def read_bytes(self, name: str) -> bytes:
        """Reads a whole member.

        Raises:
            DataError: the member cannot be read or its zip data is corrupt.
        """
        with self.open(name) as stream:
            try:
                return stream.read()
            except (*READ_ERRORS, ValueError) as error:
                raise DataError(
                    f"cannot read file, the archive looks corrupt ({error})",
                    path=self.display(name),
                ) from error

    def read_lines(self, name: str, count: int) -> list[bytes]:
        """Reads the first ``count`` lines of a member (fewer if the file is shorter).

        Raises:
            DataError: the member cannot be read or its zip data is corrupt.
        """
        with self.open(name) as stream:
            try:
                return [line for line in (stream.readline() for _ in range(count)) if line]
            except (*READ_ERRORS, ValueError) as error:
                raise DataError(
                    f"cannot read file, the archive looks corrupt ({error})",
                    path=self.display(name),
                ) from None
