# Two commands on a fresh clone: `make test` and `make figures`. Both create .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCALE ?= cpu
WORKERS ?= 2

.PHONY: test figures export report clean-venv

$(STAMP): requirements.txt settings.ini setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

# The library notebooks (nbdev_test), then pytest, which also runs every study notebook at smoke scale.
test: $(STAMP)
	TQDM_DISABLE=1 $(BIN)/nbdev_test --skip_folder_re '^(studies|[_.].*)$$' --n_workers $(WORKERS) --timing
	TQDM_DISABLE=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests

# Every study at the default cpu scale (SCALE=smoke|cpu|paper to change), figures and index into figures/.
figures: $(STAMP)
	$(BIN)/balstyle reproduce --scale $(SCALE)

# A static site under _site/: every executed notebook in _runs/ as a page, and an index of the papers' numbers beside ours
# (balstyle.report). REPORT_ARGS passes options, e.g. REPORT_ARGS="--scale cpu --screenshots figures/report".
report: $(STAMP)
	$(BIN)/balstyle report $(REPORT_ARGS)

# After editing notebooks: export the library and clean the notebooks.
export: $(STAMP)
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean

clean-venv:
	rm -rf $(VENV)
