# xe-oneshot: `make test` runs the whole suite (as root for the real-daemon, network
# namespace, loop-device and udev tests).
PYTHON ?= python3

.PHONY: test
test:
	$(PYTHON) -m pytest -q
