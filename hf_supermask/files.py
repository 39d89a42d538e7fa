# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Files and folders, handled so that mistakes are named and earlier work is never destroyed silently.

- text as UTF-8 lines, with the file and line of any invalid byte;
- output folders that must be new or empty, or are emptied only when asked to (and never when that would delete
  an input of the run or the working directory): checked first (`check_output_folder`), emptied or replaced only
  once everything else was checked too (`empty_folder`, or `staged_folder`, which swaps a finished write in);
- where a model comes from: a local folder (with its tokenizer files), or a Hub id of the right form;
- files cut short (a run stopped while saving), found before loading them;
- folder sizes.

Light on imports on purpose: the command line reads its input with it before loading any model.
"""

from __future__ import annotations

import codecs
import json
import os
import secrets
import shutil
import struct
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


PathLike = str | os.PathLike


def decode_lines(data: bytes, name: str) -> list[str]:
    """`data` as UTF-8 text split into lines (a leading BOM dropped, a trailing newline not making an empty line).

    Lines are split on "\\n" only: `str.splitlines` (and universal newlines) would also break lines at characters
    such as U+2028 or a lone "\\r", silently misaligning the two sides of a parallel corpus. A "\\r" before the "\\n"
    is dropped.

    Raises:
        `ValueError`: on invalid UTF-8 (lone surrogates included), naming `name` and the line (counted from 1).
    """
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(_invalid_utf8_message(name, data, error)) from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_lines(path: PathLike, n: int | None = None) -> list[str]:
    """The lines of a UTF-8 text file (see [`decode_lines`]), the first `n` only when given."""
    lines = decode_lines(Path(path).read_bytes(), str(path))
    return lines if n is None else lines[:n]


def check_utf8(path: PathLike) -> None:
    """Raise the `ValueError` of [`decode_lines`] if the file is not valid UTF-8 (read in chunks, then, only when it
    is not, line by line to find the line)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise ValueError(_invalid_utf8_message(str(path), line, error, first_line=number)) from None
        raise


def _invalid_utf8_message(name: str, data: bytes, error: UnicodeDecodeError, first_line: int = 1) -> str:
    line = first_line + data.count(b"\n", 0, error.start)
    column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
    bad = " ".join(f"0x{byte:02x}" for byte in data[error.start : error.end])
    return (
        f"{name}, line {line}: invalid UTF-8 (byte {bad} at byte {column} of the line: {error.reason}). Save the text "
        "as UTF-8, e.g. `iconv -f latin1 -t utf-8` if it is Latin-1."
    )


def parse_json(text: str, name: str, hint: str, first_line: int = 1):
    """`json.loads(text)`, or a `ValueError` naming `name`, the line (counted from `first_line`) and column of the
    mistake, followed by `hint` (what the text should hold)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{name}, line {first_line + error.lineno - 1}, column {error.colno}: not valid JSON ({error.msg}). {hint}"
        ) from None


def check_utf8_text(text: str, name: str) -> None:
    """Strings made from undecodable bytes (command-line arguments, or text read with `surrogateescape`) hold lone
    surrogates, which no tokenizer accepts: raise a `ValueError` naming `name` instead."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{name} is not valid UTF-8 (character {error.start + 1} is {text[error.start]!r}, a lone surrogate: "
            "bytes that were not UTF-8). Pass UTF-8 text."
        ) from None


def damage(path: PathLike) -> str | None:
    """Why the file at `path` cannot be complete, or None if it looks whole: empty, a torch archive (`.pt`, `.pth`,
    `.bin`, zip since torch 1.6) without its closing directory, JSON that does not parse, or a safetensors file
    shorter than its header says. Cheap: nothing is loaded."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "it is empty"
    if path.suffix in (".pt", ".pth", ".bin") and not zipfile.is_zipfile(path):
        return "it is not a complete torch archive"
    if path.suffix == ".json":
        try:
            json.loads(path.read_bytes())
        except ValueError:
            return "it is not valid JSON"
    if path.suffix == ".safetensors":
        with open(path, "rb") as handle:
            head = handle.read(8)
            header_size = struct.unpack("<Q", head)[0] if len(head) == 8 else size
            try:
                header = json.loads(handle.read(header_size)) if 8 + header_size <= size else None
            except ValueError:
                header = None
        if header is None:
            return "its header is cut short"
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        if 8 + header_size + end > size:
            return "it is shorter than its header says"
    return None


def folder_bytes(path: PathLike, pattern: str = "*") -> int:
    """Bytes of the files of `path` matching `pattern` (not recursive)."""
    return sum(p.stat().st_size for p in Path(path).glob(pattern) if p.is_file())


def is_within(path: PathLike, folder: PathLike) -> bool:
    """Whether `path` is `folder` or lies inside it (links resolved)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def check_output_folder(
    folder: PathLike, *, overwrite: bool, overwrite_flag: str, inputs: Iterable[PathLike | None] = (), hint: str = ""
) -> bool:
    """Check, without touching anything, that writing into `folder` destroys nothing: it must be new or empty, or
    `overwrite` must be set and emptying it must spare the working directory and every one of `inputs` (the files
    and folders the run reads; None and Hub ids are skipped).

    Args:
        overwrite_flag: the flag that sets `overwrite`, named in the message.
        hint: another way out, added to the message (e.g. resuming).

    Returns:
        Whether `folder` holds something that writing into it needs deleted first (only ever True with `overwrite`).

    Raises:
        `NotADirectoryError`: if `folder` is a file.
        `FileExistsError`: if `folder` is not empty and `overwrite` is not set.
        `ValueError`: if emptying it would delete an input or the working directory.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"The output folder {folder} is a file. Choose a new or empty folder.")
    entries = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if not entries:
        return False
    if not overwrite:
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise FileExistsError(
            f"The output folder {folder} is not empty (it holds {shown}): writing into it would overwrite or mix with "
            f"what is there. Choose a new or empty folder, or pass {overwrite_flag} to delete its contents first"
            f"{'; ' + hint if hint else ''}."
        )
    for kept in [Path.cwd(), *(Path(p) for p in inputs if p is not None and Path(p).exists())]:
        if is_within(kept, folder):
            raise ValueError(
                f"{overwrite_flag} would empty {folder}, which holds {kept} "
                f"({'the working directory' if kept == Path.cwd() else 'an input of this run'}). Choose another folder."
            )
    return True


def empty_folder(folder: PathLike) -> None:
    """Delete what `folder` holds (links are removed, never followed). Only after [`check_output_folder`]."""
    for entry in Path(folder).iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def prepare_output_folder(
    folder: PathLike, *, overwrite: bool, overwrite_flag: str, inputs: Iterable[PathLike | None] = (), hint: str = ""
) -> Path:
    """[`check_output_folder`], then empty `folder` when it holds something (only with `overwrite`)."""
    if check_output_folder(folder, overwrite=overwrite, overwrite_flag=overwrite_flag, inputs=inputs, hint=hint):
        empty_folder(folder)
    return Path(folder)


@contextmanager
def staged_folder(folder: PathLike) -> Iterator[Path]:
    """A new folder next to `folder` to write into; when the block succeeds it takes `folder`'s place (what `folder`
    held is deleted only then), and when it fails it is deleted and `folder` is left as it was.

    Check `folder` with [`check_output_folder`] first: this replaces whatever it holds.
    """
    folder = Path(folder)
    # Next to `folder`, on the same file system, so that the swap is two renames.
    staging = folder.parent / f".{folder.name}.new-{secrets.token_hex(4)}"
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if folder.exists():
        old = folder.parent / f".{folder.name}.old-{secrets.token_hex(4)}"
        folder.rename(old)
        staging.rename(folder)
        shutil.rmtree(old)
    else:
        staging.rename(folder)


def check_model_location(name: str, what: str = "model") -> None:
    """`name` must be an existing local folder or have the form of a Hub id: say which is wrong, instead of
    huggingface_hub's "Repo id must be in the form ..." for a mistyped path.

    A name that is not a folder here but has the form of a Hub id (`user/name`) is left to the Hub to resolve.

    Raises:
        `NotADirectoryError`: if `name` is a file.
        `FileNotFoundError`: if `name` is not a folder here and cannot be a Hub id either.
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    path = Path(name).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise NotADirectoryError(
            f"The {what} {name} is a file; give the folder that holds its config.json, or a Hub id."
        )
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise FileNotFoundError(
            f"The {what} folder {name} does not exist. (A Hub id has the form `user/name`, "
            "e.g. `Helsinki-NLP/opus-mt-en-de`.)"
        ) from None


# What `AutoTokenizer.from_pretrained` needs in a folder: `save_pretrained` of any tokenizer writes the config, and
# fast tokenizers their `tokenizer.json` (without either, transformers falls back to asking for sentencepiece).
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


def check_tokenizer_files(name: str, what: str = "model") -> None:
    """A local folder `name` must hold a tokenizer (see [`TOKENIZER_FILES`]); Hub ids are left to the Hub.

    Raises:
        `FileNotFoundError`: naming the folder and the files it lacks.
    """
    folder = Path(name).expanduser()
    if folder.is_dir() and not any((folder / file).is_file() for file in TOKENIZER_FILES):
        raise FileNotFoundError(
            f"The {what} folder {name} has no tokenizer (neither {' nor '.join(TOKENIZER_FILES)}). Copy the tokenizer "
            "files of the checkpoint it was made from into it (`AutoTokenizer.from_pretrained(CHECKPOINT)"
            f".save_pretrained({str(name)!r})`)."
        )


@contextmanager
def loading(name: str) -> Iterator[None]:
    """Around loading the model `name`: when it is no folder here it went to the Hub, so say that, since the Hub's
    message (e.g. offline: "We couldn't connect to ...") does not."""
    try:
        yield
    except OSError as error:
        if Path(name).expanduser().exists():
            raise
        # One line: the Hub's messages span several.
        reason = " ".join(str(error).split())
        raise OSError(f"{name} is not a folder here, and loading it as a Hub id failed: {reason}") from error


__all__ = [
    "TOKENIZER_FILES",
    "check_model_location",
    "check_output_folder",
    "check_tokenizer_files",
    "check_utf8",
    "check_utf8_text",
    "damage",
    "decode_lines",
    "empty_folder",
    "folder_bytes",
    "is_within",
    "loading",
    "parse_json",
    "prepare_output_folder",
    "read_lines",
    "staged_folder",
]
