# The two commands a newcomer needs:  `make run`  (the bot, a worker, the default model, a local Discord)
# and  `make test`  (the test suite). Each creates or refreshes .venv and installs only when pyproject changed.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
# glibc malloc makes torch slow and erratic on these VMs; these settings gave stable, faster timings.
export MALLOC_MMAP_THRESHOLD_ ?= 17179869184
export MALLOC_TRIM_THRESHOLD_ ?= 17179869184
export MALLOC_TOP_PAD_ ?= 1073741824

.PHONY: run test lint typecheck model bench clean

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
	$(MAKE) --no-print-directory typecheck
	$(PY) -m pytest

lint: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check .

# mypy (settings in pyproject.toml) on the whole package; `make typecheck TYPED=captionbot.bot` checks one part.
# mypy cannot follow setup.py's package map (bot/ installs as captionbot.bot), so it reads the code through a
# tree of links laid out as installed (build/typecheck/captionbot/bot -> bot/, ...).
TYPED ?= captionbot
typecheck: $(VENV)/.stamp-test
	rm -rf build/typecheck && mkdir -p build/typecheck/captionbot
	for f in captionbot/*.py $$(dirname captionbot/*/__init__.py) bot inference export training; do \
	  ln -s "$(CURDIR)/$$f" build/typecheck/captionbot/$$(basename $$f); done
	cd build/typecheck && $(abspath $(PY)) -m mypy --config-file $(CURDIR)/pyproject.toml --cache-dir $(CURDIR)/.mypy_cache $(addprefix -p ,$(TYPED))

# Rebuild the shipped default model from ../shared/data (slow: see README "The default model").
model: $(VENV)/.stamp-test
	bash training/make_default_model.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache build/typecheck
