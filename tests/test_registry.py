"""The one registry every table of named things uses: the same refusal of a taken name and
the same error for an unknown one."""

import pytest

from precompute.registry import Registry
from precompute.types import SettingError


def test_entries_are_added_once_and_listed_sorted():
    colours = Registry("colour")
    colours.add("red", 1)
    assert colours.register("blue")(2) == 2  # the decorator returns the entry
    assert colours.names() == ["blue", "red"]
    assert list(colours) == ["blue", "red"]
    assert colours.items() == [("blue", 2), ("red", 1)]
    assert colours.get("red") == 1 and colours.check("blue") == "blue"
    assert "red" in colours and "green" not in colours and len(colours) == 2
    with pytest.raises(ValueError, match="colour name 'red' is taken"):
        colours.add("red", 3)
    assert colours.get("red") == 1  # the first entry is kept


@pytest.mark.parametrize("name", ["green", "", None, 3])
def test_an_unknown_name_names_the_option_and_the_valid_names(name):
    colours = Registry("colour", option="--paint")
    colours.add("red", 1)
    colours.add("blue", 2)
    with pytest.raises(SettingError) as err:
        colours.get(name)
    assert str(err.value) == f"--paint {name!r}: no such colour; valid: blue, red"


def test_the_option_defaults_to_the_kind():
    with pytest.raises(SettingError, match=r"^--test-split 'x': no such test split; valid: $"):
        Registry("test split").get("x")


def test_restored_undoes_what_was_registered_inside_it():
    colours = Registry("colour")
    colours.add("red", 1)
    with colours.restored() as same:
        assert same is colours
        colours.add("green", 2)
        assert colours.names() == ["green", "red"]
    assert colours.names() == ["red"]
    with pytest.raises(RuntimeError), colours.restored():  # an error inside undoes it too
        colours.add("blue", 3)
        raise RuntimeError
    assert colours.names() == ["red"] and colours.get("red") == 1
