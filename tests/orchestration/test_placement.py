"""How much each long-lived role reserves: as asked where everything fits, scaled by one factor where not."""

from __future__ import annotations

import pytest

from orchestration.placement import Reservation, Role, reservations


def test_roles_that_fit_get_what_they_ask_for():
    got = reservations([Role("samplers", 2, 1.0), Role("scorers", 1, 1.0), Role("trainer", 1, 2.0, 1.0)], 8, 1)
    assert got == {
        "samplers": Reservation(1.0, 0.0, False),
        "scorers": Reservation(1.0, 0.0, False),
        "trainer": Reservation(2.0, 1.0, False),
    }


def test_a_laptop_scales_every_role_by_one_factor():
    # the default preset on 2 cores: 2 × 0.5 + 2 × 0.5 + 1 × 2 = 4 CPUs asked, 2 there: everything halves
    got = reservations([Role("samplers", 2, 0.5), Role("scorers", 2, 0.5), Role("trainer", 1, 2.0)], 2, 0)
    assert got["samplers"] == Reservation(0.25, 0.0, True) and got["trainer"] == Reservation(1.0, 0.0, True)
    assert sum(r.cpus * n for r, n in zip(got.values(), (2, 2, 1))) <= 2


def test_scaled_reservations_never_exceed_the_cluster():
    # 3 × 1 asked of 2 CPUs: 2/3 each, rounded down to Ray's 1e-4 units so that all three fit
    got = reservations([Role("a", 3, 1.0)], 2, 0)
    assert got["a"].cpus == 0.6666 and 3 * got["a"].cpus <= 2


def test_gpus_are_shared_the_same_way_and_missing_gpus_are_an_error():
    got = reservations([Role("samplers", 2, 1.0, 1.0), Role("trainer", 2, 1.0, 1.0)], 16, 2)
    assert got["trainer"].gpus == 0.5 and got["trainer"].colocated and got["trainer"].cpus == 1.0
    with pytest.raises(ValueError, match="ask for 2 GPUs and the cluster has none"):
        reservations([Role("trainer", 2, 1.0, 1.0)], 16, 0)
