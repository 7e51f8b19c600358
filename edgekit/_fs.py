"""Writing files so that nothing a user wrote is lost and no reader sees half a file.

Every temporary file or folder edgekit makes has one name pattern,
``.NAME.edgekit-PID-TOKEN.partial[SUFFIX]`` (:func:`partial_path`), beside or inside its
destination. That pattern is what lets the next run clean up after a process that was killed
(``SIGKILL`` leaves no chance to): :func:`reap_partials` removes the partials whose process is
dead, and nothing else.

- :func:`atomic_path` — a temporary file, renamed over the destination on success;
- :func:`checked_destination` — an output path as the user typed it (``.``, ``./``, ``~/x``,
  relative, absolute), made absolute; a filesystem root, the home folder and the folders that
  contain the current one are refused before any work;
- :func:`rename_noreplace` — a rename that fails when the destination exists (two writers of one
  new folder: the second loses, and is told so);
- :func:`folder_lock` — an advisory lock on a folder, held while a finished bundle is swapped in;
- :func:`writable_folder` — a one-line error naming a read-only destination folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "umask", "partial_path", "reap_partials", "is_partial", "pid_alive", "rename_noreplace",
           "folder_lock", "checked_destination", "writable_folder", "same_file", "checked_output_file", "fresh_path",
           "contained_path", "regular_file", "existing"]

_PARTIAL = re.compile(r"^\..*\.edgekit-(?P<pid>\d+)-[0-9a-f]+\.partial(\.[A-Za-z0-9]+)?$")


def umask() -> int:
    """The process's file-creation mask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def pid_alive(pid: int) -> bool:
    """True when a process with this id exists (it may belong to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def is_partial(name: str, pid: int | None = None) -> bool:
    """``name`` is an edgekit temporary (of process ``pid``, when given)."""
    m = _PARTIAL.match(name)
    return m is not None and (pid is None or int(m["pid"]) == pid)


def partial_path(dest: str | os.PathLike, suffix: str = "", folder: bool = False, within: Path | None = None) -> Path:
    """Create an empty temporary file (or ``folder``) for ``dest`` and return its path:
    ``.NAME.edgekit-PID-TOKEN.partial[SUFFIX]`` in ``within`` (default: beside ``dest``)."""
    dest = Path(dest)
    where = within if within is not None else dest.parent
    for _ in range(100):
        path = where / f".{dest.name}.edgekit-{os.getpid()}-{secrets.token_hex(4)}.partial{suffix}"
        try:
            if folder:
                os.mkdir(path, 0o777 & ~umask())
            else:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~umask()))
            return path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(where))


def reap_partials(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries in ``folder`` left by edgekit processes that no longer run (killed
    before they could clean up); return what was removed. Partials of live processes, and
    anything that does not match edgekit's pattern, are left alone."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = _PARTIAL.match(e.name)
        if m is None or pid_alive(int(m["pid"])):
            continue
        p = Path(e.path)
        with contextlib.suppress(OSError):
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield an empty temporary file beside ``path`` to write; when the block ends without an
    error it replaces ``path`` (with the permissions of any new file), otherwise it is removed
    and ``path`` is untouched. ``suffix`` matters to writers that infer a format from it.
    Callers decide whether replacing an existing ``path`` is allowed (see ``same_file`` and the
    CLI's ``--force``)."""
    path = Path(path)
    writable_folder(path.parent, create=True)
    reap_partials(path.parent)
    tmp = partial_path(path, suffix=suffix)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def rename_noreplace(src: Path, dst: Path) -> None:
    """Move ``src`` (a file or folder) to ``dst``, failing with ``FileExistsError`` when ``dst``
    exists — atomically: of two processes, exactly one wins. A folder claims ``dst`` with
    ``mkdir`` (exclusive) and then replaces that empty folder; a file is hard-linked (exclusive)
    and its temporary name removed."""
    if src.is_dir():
        os.mkdir(dst)  # FileExistsError when taken
        try:
            os.rename(src, dst)  # replaces the empty folder just made; fails if someone wrote into it
        except OSError:
            with contextlib.suppress(OSError):
                os.rmdir(dst)
            raise FileExistsError(errno.EEXIST, "written by another process meanwhile", str(dst)) from None
        return
    try:
        os.link(src, dst)  # FileExistsError when taken
    except FileExistsError:
        raise
    except OSError:  # a filesystem without hard links (FAT, some network shares): check, then rename
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "exists", str(dst)) from None
        os.rename(src, dst)
        return
    os.unlink(src)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``folder`` (``flock`` on the folder itself: no lock file
    is left behind). edgekit takes it while it swaps a finished bundle into an existing folder,
    so two conversions into one folder cannot interleave. A no-op where ``flock`` is missing."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def checked_destination(path: str | os.PathLike, what: str = "--out") -> Path:
    """``path`` as an absolute path (``~`` expanded, ``.``/``..`` resolved lexically), refusing
    destinations whose replacement would destroy far more than a model: a filesystem root, the
    home folder, and every folder that contains the current one. ``.`` itself is allowed."""
    from edgekit.errors import UsageError

    raw = str(path)
    if not raw.strip():
        raise UsageError(f"{what} is empty", hint=f"name a folder, e.g. {what} out/")
    p = Path(os.path.abspath(os.path.expanduser(raw)))
    real = p.resolve()  # symlinks too: a link to $HOME is $HOME
    cwd = Path.cwd().resolve()
    home = Path.home().resolve()
    if real == Path(real.anchor) or p == Path(p.anchor):
        reason = "is a filesystem root"
    elif real == home:
        reason = "is your home folder"
    elif real != cwd and real in cwd.parents:
        reason = "contains the current folder"
    else:
        return p
    raise UsageError(f"{what} {reason}; edgekit will not write a bundle there", where=raw,
                     hint=f"name a folder of its own, e.g. {what} {Path(raw.rstrip('/') or '.') / 'model_bundle'}")


def writable_folder(folder: Path, create: bool = False) -> None:
    """Raise one line naming ``folder`` when edgekit cannot write into it (read-only, no
    permission, or, with ``create``, when it cannot be created)."""
    from edgekit.errors import UsageError

    folder = Path(folder)
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create the output folder ({e.strerror or e})", where=folder,
                             hint="choose a folder you can write to") from None
    if folder.exists() and not os.access(folder, os.W_OK):
        raise UsageError("the output folder is read-only", where=folder, hint="choose a folder you can write to")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """``a`` and ``b`` are one file (the same inode, through links, ``..`` or symlinks)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def checked_output_file(path: str | os.PathLike, *, force: bool, what: str = "--output",
                        protected: tuple[str | os.PathLike, ...] = ()) -> Path:
    """An output file path that may be written: never one of ``protected`` (the command's own
    inputs), whatever ``force`` says; an existing file only with ``force``; its folder must be
    writable. Returns the absolute path."""
    from edgekit.errors import UsageError

    p = Path(os.path.abspath(os.path.expanduser(str(path))))
    for src in protected:
        if same_file(p, src) or (Path(src).is_dir() and p.resolve().is_relative_to(Path(src).resolve())):
            raise UsageError(f"{what} is the command's own input; edgekit never overwrites its input", where=path,
                             hint=f"choose another {what} path")
    if p.is_dir():
        raise UsageError(f"{what} names a folder, not a file", where=path, hint=f"name a file for {what}")
    if p.exists() and not force:
        raise UsageError(f"{what} exists", where=path, hint="pass --force to replace it, or choose another path")
    writable_folder(p.parent, create=False)
    if not p.parent.exists():
        raise UsageError("the folder to write into does not exist", where=p.parent, hint="create it first")
    return p


def fresh_path(path: str | os.PathLike) -> Path:
    """``path`` if nothing is there, else the first free ``STEM-2.SUFFIX``, ``STEM-3.SUFFIX``, ...:
    for default output names, which must not replace an earlier run's file."""
    p = Path(path)
    if not p.exists():
        return p
    for i in range(2, 100000):
        q = p.with_name(f"{p.stem}-{i}{p.suffix}")
        if not q.exists():
            return q
    raise FileExistsError(errno.EEXIST, "no free name", str(p))


def contained_path(root: str | os.PathLike, rel: object, where: str | os.PathLike, what: str = "path") -> Path:
    """The one way to turn a path read from a file (a bundle manifest's artifact path, an
    ``.mlpackage``'s ``Manifest.json`` item) into a path to open: ``root / rel``, refused with a
    one-line error naming ``where`` unless ``rel`` is a non-empty relative string that stays
    inside ``root`` after resolving ``..`` and symlinks. Nothing outside a bundle is ever opened
    because a file said so."""
    from edgekit.errors import InvalidModelFile

    if not isinstance(rel, str):
        raise InvalidModelFile(where, f"{what} must be a string, got {type(rel).__name__} {rel!r:.40}")
    shown = rel if len(rel) <= 80 else rel[:77] + "..."
    if rel.strip() in ("", "."):
        raise InvalidModelFile(where, f"{what} '{rel}' names no file")
    if "\x00" in rel:
        raise InvalidModelFile(where, f"{what} contains a NUL byte")
    if os.path.isabs(rel) or Path(rel).anchor:
        raise InvalidModelFile(where, f"{what} '{shown}' is absolute; paths in a bundle are relative to it",
                               hint="re-run `edgekit convert`, or fix the path")
    root_real = Path(root).resolve()
    try:
        target = (Path(root) / rel).resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop
        raise InvalidModelFile(where, f"{what} '{shown}' cannot be resolved ({e})") from None
    if target == root_real or not target.is_relative_to(root_real):
        raise InvalidModelFile(where, f"{what} '{shown}' leaves its folder {Path(root)}",
                               hint="a bundle may only name files inside it")
    return Path(root) / rel


def regular_file(path: str | os.PathLike, hint: str = "check the path") -> Path:
    """``path`` when it is a regular file (through symlinks); otherwise one line that names the
    real cause: missing, a symlink loop, a dangling symlink, a folder, or a FIFO, socket or device
    (which would block or stream forever if opened)."""
    import stat

    from edgekit.errors import InvalidModelFile

    p = existing(path, hint)
    st = os.stat(p)
    if stat.S_ISDIR(st.st_mode):
        raise InvalidModelFile(p, "is a folder, not a file", hint=hint)
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise InvalidModelFile(p, f"is {kind}, not a regular file", hint="pass a model file saved on disk")
    return p


def existing(path: str | os.PathLike, hint: str = "check the path") -> Path:
    """``path`` when something is there (through symlinks); else one line with the real cause:
    no such file, a dangling symlink, a symlink loop, or a path that cannot be examined."""
    from edgekit.errors import InvalidModelFile, ModelFileNotFound

    p = Path(path)
    try:
        os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise InvalidModelFile(p, f"a symlink to a missing file ({os.readlink(p)})", hint=hint) from None
        raise ModelFileNotFound(p, hint=hint) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InvalidModelFile(p, "a symlink loop (the link points back at itself)", hint=hint) from None
        raise InvalidModelFile(p, f"cannot examine it ({e.strerror or e})", hint=hint) from None
    return p
