"""report.html in process: the verdict table first, back-pressure apart, text escaped."""

from loadtest.report import write_html
from loadtest.thresholds import Result
from tests.loadtest.conftest import verdict_rows


def _report(**extra):
    return {
        "scenario": "stress",
        "host": "https://192.0.2.7",
        "started": 1_800_000_000.0,
        "ended": 1_800_000_300.0,
        "workers": 0,
        "totals": {"requests": 900, "failures": 3, "rps": 3.0, "backpressure": 12},
        "accounts": {"summary": "accounts: 40 of 40 registered before the measured phase"},
        "backpressure": [
            {
                "method": "POST",
                "name": "/api/v1/auth/login",
                "status": 429,
                "answers": 12,
                "waited_s": 14.2,
                "gave_up": 1,
            },
        ],
        "routes": [
            {
                "method": "GET",
                "name": "/api/v1/content",
                "requests": 900,
                "failures": 3,
                "rps": 3.0,
                "avg_ms": 50.0,
                "p50_ms": 40,
                "p95_ms": 120,
                "p99_ms": 300,
                "max_ms": 800,
            },
        ],
        "shape": {
            "held_users": 30,
            "broke_at_users": 40,
            "steps": [
                {
                    "step": 3,
                    "users": 30,
                    "passed": True,
                    "requests": 300,
                    "rps": 52.0,
                    "p95_ms": 800,
                    "error_ratio": 0.0,
                    "backpressure": 0,
                },
                {
                    "step": 4,
                    "users": 40,
                    "passed": False,
                    "requests": 320,
                    "rps": 53.0,
                    "p95_ms": 1400,
                    "error_ratio": 0.0,
                    "backpressure": 2,
                },
            ],
        },
        **extra,
    }


def test_the_verdict_comes_first_and_everything_is_escaped(tmp_path):
    results = [
        Result("step", "p(95) < 1000", 1400.0, False, "<b>slow</b>"),
        Result("run", "held_users >= 10", 30.0, True),
    ]
    path = tmp_path / "r" / "report.html"
    write_html(path, _report(), results, str(tmp_path / "r" / "locust.html"))
    text = path.read_text()
    assert "<title>Vigil stress: FAIL</title>" in text
    assert text.index("<h2>Verdict</h2>") < text.index("<h2>Back-pressure</h2>")
    assert text.index("<h2>Back-pressure</h2>") < text.index("<h2>Routes</h2>")
    assert verdict_rows(path) == [
        ["FAIL", "step", "p(95) < 1000", "1400.0", "<b>slow</b>"],  # as text, not markup
        ["PASS", "run", "held_users >= 10", "30.0", ""],
    ]
    assert "&lt;b&gt;slow&lt;/b&gt;" in text and "<b>slow</b>" not in text
    assert "12 back-pressure answers waited out and retried" in text
    assert "<td>/api/v1/auth/login</td>" in text
    assert "Held 30 users; broke at 40" in text
    assert "href='locust.html'" in text


def test_a_run_with_no_back_pressure_says_so(tmp_path):
    path = tmp_path / "report.html"
    write_html(path, _report(backpressure=[]), [Result("all", "rps > 1", 3.0, True)], None)
    text = path.read_text()
    assert "<span class='PASS'>PASS</span>" in text
    assert "None: no answer asked the users to back off." in text
    assert "locust.html" not in text
