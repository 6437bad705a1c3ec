# edgepack: `make demo` packages the bundled example, `make test` runs the default test suite.
VENV ?= .venv
PY ?= python3
BIN := $(VENV)/bin

.PHONY: setup demo test test-slow test-all tflm-cache bench system-deps clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,mediapipe-test]'
	# MediaPipe Tasks for tests/targets/test_mediapipe.py, without its dependency list: it pins absl-py~=2.3 while
	# tensorflow-model-optimization pins absl-py~=1.2 (pip: ResolutionImpossible); it runs with absl-py 1.4.
	$(BIN)/pip install -q --no-deps mediapipe==1.2.2
	touch $@

demo: setup
	$(BIN)/edgepack package examples/mnist/model.h5 --target android \
	  --recipe examples/mnist/recipe.yaml --calibration calibration_data/mnist/calib.npz \
	  --eval calibration_data/mnist/eval.npz --labels examples/mnist/labels.txt \
	  --out build/demo --force
	$(BIN)/edgepack inspect build/demo/model.tflite

test: setup
	$(BIN)/pytest -n 2 -q

# Exit 5 (no test collected: a checkout without slow tests) passes; any other failure fails.
test-slow: setup
	$(BIN)/pytest -n 2 -q -m "slow and not hardware" || [ $$? -eq 5 ]

# Build TFLite-Micro for the QEMU Cortex-M4 once (cached under ~/.cache/edgepack): needs EDGEPACK_TFLM_ROOT.
tflm-cache: setup
	$(BIN)/python -c "import os; from pathlib import Path; from edgepack.tflm.build import Toolchain, \
	build_library, find_tree; print(build_library(find_tree(Path(os.environ['EDGEPACK_TFLM_ROOT'])), \
	Toolchain.find()).archive)"

test-all: setup
	$(BIN)/pytest -n 2 -q -m "not hardware"

bench: setup
	$(BIN)/python bench/package_bench.py

# Debian packages the compile, ADB, QEMU and board-flashing tests use (they skip, saying why, without them).
system-deps:
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends adb gcc-arm-none-eabi libnewlib-arm-none-eabi \
	  qemu-system-arm binutils-arm-none-eabi libstdc++-arm-none-eabi-newlib cmake g++ gcc \
	  openjdk-17-jdk-headless chromium gdb-multiarch openocd

clean:
	rm -rf build $(VENV) .pytest_cache
