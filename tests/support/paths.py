"""Where things are: the checkout the tests run from."""

from pathlib import Path

#: The project's checkout (the directory holding ``xe_oneshot/`` and ``tests/``).
CHECKOUT = Path(__file__).resolve().parents[2]
