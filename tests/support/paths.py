"""Where things are: the checkout the tests run from, and the guest's home in XenStore."""

from pathlib import Path

#: The project's checkout (the directory holding ``xe_oneshot/`` and ``tests/``).
CHECKOUT = Path(__file__).resolve().parents[2]

#: The guest's home in XenStore as the harness's daemon sees it: every connection is
#: dom0 there, so relative paths land under domain 0 (tests/support/xenstored.py).
HOME = "/local/domain/0"
