# The two commands a newcomer needs:  `make run`  (the bot, a worker, the default model, a local Discord)
# and  `make test`  (the test suite). Each creates or refreshes .venv and installs only when pyproject changed.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
# glibc malloc makes torch slow and erratic on these VMs; these settings gave stable, faster timings.
export MALLOC_MMAP_THRESHOLD_ ?= 17179869184
export MALLOC_TRIM_THRESHOLD_ ?= 17179869184
export MALLOC_TOP_PAD_ ?= 1073741824

.PHONY: run test lint model bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) --upgrade pip

$(VENV)/.stamp-run: pyproject.toml | $(PY)
	$(PIP) -e '.[bot,worker,embedded]'
	touch $@

$(VENV)/.stamp-test: pyproject.toml | $(PY)
	$(PIP) -e '.[bot,worker,embedded,train,train-large-encoders,dev]'
	touch $@ $(VENV)/.stamp-run

run: $(VENV)/.stamp-run
	$(VENV)/bin/captionbot run

test: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check .

# Rebuild the shipped default model from ../shared/data (slow: see README "The default model").
model: $(VENV)/.stamp-test
	bash training/make_default_model.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
