"""The commands' entry points (xe_oneshot/entry.py) beyond SIGINT (test_reliability_sigint)."""

import gc

from xe_oneshot import cli, entry


def test_a_collector_run_has_the_cyclic_gc_off_and_gives_it_back(monkeypatch):
    """A run lives some 20 ms: the collections its imports would set off cost ~1 ms of
    each run (BENCHMARKS.md); the caller's setting comes back afterwards."""
    seen = []
    monkeypatch.setattr(cli, "main", lambda: seen.append(gc.isenabled()) or 0)
    monkeypatch.setattr(entry, "exit_130_on_sigint", lambda: None)
    assert gc.isenabled()
    assert entry.xe_oneshot() == 0
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        entry.xe_oneshot()
        assert not gc.isenabled()          # off before: stays off
    finally:
        gc.enable()
