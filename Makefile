# Two commands matter: `make demo` and `make test` (see README.md). Both build .venv on first use
# from nothing but Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The layers: core (store, key format, config), gateway (data plane), admin (control plane),
# gatewaycli (the `gateway` command, which alone knows both planes).
PACKAGES := core gateway admin gatewaycli

.PHONY: demo test lint typecheck docs dist pytest bench bench-quick soak fuzz screenshots clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gateway --config config.example.toml demo

lint: $(STAMP)
	$(BIN)/ruff check $(PACKAGES) tests bench docs/hooks.py
	$(BIN)/ruff format --check $(PACKAGES) tests bench docs/hooks.py

typecheck: $(STAMP)
	$(BIN)/mypy --strict $(PACKAGES)

# The docs site (MkDocs, mkdocs.yml) into build/site, which git ignores. --strict: a broken link
# or anchor fails it. The configuration, command line and admin API references are made from the
# code as it builds (docs/hooks.py), so they cannot fall behind it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The sdist and the wheel of the authgateway distribution (the `gateway` command), into dist/.
dist: $(STAMP)
	$(BIN)/python -m build --outdir dist .

# Two processes (this machine has two cores), each taking whole modules so a module's shared
# gateway is built once: the suite in ~4 minutes instead of 6-10.
pytest: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadfile

test: lint typecheck docs pytest bench-quick

# The benchmark: nginx, a bare Python proxy and the gateway side by side (needs nginx
# and wrk: apt-get install nginx-light wrk). bench-quick runs every row briefly, in `make test`,
# so the harness never rots; it checks that every row works, not the performance targets.
bench: $(STAMP)
	$(BIN)/python bench/run.py

bench-quick: $(STAMP)
	$(BIN)/python bench/run.py --quick

# The full soak: 60 s over 1,000 keys, 100 revoked through the admin API.
soak: $(STAMP)
	SOAK_SECONDS=60 SOAK_KEYS=1000 $(BIN)/pytest tests/test_soak.py

# The h11 oracle's property-based campaign with a large budget (make test runs it with a small
# one): CAMPAIGN_EXAMPLES examples in each family of tests/test_campaign.py.
fuzz: $(STAMP)
	CAMPAIGN_EXAMPLES=2000 CAMPAIGN_SHRINK=1 $(BIN)/pytest tests/test_campaign.py -p no:cacheprovider

# The console screenshots of docs/admin.md, refreshed on purpose (make test writes no tracked file).
screenshots: $(STAMP)
	GATEWAY_SCREENSHOTS=docs $(BIN)/pytest tests/admin/test_console.py -k 3am

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist
