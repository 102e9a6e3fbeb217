"""Latency specs and fault settings of the KATA emulator: parsing and range checks."""

from __future__ import annotations

import random

import pytest

from katagate.kata_emulator.faults import (
    Faults,
    check_int,
    check_latency,
    check_rate,
    check_seconds,
    parse_latency,
)


def test_fixed_latency():
    latency = parse_latency("5")
    assert latency.sample(random.Random(1)) == 5.0
    assert parse_latency("0.25").sample(random.Random(1)) == 0.25


def test_uniform_latency_stays_within_bounds():
    latency = parse_latency("uniform:2:4")
    rng = random.Random(7)
    samples = [latency.sample(rng) for _ in range(200)]
    assert all(2 <= s <= 4 for s in samples)
    assert max(samples) - min(samples) > 1


def test_exponential_latency_has_roughly_its_mean():
    latency = parse_latency("exp:10")
    rng = random.Random(3)
    mean = sum(latency.sample(rng) for _ in range(5000)) / 5000
    assert 9 < mean < 11


@pytest.mark.parametrize("spec", [
    "", "-1", "abc", "uniform:4:2", "uniform:1", "exp:0", "exp:1:2", "normal:1:2", "nan",
    "inf", "1e9",
])
def test_bad_latency_specs_are_refused_with_the_usage(spec):
    with pytest.raises(ValueError, match="--latency must be"):
        parse_latency(spec)
    with pytest.raises(ValueError, match="--latency"):
        check_latency(spec)


@pytest.mark.parametrize("text", ["-0.1", "1.5", "x", "nan"])
def test_rates_are_shares_0_to_1(text):
    with pytest.raises(ValueError, match=r"--error-rate must be a number in 0\.\.1"):
        check_rate("error_rate", text)


def test_valid_values_pass_through():
    assert check_rate("hang_rate", "0.5") == 0.5
    assert check_seconds("hang_seconds", "3") == 3.0
    assert check_int("concurrency_limit", "0", 0, 10) == 0


def test_integer_and_seconds_ranges_name_the_option():
    with pytest.raises(ValueError, match=r"--concurrency-limit must be a whole number in 0\.\.10"):
        check_int("concurrency_limit", "11", 0, 10)
    with pytest.raises(ValueError, match="--max-object-bytes"):
        check_int("max_object_bytes", "1.5", 1, 10)
    with pytest.raises(ValueError, match=r"--hang-seconds must be seconds in 0\.\.3600"):
        check_seconds("hang_seconds", "4000")


def test_faults_round_trip_and_ignore_unknown_keys():
    faults = Faults(latency="exp:3", error_rate=0.2)
    assert Faults.from_dict({**faults.to_dict(), "from_a_newer_version": 1}) == faults
    assert Faults().max_object_bytes == 256 * 1024 * 1024
    assert Faults().concurrency_limit == 100
