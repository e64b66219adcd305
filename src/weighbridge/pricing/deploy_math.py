"""The deployment cost arithmetic on plain numbers - peak rate, instances for the peak, monthly
capacity, break-even volume - kept apart from the scenario and the store so each formula can be
checked by hand. ``deploy_cost.py``'s docstring defines every term.
"""

from __future__ import annotations

import math


def peak_rps(monthly_requests: float, operating_seconds: float, peak_to_average: float) -> float:
    return monthly_requests / operating_seconds * peak_to_average


def instances_for_peak(monthly_requests: float, operating_seconds: float, peak_to_average: float,
                       capacity_rps: float) -> int:
    need = peak_rps(monthly_requests, operating_seconds, peak_to_average) / capacity_rps
    return max(1, math.ceil(need - 1e-9))


def monthly_capacity(capacity_rps: float, operating_seconds: float, peak_to_average: float) -> float:
    """Requests a month one instance carries when it is sized for the peak."""
    return capacity_rps * operating_seconds / peak_to_average


def break_even(fixed_self: float, per_instance: float, capacity_per_month: float, per_request_self: float,
               per_request_api: float, fixed_api: float = 0.0) -> float | None:
    """The volume (requests/month) from which self-hosting stays cheaper; None when it never does,
    0 when it is cheaper at any volume. See the module docstring for the formula."""
    a = per_request_api - per_request_self
    C, I, F, Fa = capacity_per_month, per_instance, fixed_self, fixed_api
    if a <= 0 or a * C <= I:
        return None
    # last instance step n whose start still has the API cheaper: n(aC − I) < F − Fa + aC
    bound = (F - Fa + a * C) / (a * C - I)
    n0 = math.ceil(bound) - 1
    if n0 < 1:
        return 0.0
    return min((F - Fa + I * n0) / a, n0 * C)


def self_hosted_monthly(volume: float, *, fixed: float, per_instance: float, capacity_per_month: float,
                        per_request: float) -> float:
    n = max(1, math.ceil(volume / capacity_per_month - 1e-9))
    return fixed + per_instance * n + per_request * volume
