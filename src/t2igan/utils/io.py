"""File io shared by every layer: atomic writes, JSON, and safe reading of metadata pickles.

Pickled metadata (``captions.pickle``, ``filenames.pickle``, ``class_info.pickle``) comes from other people's
machines. It is read with :class:`RestrictedUnpickler`, which admits plain containers, numbers, strings and
numpy arrays only; anything else (a pickle that would import ``os`` and run a command, say) is refused with an
error naming the file and the object it asked for.
"""

from __future__ import annotations

import _compat_pickle
import collections
import contextlib
import io
import json
import os
import pickle
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "UnsafePickleError",
    "log_series",
    "RestrictedUnpickler",
    "atomic_write",
    "write_bytes_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "read_json",
    "safe_load_pickle",
    "decode_bytes",
]


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for an object outside the allowed set."""


# (module, name) pairs a metadata pickle may reference. Builtins are resolved by pickle's own
# protocol opcodes (lists, dicts, tuples, ints, floats, strings, bytes) and need no global.
_ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "complex"),
        ("builtins", "bytearray"),
        ("builtins", "list"),
        ("builtins", "dict"),
        ("builtins", "tuple"),
        ("builtins", "int"),
        ("builtins", "float"),
        ("builtins", "str"),
        ("builtins", "bytes"),
        ("collections", "OrderedDict"),
        ("collections", "defaultdict"),
        # protocol-2 pickles written by Python 3 encode bytes through _codecs.encode(str, 'latin1')
        ("_codecs", "encode"),
        # numpy arrays and scalars (numpy 1.x and 2.x module paths)
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }
)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only constructs plain data (containers, numbers, strings, numpy arrays)."""

    def __init__(self, file: Any, *, source: str = "<pickle>", **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        # Python-2 names (__builtin__.set, copy_reg, ...) are translated first, as pickle's own find_class
        # does for protocols < 3 (those module names do not exist in Python 3, so mapping is always safe)
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"{self._source}: refusing to unpickle '{module}.{name}': metadata pickles may only contain "
            "lists, dicts, tuples, numbers, strings and numpy arrays"
        )


def decode_bytes(obj: Any) -> Any:
    """Recursively turn ``bytes`` keys and values into ``str`` (Python-2 pickles read with encoding='bytes')."""
    if isinstance(obj, bytes):
        try:
            return obj.decode("utf-8")
        except UnicodeDecodeError:
            return obj.decode("latin-1")
    if isinstance(obj, collections.defaultdict):
        items = {decode_bytes(k): decode_bytes(v) for k, v in obj.items()}
        return collections.defaultdict(obj.default_factory, items)
    if isinstance(obj, dict):
        return type(obj)((decode_bytes(k), decode_bytes(v)) for k, v in obj.items())
    if isinstance(obj, (set, frozenset)):
        return type(obj)(decode_bytes(v) for v in obj)
    if isinstance(obj, list):
        return [decode_bytes(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(decode_bytes(v) for v in obj)
    return obj


def safe_load_pickle(path: str | os.PathLike[str]) -> Any:
    """Load a metadata pickle with :class:`RestrictedUnpickler`.

    Python-2 pickles load too: their ``str`` objects are read as latin-1 text (which is also what numpy needs
    for Python-2 arrays), and ``bytes`` keys or values anywhere in the result are decoded to ``str``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metadata pickle not found: {path}")
    data = path.read_bytes()
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), source=str(path), encoding="latin1").load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated or not a pickle at all
        raise pickle.UnpicklingError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from exc
    return decode_bytes(obj)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``path`` and move it into place only when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the mode a plain open() would (or the replaced file's)
        try:
            perm = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            perm = 0o666 & ~_umask()
        os.chmod(tmp, perm)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"JSON file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc


def log_series(path: str | os.PathLike[str], keep) -> dict[str, list[tuple[float, float]]]:
    """Numeric values of a JSON-lines run log as ``{key: [(step, value), ...]}`` for keys where ``keep(key)``.

    A missing file gives ``{}``; unreadable lines (a run killed mid-write) are skipped.
    """
    path = Path(path)
    series: dict[str, list[tuple[float, float]]] = {}
    if not path.is_file():
        return series
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, dict) or "step" not in rec:
            continue
        for k, v in rec.items():
            if k not in ("step", "time", "epoch") and isinstance(v, (int, float)) and keep(k):
                series.setdefault(k, []).append((float(rec["step"]), float(v)))
    return series
