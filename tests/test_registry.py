"""The registry of named parts: registering, lookups, messages, order, help."""

from __future__ import annotations

import pytest

from pixelprior._registry import Entry, Registry


def colours() -> Registry:
    registry = Registry("colour")
    registry.register("red", 1, "the first", options=("shade",), defaults={"shade": 2})
    registry.register("green", 2)
    registry.register("blue", 3, "the last")
    return registry


def test_register_returns_what_it_registered_and_stores_an_entry():
    registry = Registry("colour")
    marker = object()
    assert registry.register("red", marker, "help", options=["a", "b"]) is marker
    entry = registry.entry("red")
    assert isinstance(entry, Entry)
    assert (entry.name, entry.build, entry.help) == ("red", marker, "help")
    assert entry.options == ("a", "b") and entry.defaults == {}
    assert registry.get("red") is marker


def test_defaults_are_copied_not_shared():
    defaults = {"shade": 2}
    registry = Registry("colour")
    registry.register("red", 1, defaults=defaults)
    defaults["shade"] = 99
    assert registry.entry("red").defaults == {"shade": 2}


def test_registering_a_name_twice_is_an_error_that_names_it_and_the_kind():
    registry = colours()
    with pytest.raises(ValueError, match=r"colour 'red' is registered twice"):
        registry.register("red", 9)
    assert registry.get("red") == 1  # the first entry stands


def test_an_unknown_name_is_a_key_error_listing_the_known_names():
    with pytest.raises(KeyError) as caught:
        colours().get("purple")
    message = str(caught.value)
    assert "unknown colour 'purple'" in message
    assert "red, green, blue" in message  # every known name, in registration order


def test_entry_of_an_unknown_name_raises_the_same_message():
    with pytest.raises(KeyError, match="known: red, green, blue"):
        colours().entry("")


def test_decorator_form_registers_and_returns_the_function_unchanged():
    registry = Registry("method")

    @registry("double", help="twice", options=("factor",), defaults={"factor": 2})
    def double(x):
        return 2 * x

    assert double(4) == 8  # the decorated function is the function itself
    assert registry.get("double") is double
    entry = registry.entry("double")
    assert (entry.help, entry.options, entry.defaults) == ("twice", ("factor",), {"factor": 2})
    with pytest.raises(ValueError, match="registered twice"):
        registry("double")(lambda x: x)


def test_names_iteration_len_and_membership_keep_registration_order():
    registry = colours()
    assert registry.names() == ("red", "green", "blue")
    assert list(registry) == ["red", "green", "blue"]
    assert len(registry) == 3
    assert "green" in registry and "purple" not in registry and 3 not in registry
    assert Registry("empty").names() == () and len(Registry("empty")) == 0


def test_help_text_joins_the_names_in_order_with_the_separator():
    registry = Registry("colour")
    for name in ("red", "green", "blue"):
        registry.register(name, 0)
    assert registry.help_text() == "red | green | blue"
    assert registry.help_text(", ") == "red, green, blue"
    assert Registry("empty").help_text() == ""


def test_help_text_includes_each_parts_help():
    text = colours().help_text()
    assert "the first" in text and "the last" in text
