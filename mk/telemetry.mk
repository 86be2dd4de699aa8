# Telemetry (issue 3): metrics, JSON logs, fault switches. Its test tier and benchmark.
.PHONY: test-telemetry bench-telemetry faults-status

test-telemetry: setup ## telemetry tests: real gunicorn workers, exact metrics, JSON logs, faults
	$(PY) -m pytest tests/telemetry $(PYTEST_ARGS)

bench-telemetry: setup ## requests/s of the same endpoints with telemetry on vs off (wrk)
	$(PY) bench/bench_telemetry.py $(BENCH_ARGS)

faults-status: setup ## show the fire-drill fault switches of the configured database
	$(BIN)/flask --app api faults status
