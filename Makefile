# FineTune — everything a developer runs. `make help` lists the targets.
SHELL := /bin/bash
CARGO ?= cargo
APP := target/debug/finetune-app
FT := target/debug/ft
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)
# One feature set for every build, so tests and `make run` share one build of
# the app, and the app always serves the bundled UI (ui/dist).
FEATURES := --features finetune-app/custom-protocol

.DEFAULT_GOAL := help
.PHONY: help setup build ui run device test test-rust test-ui test-e2e test-kill test-lora test-lora-quick bench bench-preference bench-grpo bench-distributed bench-kernels cuda-bundle check-interop check-peft check-gemma3 check-gguf fixtures fixtures-preference llama-cpp quantized-ggufs gguf-fixtures lint fmt clean-cache fuzz bench-big-data check-macos dist test-dist

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^##@/ {printf "\n\033[1m%s\033[0m\n", substr($$0, 5)} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Main
run: setup build ## Set up, build and open the desktop app on the default model and sample data
	bash scripts/run-app.sh $(APP)

test: setup ui check-macos ## Set up, build and run every test (engine, app shell, UI, end to end)
	$(MAKE) --no-print-directory test-ui test-rust test-e2e

##@ Building
setup: ## Install system packages, MLX, mlx-c, the default model, sample data, npm packages (idempotent)
	bash scripts/setup.sh

ui: setup ## Build the web UI into ui/dist
	npm --prefix ui run build

build: ui ## Build the engine, the ft command line and the desktop app (serving ui/dist)
	$(CARGO) build --workspace $(FEATURES)

device: build ## Show the machine, MLX backends and measured matmul speed
	$(FT) device

dist: setup ## Packages for this platform: Linux .deb + AppImage (target/dist/), macOS .app + .dmg; PROFILE=debug builds faster
	bash scripts/dist/build.sh

test-dist: ## The packages away from the clone: the .deb in a clean Debian root (mmdebstrap), the AppImage with the cache hidden (after make dist; root)
	bash scripts/dist/test_installed.sh

##@ Testing
check-macos: ## The macOS build on paper, in seconds: the real mlx-metal wheel's Mach-O load commands, the .app tree, deployment target, entitlements, bash 3.2 (docs/macos.md)
	bash scripts/check_macos.sh

test-rust: ## Engine and app-shell tests (cargo nextest, or cargo test without it)
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run --workspace $(FEATURES) --no-fail-fast
else
	$(CARGO) test --workspace $(FEATURES) --no-fail-fast
endif

test-e2e: build ## End-to-end: the real window under Xvfb, driven by tauri-driver
ifeq ($(shell uname -s),Linux)
	bash scripts/e2e.sh $(APP)
else
	@echo "test-e2e: tauri-driver has no macOS WebDriver; skipped on $(shell uname -s)"
endif

test-lora: setup ## LoRA tests: training, adapters (mlx-lm / PEFT / fused), exact resume
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run -p finetune --test training --test adapters --test resume
else
	$(CARGO) test -p finetune --test training --test adapters --test resume
endif

test-kill: setup ## 60 SIGKILLs at random moments of a run, each resumed; the run must end bit-identical to an uninterrupted one (~30 s)
ifeq ($(NEXTEST),yes)
	FINETUNE_KILLS=60 $(CARGO) nextest run -p finetune --test kill --no-capture
else
	FINETUNE_KILLS=60 $(CARGO) test -p finetune --test kill -- --nocapture
endif

test-lora-quick: setup ## A fast functional check of LoRA training (a few seconds)
	$(CARGO) test -p finetune --test training -- loss_falls first_step_loss adapters_are_written

FUZZ_SECONDS ?= 600
FUZZ_TARGETS := gguf safetensors bin config-json tokenizer data yaml template
fuzz: setup ## Fuzz every file reader for FUZZ_SECONDS (600) each, on stable (ft-fuzz: child workers, 4 GiB limit); findings in fuzz/crashes/
	$(CARGO) build -p ft-fuzz
	@failed=""; for t in $(FUZZ_TARGETS); do \
		target/debug/ft-fuzz $$t --seconds $(FUZZ_SECONDS) || failed="$$failed $$t"; \
	done; if [ -n "$$failed" ]; then echo "fuzz: findings in:$$failed (see fuzz/crashes/)"; exit 1; fi

test-ui: ## UI unit tests (Vitest, happy-dom)
	npm --prefix ui test

check-interop: setup ## Adapters trained by ft load in mlx-lm 0.32.2 with the same logits (makes a venv)
	bash scripts/interop/run.sh

bench: setup ## FineTune vs mlx_lm.lora vs PyTorch + PEFT, side by side on this machine (makes venvs; ~10 min)
	bash scripts/bench/run.sh

cuda-bundle: ## Build the CUDA bundle (ft + libmlx, in pieces) for a GPU machine; see scripts/cuda/
	bash scripts/cuda/bundle.sh

bench-preference: setup ## 50 DPO steps on the default model and the chitchat pairs: held-out accuracy, tokens/s and memory against SFT on the same rows (~10 min)
	bash scripts/bench/preference.sh

bench-grpo: setup ## 40 GRPO steps on the default model and generated arithmetic prompts: held-out reward before and after, sampling and training speed, memory (~15 min)
	bash scripts/bench/grpo.sh

bench-distributed: setup ## 1 vs 2 ranks on loopback (ring backend): FineTune (ft train start -n 2) against mlx_lm.lora under mlx.launch, tokens/s and scaling efficiency (makes a venv; ~10 min)
	bash scripts/bench/distributed.sh

bench-kernels: setup ## FineTune's CPU kernels vs MLX's ops vs PyTorch's, per kernel, forward and backward
	bash scripts/bench/kernels.sh

bench-big-data: setup ## Peak RSS of ft data inspect and ft train (5 steps) on generated 200 MB and 2 GB JSONL (slow: tokenizes ~4.4 GB)
	bash scripts/bench/big_jsonl.sh

check-peft: setup ## Adapters (LoRA and DoRA) exported by ft load in Hugging Face PEFT with the same logits (makes a venv)
	bash scripts/interop/peft.sh

check-gemma3: build ## The real Gemma 3 270M Q4_K_M GGUF through ft: info, greedy generation, 20 LoRA steps (prints the figures)
	bash scripts/check_gemma3.sh

check-gguf: setup llama-cpp ## llama.cpp referees ft's exports: loads f16/q8_0/q4_k_m GGUFs and the LoRA GGUF, same greedy text, perplexity within 1 % / 5 % (~25 min)
	bash scripts/check_gguf.sh

fixtures: setup ## Regenerate tests/fixtures/parity with PyTorch + transformers (makes a venv; rarely needed)
	bash scripts/fixtures/run.sh

fixtures-preference: setup ## Regenerate tests/fixtures/preference: TRL's DPO / IPO / ORPO losses, rewards and LoRA gradients on a fixed batch (makes a venv)
	bash scripts/fixtures/preference.sh

llama-cpp: ## Build llama.cpp's tools from the llama-cpp-python sdist into the cache (a long build; outside make test)
	bash scripts/build_llama_cpp.sh

quantized-ggufs: llama-cpp ## Requantize the real Gemma 3 / SmolLM2 GGUFs with llama-quantize (Q2_K, Q3_K_M, Q5_K_M, IQ4_NL, IQ4_XS) into the cache
	bash scripts/make_quantized_ggufs.sh

gguf-fixtures: llama-cpp ## Regenerate tests/fixtures/gguf/architectures with llama.cpp's convert_hf_to_gguf.py (uses the fixtures venv)
	$${FINETUNE_CACHE:-.cache}/venv-fixtures/bin/python scripts/fixtures/make_gguf_architectures.py

lint: setup ui ## rustfmt, clippy -D warnings, ESLint and svelte-check
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets $(FEATURES) -- -D warnings
	npm --prefix ui run lint

fmt: ## Format the Rust code
	$(CARGO) fmt --all

clean-cache: ## Delete the download cache (.cache/); the next setup downloads again
	rm -rf .cache
