# Two commands a newcomer needs: `make demo` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONSTRAINTS := .ci/constraints.txt
EXTRAS := controller,onnxruntime,litert,openvino,executorch,runtime-recipes,dev

.PHONY: demo test bench lint protos system-deps clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgefarm demo --out edgefarm-out

test: $(STAMP) system-deps lint
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) protos/generate.py --check
	$(VENV)/bin/ruff check .
	# agent/ and protos/ run on the boards' own Pythons (JetPack 5 ships 3.8)
	$(VENV)/bin/vermin -t=3.8- --no-tips --violations edgefarm/__init__.py agent protos

bench: $(STAMP)
	$(PY) -m benchmarks

protos: $(STAMP)
	$(PY) protos/generate.py

system-deps:
	@bash .ci/system-deps.sh

clean:
	rm -rf $(VENV) .venv-protoc edgefarm-out benchmarks/out
