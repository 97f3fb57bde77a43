"""Settings declared once: kinds of values, validation, options made from declarations, and
library messages shown in flags."""

import argparse
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minireptile.cli.options import add_setting_options, as_flags, config_from_args
from minireptile.errors import InputError
from minireptile.problems.sine import SineConfig
from minireptile.runs.config import TrainConfig
from minireptile.settings import COUNT, COUNT_OR_ZERO, NON_NEGATIVE, POSITIVE, Kind, declared


@pytest.mark.parametrize("kind, good, bad", [
    (COUNT, [1, 7, 10**9], [0, -1, 1.5, True, "3", None]),
    (COUNT_OR_ZERO, [0, 3], [-1, 2.0, False]),
    (POSITIVE, [1e-300, 0.5, 3], [0, -0.1, math.nan, math.inf, True]),
    (NON_NEGATIVE, [0, 0.0, 2.5], [-1e-9, -math.inf, math.nan]),
    (Kind("float", minimum=0, maximum=1, above_minimum=True), [1e-9, 1.0], [0, 1.0001]),
    (Kind("float", minimum=0, maximum=180, below_maximum=True), [0, 179.9], [180, -0.5]),
])
def test_kinds_accept_exactly_their_values(kind, good, bad):
    assert all(kind.accepts(v) for v in good), good
    assert not any(kind.accepts(v) for v in bad), bad


def test_kinds_describe_what_they_accept():
    assert [k.describe() for k in (COUNT, COUNT_OR_ZERO, POSITIVE, NON_NEGATIVE)] == [
        "a positive integer", "an integer >= 0", "a positive number", "a number >= 0"]
    assert Kind("float", minimum=0, maximum=1, above_minimum=True).describe() == \
        "a number in (0, 1]"
    assert Kind("float", minimum=0, maximum=180, below_maximum=True).describe() == \
        "a number in [0, 180)"


@given(st.integers(min_value=-5, max_value=5))
def test_parsing_an_integer_agrees_with_accepts(value):
    if COUNT.accepts(value):
        assert COUNT.parse(str(value)) == value
    else:
        with pytest.raises(ValueError, match=f"expected a positive integer, got {value}"):
            COUNT.parse(str(value))


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e400"])
def test_parsing_refuses_non_finite_numbers(text):
    with pytest.raises(ValueError, match=r"\(finite\)"):
        NON_NEGATIVE.parse(text)


def test_a_configuration_names_its_first_bad_setting_as_a_parameter():
    with pytest.raises(InputError, match=r"^inner_iters=0: expected a positive integer$"):
        TrainConfig(inner_iters=0).validate()
    with pytest.raises(InputError, match=r"^weight_decay=1.5: expected a number in \(0, 1\]$"):
        TrainConfig(weight_decay=1.5).validate()
    with pytest.raises(InputError, match=r"^outer='rmsprop': expected one of 'adam', 'sgd'$"):
        SineConfig(outer="rmsprop").validate()
    with pytest.raises(InputError, match=r"^inner_batch=51: expected an integer in \[1, 50\]$"):
        SineConfig(inner_batch=51).validate()


@pytest.mark.parametrize("config", [TrainConfig, SineConfig])
def test_options_made_from_declarations_round_trip_to_the_configuration(config):
    parser = argparse.ArgumentParser()
    add_setting_options(parser, config)
    assert config_from_args(config, parser.parse_args([])) == config()
    name, declaration = [(n, d) for n, d in declared(config) if d.kind.type == "int"][0]
    flag = "--" + name.replace("_", "-")
    args = parser.parse_args([flag, "7"])
    assert getattr(config_from_args(config, args), name) == 7
    with pytest.raises(SystemExit):
        parser.parse_args([flag, "-1"])


def test_evaluation_options_default_to_none_so_the_run_decides():
    parser = argparse.ArgumentParser()
    add_setting_options(parser, TrainConfig, ("shots", "sgd"), defaults=False)
    assert vars(parser.parse_args([])) == {"shots": None, "sgd": None}


def test_aliases_give_the_same_setting():
    parser = argparse.ArgumentParser()
    add_setting_options(parser, SineConfig, ("iterations", "inner_lr"))
    a = parser.parse_args(["--iterations", "5", "--inner-lr", "0.5"])
    b = parser.parse_args(["--meta-iters", "5", "--learning-rate", "0.5"])
    assert vars(a) == vars(b) == {"iterations": 5, "inner_lr": 0.5}


@pytest.mark.parametrize("message, expected", [
    ("maml=True needs sgd=True and weight_decay=1: x",
     "--maml needs --sgd and --weight-decay 1: x"),
    ("changed: no_flag=1, within_alphabet=False (checkpoint: True)",
     "changed: no_flag=1, no --within-alphabet (checkpoint: True)"),
    ("combination='g1+g2' needs sgd=True", "--combination 'g1+g2' needs --sgd"),
    ("lower learning_rate=0.5 or eval_iters=3", "lower --learning-rate 0.5 or --eval-iters 3"),
    ("with replacement use inner_batch <= 5", "with replacement use --inner-batch <= 5"),
    ("the 20 classes of the training split", "the 20 classes of the training split"),
])
def test_library_messages_are_shown_in_flags(message, expected):
    flags = {name: "--" + name.replace("_", "-") for name in (
        "maml", "sgd", "weight_decay", "within_alphabet", "combination", "learning_rate",
        "eval_iters", "inner_batch", "classes")}
    assert as_flags(message, flags) == expected
