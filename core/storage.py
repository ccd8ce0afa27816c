"""Where the run folder lives: a local or shared (NFS) path, or an object-store URI
(`s3://bucket/prefix`, `gs://bucket/prefix`) read and written through pyarrow's filesystems,
the same ones Ray Tune and Ray Train store their checkpoints with.

A location is a plain string. Everything the search, its trials and the analyzer keep in the
run folder goes through these functions, so no module needs to know which kind it is.
Credentials and endpoints come from the environment, as pyarrow and Ray take them
(AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, GOOGLE_APPLICATION_CREDENTIALS, ...), or from the URI's
query (`s3://bucket/runs?region=eu-west-1`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs as pafs


def is_uri(location: str | Path) -> bool:
    return "://" in str(location)


def absolute(location: str | Path) -> str:
    """A URI as it is; a local path made absolute, so every process reads the same folder."""
    return str(location) if is_uri(location) else str(Path(location).resolve())


def join(location: str | Path, *parts: str) -> str:
    if not is_uri(location):
        return str(Path(location, *parts))
    base, mark, query = str(location).partition("?")
    return "/".join([base.rstrip("/"), *parts]) + mark + query


def parent(location: str | Path) -> str:
    if not is_uri(location):
        return str(Path(location).parent)
    base, mark, query = str(location).partition("?")
    return base.rstrip("/").rsplit("/", 1)[0] + mark + query


def name(location: str | Path) -> str:
    return str(location).partition("?")[0].rstrip("/").rsplit("/", 1)[-1]


def bucket(uri: str) -> str:
    """The bucket of a URI: s3://bucket/runs?region=x -> s3://bucket?region=x."""
    base, mark, query = uri.partition("?")
    scheme, _, path = base.partition("://")
    return f"{scheme}://{path.split('/')[0]}{mark}{query}"


def filesystem(location: str | Path) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it)."""
    if is_uri(location):
        return pafs.FileSystem.from_uri(str(location))
    return pafs.LocalFileSystem(), str(Path(location).absolute())


def exists(location: str | Path) -> bool:
    fs, path = filesystem(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_bytes(location: str | Path) -> bytes:
    fs, path = filesystem(location)
    with fs.open_input_stream(path) as stream:
        return stream.read()


def read_text(location: str | Path) -> str:
    return read_bytes(location).decode()


def write_bytes(location: str | Path, data: bytes) -> None:
    """Write whole or not at all: readers never see half a file. An object store only shows an
    object once its upload completes; a local file is written beside and renamed."""
    fs, path = filesystem(location)
    if is_uri(location):
        with fs.open_output_stream(path) as stream:
            stream.write(data)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    partial = f"{path}.{os.getpid()}.partial"
    Path(partial).write_bytes(data)
    os.replace(partial, path)


def write_text(location: str | Path, text: str) -> None:
    write_bytes(location, text.encode())


def remove(location: str | Path) -> None:
    fs, path = filesystem(location)
    fs.delete_file(path)


def find(location: str | Path, file_name: str) -> list[str]:
    """Every file called `file_name` anywhere under `location`, sorted; [] if it does not exist."""
    fs, root = filesystem(location)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(join(location, *info.path[len(root):].strip("/").split("/"))
                  for info in infos if info.type == pafs.FileType.File and info.base_name == file_name)


def files(location: str | Path) -> list[str]:
    """`location` itself if it is a file, else every file under it (hidden ones left out), sorted
    by path; paths inside the location's filesystem (see `filesystem`). [] if it does not exist."""
    fs, root = filesystem(location)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        return [root]
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(info.path for info in infos if info.type == pafs.FileType.File
                  and not any(part.startswith((".", "_")) for part in info.path[len(root):].split("/")))


def folders(location: str | Path, prefix: str = "") -> list[str]:
    """The folders directly under `location` whose names start with `prefix`, sorted."""
    fs, root = filesystem(location)
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    return sorted(join(location, info.base_name) for info in infos
                  if info.type == pafs.FileType.Directory and info.base_name.startswith(prefix))


def upload(local_folder: str | Path, location: str | Path) -> None:
    """Copy a local folder's tree to `location`, replacing files of the same name."""
    fs, path = filesystem(location)
    if not is_uri(location):
        Path(path).mkdir(parents=True, exist_ok=True)
    pafs.copy_files(str(Path(local_folder).absolute()), path, source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=fs)
