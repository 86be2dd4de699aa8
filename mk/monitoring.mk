# Monitoring as code (issue 4): rules, routing, dashboards, log pipeline, fire drill.
MON_BUILD := build/monitoring
# Dummy values only: enough for amtool to validate every receiver block.
AM_ALL_RECEIVERS := \
  -e alertmanager_pagerduty_routing_key=dummy-key -e alertmanager_slack_api_url=https://hooks.example.invalid/x \
  -e alertmanager_email_to=oncall@example.invalid -e alertmanager_email_from=vigil@example.invalid \
  -e alertmanager_smtp_smarthost=smtp.example.invalid:587 -e alertmanager_heartbeat_url=https://hb.example.invalid/x
# label set => receiver it must reach
AM_ROUTE_CASES := \
  "severity=page service=vigil-api alertname=ApiHighErrorRatio=>page" \
  "severity=ticket service=host alertname=NodeHighCpu=>ticket" \
  "severity=info service=vigil-api alertname=ApiFaultSwitchActive=>info" \
  "severity=info service=monitoring alertname=Watchdog=>heartbeat"

DRILL_API ?= http://127.0.0.1:8000
DRILL_PROMETHEUS ?= http://127.0.0.1:9090
DRILL_ALERTMANAGER ?= http://127.0.0.1:9093
DRILL_FLASK ?= $(BIN)/flask --app api
DRILL_RECEIVER_LOG ?=

CHECK_TARGETS += check-rules test-rules check-alertmanager check-routes check-dashboards
LINT_TARGETS += lint-monitoring
# Grafana's own LogQL grammar and dashboard schema from npm, pinned by the lockfile in
# dashboards/grafana-packages/ (the dashboard tests run them with node); `make setup` installs them.
DASHBOARD_NPM := dashboards/grafana-packages/node_modules/.package-lock.json

$(DASHBOARD_NPM): dashboards/grafana-packages/package.json dashboards/grafana-packages/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: apt-get install nodejs npm" >&2; exit 1; }
	npm ci --prefix dashboards/grafana-packages --no-audit --no-fund --loglevel=error
	touch $@

setup: $(DASHBOARD_NPM)

.PHONY: slo dashboards check-rules test-rules check-alertmanager check-routes check-dashboards \
	lint-monitoring test-monitoring drill drill-one

slo: setup ## regenerate SLO recording rules, burn-rate alerts and their tests from alerts/slo.yml
	$(PY) alerts/slo_rules.py

dashboards: setup ## rebuild dashboards/*.json from dashboards/vigil_dashboards/ (grafana-foundation-sdk)
	$(PY) dashboards/build_dashboards.py

check-rules: ## promtool check rules on every Prometheus rule file
	promtool check rules alerts/rules/*.yml

test-rules: ## promtool unit tests of every alert (quiet and firing cases)
	cd alerts/tests && promtool test rules *.yml

check-alertmanager: setup ## render alertmanager.yml with no receivers and with all, amtool check-config both
	rm -rf $(MON_BUILD)/am-none $(MON_BUILD)/am-all
	$(PY) alerts/alertmanager/render.py $(MON_BUILD)/am-none
	$(PY) alerts/alertmanager/render.py $(MON_BUILD)/am-all $(AM_ALL_RECEIVERS)
	amtool check-config $(MON_BUILD)/am-none/alertmanager.yml $(MON_BUILD)/am-all/alertmanager.yml

check-routes: check-alertmanager ## amtool config routes test: each severity reaches its receiver
	@set -e; for case in $(AM_ROUTE_CASES); do \
	  labels="$${case%=>*}"; want="$${case##*=>}"; \
	  for cfg in $(MON_BUILD)/am-none $(MON_BUILD)/am-all; do \
	    amtool config routes test --config.file=$$cfg/alertmanager.yml --verify.receivers=$$want $$labels >/dev/null 2>&1 \
	      || { echo "route: $$labels did not reach $$want ($$cfg)"; exit 1; }; \
	  done; echo "route ok: $$labels -> $$want"; done

check-dashboards: setup ## dashboards are current, valid and their PromQL parses (pytest)
	$(PY) -m pytest -q tests/monitoring/test_dashboards.py tests/monitoring/test_slo_generator.py

lint-monitoring: setup
	$(BIN)/ruff check alerts dashboards

test-monitoring: setup ## monitoring tests only (add PYTEST_ARGS='-m "not stack"' to skip the live ones)
	$(PY) -m pytest tests/monitoring $(PYTEST_ARGS)

# Defaults reach the single VM that `make appliance` (vagrant up) brought up: its address on
# every provider, and root on it through `vagrant ssh` (the command passed as one string).
DRILL_ADDRESS ?= 192.168.56.10
DRILL_EXEC ?= vagrant ssh -- sudo
DRILL_EXEC_JOIN ?= --exec-join
DRILL_ARGS ?=

drill: setup ## real-time fire drills on the appliance: [DRILL_ADDRESS=<ip>] [DRILL_EXEC=...] [DRILL_ARGS=...]
	$(PY) alerts/drills.py --address $(DRILL_ADDRESS) --exec "$(DRILL_EXEC)" $(DRILL_EXEC_JOIN) $(DRILL_ARGS)

drill-one: setup ## one time-unscaled error drill against a running API + Prometheus + Alertmanager
	$(PY) alerts/drill.py --api $(DRILL_API) --prometheus $(DRILL_PROMETHEUS) \
	  --alertmanager $(DRILL_ALERTMANAGER) --flask "$(DRILL_FLASK)" \
	  $(if $(DRILL_RECEIVER_LOG),--receiver-log $(DRILL_RECEIVER_LOG))
