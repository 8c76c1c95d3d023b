# One entry point for people and CI. Each target creates the virtual environment it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# eland needs transformers<5, which pins tokenizers below the version tmd uses: it lives in its
# own environment that sees .venv's packages (torch, elasticsearch) behind its own.
ELAND_VENV ?= .venv-eland

.PHONY: venv eland-venv up test test-quick bench clean peers-venvs images

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -c constraints.txt -e '.[worker,test]'
	touch $@

$(ELAND_VENV)/.installed: $(VENV)/.installed
	$(PYTHON) -m venv $(ELAND_VENV)
	# only the torch pin: constraints.txt also pins .venv's transformers 5 (the real-model test), which eland refuses
	grep -E '^torch==' constraints.txt > $(ELAND_VENV)/constraints.txt
	$(ELAND_VENV)/bin/python -m pip install -q -c $(ELAND_VENV)/constraints.txt 'eland>=9,<10' 'transformers>=4.40,<5' scikit-learn
	# eland imports sentence-transformers even without its [pytorch] extra; its own deps come from .venv
	$(ELAND_VENV)/bin/python -m pip install -q --no-deps 'sentence-transformers<6'
	$(PY) -c "import sysconfig; print(sysconfig.get_path('purelib'))" > \
	    "$$($(ELAND_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/tmd-venv.pth"
	touch $@

venv: $(VENV)/.installed

eland-venv: $(ELAND_VENV)/.installed

# Serving peers for benchmarks/peers.py, each in its own environment beside the same torch; never tmd's dependencies.
PEERS ?= .peers
PEER_PKGS_kserve := 'kserve>=0.15'
PEER_PKGS_torchserve := 'torchserve>=0.12' torch-model-archiver pyyaml numpy psutil packaging pillow
PEER_PKGS_ray := 'ray[serve]>=2.40'
PEER_PKGS_mlserver := 'mlserver>=1.6' 'uvloop<0.22'  # mlserver 1.7's inference pool calls asyncio.get_event_loop() outside a loop, which uvloop 0.22 refuses
PEER_PKGS_pytriton := 'nvidia-pytriton>=0.5'  # its Triton stub links libpython3.X.so.1.0: $(PYTHON) must be built with a shared libpython (pytriton_server.py points the stub at it)
PEER_PKGS_plot := matplotlib
$(PEERS)/%/.installed: constraints.txt
	$(PYTHON) -m venv $(PEERS)/$*
	$(PEERS)/$*/bin/python -m pip install -q -c constraints.txt $(if $(filter plot,$*),,torch==2.13.0) $(PEER_PKGS_$*)
	touch $@

peers-venvs: $(addprefix $(PEERS)/,$(addsuffix /.installed,kserve torchserve ray mlserver pytriton plot))  ## KServe, TorchServe, Ray Serve, MLServer, PyTriton (+ matplotlib)

# The two images (operator/Dockerfile, worker/Dockerfile) as OCI archives under dist/images/, built
# without a Docker daemon or a registry (needs root, mmdebstrap, buildah: see images/build.sh).
IMAGE_INPUTS := images/build.sh operator/Dockerfile worker/Dockerfile .dockerignore pyproject.toml constraints.txt \
                README.md $(shell find tmd -name '*.py' -not -path '*/__pycache__/*')
dist/images/.built: $(VENV)/.installed $(IMAGE_INPUTS)
	PYTHON=$(PY) bash images/build.sh
	touch $@

images: dist/images/.built  ## the control-plane and worker images

up: venv  ## start localkube, the operator and the Elasticsearch-compatible API
	$(PY) -m tmd up

test: venv eland-venv  ## the whole test suite
	TMD_ELAND_PYTHON=$(abspath $(ELAND_VENV))/bin/python $(PY) -m pytest

test-quick: venv  ## everything but the slow end-to-end tests
	$(PY) -m pytest -m "not slow"

bench: venv
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(ELAND_VENV) .pytest_cache dist/images
