# Load-test verbs (issue 6). Included by the Makefile.
#   make load SCENARIO=smoke HOST=http://127.0.0.1:8000            headless, ends by itself
#   make load SCENARIO=load USERS=50 DURATION=10m RAMP=2m HOST=...   parameters without code edits
#   make load SCENARIO=spike WEB=1                                   Locust's web UI on 127.0.0.1:8089
#   make load SCENARIO=stress PROCESSES=2                            one master + 2 local workers
#   make load SCENARIO=soak WORKERS=2   +   make load-worker MASTER=<master ip>   on other machines
# Non-loopback hosts are refused unless named in ALLOWED_HOSTS (the appliance under test).
# Accounts are registered at ACCOUNTS_RATE before the measured phase unless ACCOUNTS=register.
.PHONY: load load-worker test-loadtest check-loadtest

SCENARIO ?= smoke
HOST ?= http://127.0.0.1:8000
REPORT_DIR ?= reports/$(SCENARIO)-$(shell date -u +%Y%m%dT%H%M%SZ)
REPORT_DIR := $(REPORT_DIR)
PROM_PORT ?= 9646
PROM_BIND ?= 127.0.0.1
MASTER_PORT ?= 5557
WEB_PORT ?= 8089

# Each set variable becomes the VIGIL_LOAD_* setting the shapes and personas read.
_LOAD_VARS := USERS:VIGIL_LOAD_USERS DURATION:VIGIL_LOAD_DURATION RAMP:VIGIL_LOAD_RAMP \
  STEP_USERS:VIGIL_LOAD_STRESS_STEP_USERS STEP_DURATION:VIGIL_LOAD_STRESS_STEP_DURATION \
  MAX_STEPS:VIGIL_LOAD_STRESS_MAX_STEPS SPIKE_MULTIPLIER:VIGIL_LOAD_SPIKE_MULTIPLIER \
  SPIKE_DURATION:VIGIL_LOAD_SPIKE_DURATION SPIKE_RECOVERY:VIGIL_LOAD_SPIKE_RECOVERY \
  THINK_TIME:VIGIL_LOAD_THINK_TIME THRESHOLDS:VIGIL_LOAD_THRESHOLDS \
  ALLOWED_HOSTS:VIGIL_LOAD_ALLOWED_HOSTS ACCOUNTS:VIGIL_LOAD_ACCOUNTS \
  ACCOUNTS_RATE:VIGIL_LOAD_ACCOUNTS_RATE ACCOUNTS_FILE:VIGIL_LOAD_ACCOUNTS_FILE \
  BACKOFF_RETRIES:VIGIL_LOAD_BACKOFF_RETRIES BACKOFF_MAX_WAIT:VIGIL_LOAD_BACKOFF_MAX_WAIT
_LOAD_ENV := $(strip $(foreach pair,$(_LOAD_VARS),$(if $($(word 1,$(subst :, ,$(pair)))),\
  $(word 2,$(subst :, ,$(pair)))='$($(word 1,$(subst :, ,$(pair))))')))

# Headless runs keep the console to progress lines, warnings and the verdict; Locust's INFO
# lines go to locust.log in the report directory.
_LOAD_MODE := $(if $(WEB),--web-host 127.0.0.1 --web-port $(WEB_PORT),--headless --only-summary)
_LOAD_DIST := $(if $(PROCESSES),--processes $(PROCESSES)) \
  $(if $(WORKERS),--master --expect-workers $(WORKERS) --master-bind-port $(MASTER_PORT))

load: setup ## run a load scenario: SCENARIO=smoke|load|stress|spike|soak HOST=http://... (see README)
	$(_LOAD_ENV) $(BIN)/locust -f loadtest/locustfile.py --scenario $(SCENARIO) --host $(HOST) \
	  $(_LOAD_MODE) $(_LOAD_DIST) --report-dir $(REPORT_DIR) --html $(REPORT_DIR)/locust.html \
	  --csv $(REPORT_DIR)/locust --logfile $(REPORT_DIR)/locust.log \
	  --prometheus-port $(PROM_PORT) --prometheus-bind $(PROM_BIND) $(LOCUST_ARGS)

load-worker: setup ## a Locust worker for a master elsewhere: MASTER=<ip> [PROCESSES=N]
	@test -n "$(MASTER)" || { echo "MASTER=<address of the locust master> is required"; exit 2; }
	$(BIN)/locust -f loadtest/locustfile.py --worker --master-host $(MASTER) \
	  --master-port $(MASTER_PORT) $(if $(PROCESSES),--processes $(PROCESSES)) $(LOCUST_ARGS)

test-loadtest: setup ## load-test tests only (shapes, thresholds, real headless runs)
	$(PY) -m pytest tests/loadtest $(PYTEST_ARGS)

CHECK_TARGETS += check-loadtest
check-loadtest: setup ## every scenario's thresholds parse
	$(PY) -c 'from loadtest import params, thresholds; \
	  [thresholds.load(None, s) for s in params.SCENARIOS]; print("thresholds: ok")'
