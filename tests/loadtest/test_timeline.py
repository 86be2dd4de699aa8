"""Timeline windows and spike recovery, computed from cumulative Locust-style counters."""

from collections import Counter
from types import SimpleNamespace

from loadtest.timeline import Timeline, percentile, recovery_seconds


class Cumulative:
    """Cumulative counters shaped like Locust's StatsEntry, advanced by hand."""

    def __init__(self):
        self.num_requests = self.num_failures = 0
        self.response_times = Counter()
        self.total_response_time = 0.0

    def add(self, n, ms, failures=0):
        self.num_requests += n
        self.num_failures += failures
        self.response_times[ms] += n
        self.total_response_time += n * ms


def test_percentile_follows_locusts_rule():
    # the slowest 5 % reach the p95 value, as in Locust's own reports
    assert percentile({10: 96, 500: 4}, 100, 0.95) == 10
    assert percentile({10: 95, 500: 5}, 100, 0.95) == 500
    assert percentile({}, 0, 0.95) == 0


def test_windows_merge_only_their_samples():
    entry, timeline = Cumulative(), Timeline()
    for t in range(1, 11):
        entry.add(10, 20 if t <= 5 else 300, failures=1 if t > 5 else 0)
        timeline.sample(float(t), 4, entry)
    early, late = timeline.window(0, 5), timeline.window(5, 10)
    assert (early.num_requests, early.num_failures, early.get_response_time_percentile(0.95)) == (
        50,
        0,
        20,
    )
    assert (late.num_requests, late.num_failures, late.get_response_time_percentile(0.95)) == (
        50,
        5,
        300,
    )
    assert late.total_rps == 10.0 and late.avg_response_time == 300.0
    assert timeline.window(0, 10).summary()["p95_ms"] == 300


def _spike(recover_at):
    entry, timeline = Cumulative(), Timeline()
    for t in range(1, 61):
        slow = 30 <= t < recover_at
        entry.add(10, 2000 if slow else 20)
        timeline.sample(float(t), 10, entry)
    return timeline


def healthy(window):
    return window.num_requests > 0 and window.get_response_time_percentile(0.95) < 500


def test_recovery_is_measured_from_the_drop():
    # dropped back at t=30, slow until t=42: the first healthy 6 s window starts at 42 - 1
    assert recovery_seconds(_spike(42), 30, 60, 6, healthy) == 11
    assert recovery_seconds(_spike(30), 30, 60, 6, healthy) == 0  # never degraded


def test_no_recovery_before_the_end_is_none():
    assert recovery_seconds(_spike(99), 30, 60, 6, healthy) is None


def test_a_relapse_restarts_the_clock():
    entry, timeline = Cumulative(), Timeline()
    for t in range(1, 61):
        entry.add(10, 2000 if t in (31, 45) else 20)
        timeline.sample(float(t), 10, entry)
    assert recovery_seconds(timeline, 30, 60, 6, healthy) == 15


def test_empty_windows_are_not_healthy():
    timeline = Timeline()
    entry = SimpleNamespace(
        num_requests=0, num_failures=0, response_times={}, total_response_time=0.0
    )
    for t in range(1, 20):
        timeline.sample(float(t), 0, entry)
    assert recovery_seconds(timeline, 5, 19, 6, healthy) is None


def test_windows_count_back_pressure_beside_requests():
    entry, timeline = Cumulative(), Timeline()
    pushed_back = 0
    for t in range(1, 11):
        entry.add(10, 20)
        pushed_back += 3 if t > 5 else 0
        timeline.sample(float(t), 4, entry, pushed_back)
    assert timeline.window(0, 5).num_backpressure == 0
    late = timeline.window(5, 10)
    assert (late.num_requests, late.num_backpressure) == (50, 15)
    assert late.summary()["backpressure"] == 15
