from __future__ import annotations

import pytest

from t2igan.registry import Registry, RegistryError


class Base:
    pass


def test_decorator_registers_and_returns_object():
    reg: Registry[type] = Registry("model")

    @reg.register("ssagan")
    class SSAGAN:
        pass

    assert SSAGAN.__name__ == "SSAGAN"  # the decorator hands the class back unchanged
    assert reg.get("ssagan") is SSAGAN
    assert reg["ssagan"] is SSAGAN
    assert "ssagan" in reg and "dfgan" not in reg and 3 not in reg


def test_call_form_names_items_len_iter():
    reg: Registry[object] = Registry("loss")
    f, g, h = object(), object(), object()
    assert reg.register("kl", f) is f
    reg.register("hinge", g)
    reg.register("bce-v2.1", h)
    assert reg.names() == ["bce-v2.1", "hinge", "kl"]
    assert list(reg) == ["bce-v2.1", "hinge", "kl"]
    assert reg.items() == [("bce-v2.1", h), ("hinge", g), ("kl", f)]
    assert len(reg) == 3


def test_duplicate_name_is_rejected_and_keeps_first():
    reg: Registry[object] = Registry("model")
    first, second = object(), object()
    reg.register("ssagan", first)
    with pytest.raises(RegistryError) as ei:
        reg.register("ssagan", second)
    assert str(ei.value).startswith("model 'ssagan' is already registered")
    assert isinstance(ei.value, KeyError)
    assert reg.get("ssagan") is first
    reg.register("ssagan", first)  # the very same object again is a no-op
    assert len(reg) == 1


def test_duplicate_via_decorator():
    reg: Registry[type] = Registry("model")
    reg.register("dfgan")(Base)
    with pytest.raises(RegistryError, match="model 'dfgan' is already registered"):

        @reg.register("dfgan")
        class Other:
            pass


def test_unknown_name_lists_sorted_choices_without_keyerror_quotes():
    reg: Registry[object] = Registry("model")
    for name in ("stackgan", "attngan", "dfgan"):
        reg.register(name, object())
    with pytest.raises(RegistryError) as ei:
        reg.get("x")
    assert str(ei.value) == "unknown model 'x'; choices: attngan, dfgan, stackgan"
    with pytest.raises(KeyError):
        reg["x"]
    empty: Registry[object] = Registry("dataset")
    with pytest.raises(RegistryError, match=r"unknown dataset 'cub'; choices: \(none registered\)"):
        empty.get("cub")


@pytest.mark.parametrize("bad", ["", "SSAGAN", "ss gan", "a/b", 3, None])
def test_invalid_names_raise_value_error_naming_them(bad):
    reg: Registry[object] = Registry("model")
    with pytest.raises(ValueError) as ei:
        reg.register(bad, object())  # type: ignore[arg-type]
    assert repr(bad) in str(ei.value)
    assert len(reg) == 0


def test_base_class_check():
    reg: Registry[type] = Registry("model", base=Base)

    class Good(Base):
        pass

    class Bad:
        pass

    reg.register("good", Good)
    with pytest.raises(TypeError, match=r"Bad.*model 'bad'.*not a subclass of Base"):
        reg.register("bad", Bad)
    assert reg.names() == ["good"]

    inst_reg: Registry[Base] = Registry("backbone", base=Base)
    inst = Good()
    inst_reg.register("inst", inst)
    with pytest.raises(TypeError, match="not an instance of Base"):
        inst_reg.register("str", "not a Base")  # type: ignore[arg-type]
    assert inst_reg.get("inst") is inst
