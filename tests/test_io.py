"""Safe metadata pickles, atomic writes and JSON reading (t2igan.utils.io)."""

from __future__ import annotations

import builtins
import os
import pickle
import stat
import subprocess
from collections import OrderedDict, defaultdict

import numpy as np
import pytest

from t2igan.utils.io import (
    RestrictedUnpickler,
    UnsafePickleError,
    atomic_write,
    read_json,
    safe_load_pickle,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)

# -- malicious pickles -------------------------------------------------------------------------------------------


class _Reduce:
    """Pickles as a call of ``func(*args)``; unpickling with the plain pickle module would run it."""

    def __init__(self, func, args):
        self.func = func
        self.args = args

    def __reduce__(self):
        return (self.func, self.args)


@pytest.mark.parametrize("protocol", [0, 2, 4, pickle.HIGHEST_PROTOCOL])
def test_refuses_os_system(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "captions.pickle"
    path.write_bytes(pickle.dumps(_Reduce(os.system, (f"touch {marker}",)), protocol=protocol))
    with pytest.raises(UnsafePickleError) as exc:
        safe_load_pickle(path)
    msg = str(exc.value)
    assert "os.system" in msg or "posix.system" in msg
    assert str(path) in msg
    assert not marker.exists()


def test_refuses_nested_malicious_object(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "filenames.pickle"
    obj = ["a", {"b": [1, 2, _Reduce(os.system, (f"touch {marker}",))]}]
    path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(UnsafePickleError, match="system"):
        safe_load_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("func", "args", "name"),
    [
        (builtins.eval, ("__import__('os').system('true')",), "builtins.eval"),
        (builtins.exec, ("x = 1",), "builtins.exec"),
        (builtins.getattr, (str, "join"), "builtins.getattr"),
        (subprocess.Popen, (["true"],), "subprocess.Popen"),
        (os.remove, ("/nonexistent/file",), "remove"),
    ],
)
@pytest.mark.parametrize("protocol", [2, 4])
def test_refuses_dangerous_callables(tmp_path, func, args, name, protocol):
    path = tmp_path / "x.pickle"
    path.write_bytes(pickle.dumps(_Reduce(func, args), protocol=protocol))
    with pytest.raises(UnsafePickleError) as exc:
        safe_load_pickle(path)
    msg = str(exc.value)
    assert str(path) in msg
    if protocol >= 3:
        assert f"'{name}" in msg or f".{name}'" in msg
    else:  # protocol 2 writes Python-2 module names (__builtin__.eval, commands.Popen)
        assert name.rsplit(".", 1)[-1] in msg


def test_unsafe_pickle_error_is_an_unpickling_error():
    assert issubclass(UnsafePickleError, pickle.UnpicklingError)


def test_restricted_unpickler_source_in_message(tmp_path):
    import io

    data = pickle.dumps(_Reduce(os.system, ("true",)), protocol=2)
    with pytest.raises(UnsafePickleError, match="<my source>"):
        RestrictedUnpickler(io.BytesIO(data), source="<my source>").load()


# -- plain data loads -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_arrays_load(tmp_path, protocol):
    path = tmp_path / "arrays.pickle"
    obj = {"i": np.arange(5), "f": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.int64(7)}
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    out = safe_load_pickle(path)
    assert out["i"].dtype == np.int64 and out["i"].tolist() == [0, 1, 2, 3, 4]
    assert out["f"].dtype == np.float32 and out["f"].shape == (2, 3)
    assert out["f"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert out["s"] == 7


def test_numpy_1x_module_path_loads(tmp_path):
    # numpy 1.x writes numpy.core.multiarray._reconstruct; numpy 2 writes numpy._core...
    data = pickle.dumps(np.array([3, 1, 2], dtype=np.int64), protocol=2)
    path = tmp_path / "old.pickle"
    path.write_bytes(data.replace(b"numpy._core", b"numpy.core"))
    assert b"numpy.core.multiarray" in path.read_bytes()
    assert safe_load_pickle(path).tolist() == [3, 1, 2]


def test_containers_load(tmp_path):
    path = tmp_path / "meta.pickle"
    dd = defaultdict(list)
    dd["k"].append(1)
    obj = {
        "nested": [[1, 2, [3, [4]]], {"a": {"b": (1, 2.5, "x")}}],
        "od": OrderedDict([("z", 1), ("a", 2)]),
        "set": {1, 2, 3},
        "frozen": frozenset({"x"}),
        "big": 2**70,
        "complex": 1 + 2j,
        "none": None,
        "flags": [True, False],
        "dd": dd,
    }
    path.write_bytes(pickle.dumps(obj, protocol=4))
    out = safe_load_pickle(path)
    assert out["nested"] == [[1, 2, [3, [4]]], {"a": {"b": (1, 2.5, "x")}}]
    assert list(out["od"].items()) == [("z", 1), ("a", 2)]  # order kept
    assert out["set"] == {1, 2, 3} and out["frozen"] == frozenset({"x"})
    assert out["big"] == 2**70 and out["complex"] == 1 + 2j
    assert out["none"] is None and out["flags"] == [True, False]
    assert out["dd"] == {"k": [1]}


def test_dict_subclasses_keep_their_type(tmp_path):
    path = tmp_path / "meta.pickle"
    dd = defaultdict(list)
    dd["k"].append(1)
    path.write_bytes(pickle.dumps({"od": OrderedDict([("z", 1)]), "dd": dd}, protocol=4))
    out = safe_load_pickle(path)
    assert type(out["od"]) is OrderedDict
    assert type(out["dd"]) is defaultdict and out["dd"]["missing"] == []


def test_bytes_in_sets_are_decoded(tmp_path):
    path = tmp_path / "meta.pickle"
    path.write_bytes(pickle.dumps({"s": {b"bird"}}, protocol=4))
    assert safe_load_pickle(path) == {"s": {"bird"}}


def test_bytes_are_decoded_to_str(tmp_path):
    path = tmp_path / "py2.pickle"
    path.write_bytes(pickle.dumps({b"key": [b"caf\xc3\xa9", b"bird"]}, protocol=2))
    assert safe_load_pickle(path) == {"key": ["café", "bird"]}


def test_protocol2_lists_dicts_tuples_load(tmp_path):
    # what AttnGAN metadata pickles hold, written at protocol 2 as the official code does
    path = tmp_path / "meta.pickle"
    obj = [[[1, 2], [3]], [[4]], {0: "<end>", 1: "bird"}, {"<end>": 0, "bird": 1}, (1, 2.5), "x", 2**70, None]
    path.write_bytes(pickle.dumps(obj, protocol=2))
    assert safe_load_pickle(path) == obj


_PY2_SET = b"\x80\x02c__builtin__\nset\nq\x00]q\x01(K\x01K\x02e\x85q\x02Rq\x03."  # Python 2.7: set([1, 2])


@pytest.mark.parametrize("source", ["python2", "python3-protocol2"])
def test_protocol2_set_loads(tmp_path, source):
    data = _PY2_SET if source == "python2" else pickle.dumps({1, 2}, protocol=2)
    assert b"__builtin__" in data
    assert pickle.loads(data, encoding="latin1") == {1, 2}  # the plain pickle module reads it
    path = tmp_path / "set.pickle"
    path.write_bytes(data)
    assert safe_load_pickle(path) == {1, 2}


# -- broken files --------------------------------------------------------------------------------------------------


def test_truncated_pickle_names_file(tmp_path):
    path = tmp_path / "captions.pickle"
    path.write_bytes(pickle.dumps([list(range(100)), {"a": 1}], protocol=2)[:-10])
    with pytest.raises(pickle.UnpicklingError) as exc:
        safe_load_pickle(path)
    assert not isinstance(exc.value, UnsafePickleError)
    assert str(path) in str(exc.value)


def test_not_a_pickle_names_file(tmp_path):
    path = tmp_path / "filenames.pickle"
    path.write_text("this is a text file\n", encoding="utf-8")
    with pytest.raises(pickle.UnpicklingError, match="filenames.pickle"):
        safe_load_pickle(path)


def test_missing_pickle(tmp_path):
    path = tmp_path / "nope.pickle"
    with pytest.raises(FileNotFoundError, match="nope.pickle"):
        safe_load_pickle(path)


# -- atomic writes ---------------------------------------------------------------------------------------------------


def test_write_text_and_bytes_atomic(tmp_path):
    p = tmp_path / "a" / "b" / "file.txt"
    write_text_atomic(p, "héllo\n")
    assert p.read_bytes() == "héllo\n".encode()
    write_text_atomic(p, "second")
    assert p.read_text(encoding="utf-8") == "second"
    q = tmp_path / "blob.bin"
    write_bytes_atomic(q, b"\x00\x01\xff")
    assert q.read_bytes() == b"\x00\x01\xff"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a", "blob.bin"]  # no temp files left
    assert [x.name for x in p.parent.iterdir()] == ["file.txt"]


def test_atomic_write_failure_keeps_old_content(tmp_path):
    p = tmp_path / "vocab.json"
    p.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(p, "w") as f:
        f.write("new partial content")
        raise RuntimeError("boom")
    assert p.read_text(encoding="utf-8") == "old"
    assert [x.name for x in tmp_path.iterdir()] == ["vocab.json"]


def test_atomic_write_failure_creates_nothing(tmp_path):
    p = tmp_path / "new.bin"
    with pytest.raises(KeyboardInterrupt), atomic_write(p) as f:
        f.write(b"x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p = tmp_path / "shared.json"
        write_text_atomic(p, "{}")
        plain = tmp_path / "plain.json"
        plain.write_text("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(plain.stat().st_mode) == 0o644
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


# -- JSON ----------------------------------------------------------------------------------------------------------


def test_json_round_trip(tmp_path):
    p = tmp_path / "d" / "x.json"
    obj = {"b": [1, 2.5, None, True], "a": {"nested": "é"}}
    write_json_atomic(p, obj)
    assert read_json(p) == obj
    text = p.read_text(encoding="utf-8")
    assert text.endswith("\n")
    assert text.index('"b"') < text.index('"a"')  # keys are not sorted
    write_json_atomic(p, [1, 2], indent=None)
    assert p.read_text(encoding="utf-8") == "[1, 2]\n"


def test_read_json_errors(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{\n  "a": 1,\n  "b": \n}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.json: invalid JSON at line 4"):
        read_json(p)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_json(tmp_path / "missing.json")
