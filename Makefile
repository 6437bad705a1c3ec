# edgepack: `make demo` packages the bundled example, `make test` runs the default test suite.
VENV ?= .venv
PY ?= python3
BIN := $(VENV)/bin

.PHONY: setup demo test test-all bench system-deps clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/edgepack package examples/mnist/model.h5 --target android \
	  --recipe examples/mnist/recipe.yaml --calibration calibration_data/mnist/calib.npz \
	  --eval calibration_data/mnist/eval.npz --labels examples/mnist/labels.txt \
	  --out build/android --force
	$(BIN)/edgepack inspect build/android/model.tflite

test: setup
	$(BIN)/pytest -n 2 -q

test-all: setup
	$(BIN)/pytest -n 2 -q -m "not hardware"

bench: setup
	$(BIN)/python bench/package_bench.py

# Debian packages the compile, ADB, QEMU and board-flashing tests use (they skip, saying why, without them).
system-deps:
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends adb gcc-arm-none-eabi libnewlib-arm-none-eabi \
	  qemu-system-arm binutils-arm-none-eabi libstdc++-arm-none-eabi-newlib cmake g++ gdb-multiarch openocd

clean:
	rm -rf build $(VENV) .pytest_cache
