"""Shared fixtures: the real XenStore daemon, and CI's rule that no test may skip."""

import os

import pytest

from tests.support.xenstored import Unavailable, XenStored

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

#: Shared fixtures: the reliability tests' (``daemon``, ``proxy``, ``full_guest``),
#: a network namespace (``ns``), a staged install and PATH stubs (``staged``, ``stubs``).
#: A fixture name is defined once in the whole suite (tests/test_house.py checks it).
pytest_plugins = ("tests.support.reliability", "tests.support.netns", "tests.support.integration_support")


def _start(tmp_path_factory, name, seed=()):
    try:
        return XenStored(tmp_path_factory.mktemp(name), seed).start()
    except Unavailable as err:
        pytest.skip("real xenstored unavailable: %s" % err)


@pytest.fixture(scope="module")
def xenstored(tmp_path_factory):
    """A real oxenstored shared by the tests of one module; XENSTORED_PATH is not set
    globally: use ``xenstored.env()`` or ``monkeypatch.setenv``."""
    daemon = _start(tmp_path_factory, "xsd")
    yield daemon
    daemon.stop()


@pytest.fixture
def fresh_xenstored(tmp_path_factory):
    """A real oxenstored of the test's own (an empty store)."""
    daemon = _start(tmp_path_factory, "xsd1")
    yield daemon
    daemon.stop()


@pytest.fixture
def xs_env(fresh_xenstored, monkeypatch):
    """A fresh daemon with XENSTORED_PATH exported to the test's process."""
    monkeypatch.setenv("XENSTORED_PATH", str(fresh_xenstored.socket))
    return fresh_xenstored


@pytest.fixture
def state(tmp_path):
    """The collector's --state-dir for one test (not created: the collector makes it)."""
    return tmp_path / "state"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skip is a failure: a test that could not run proved nothing."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = "skipped in CI (counts as a failure): %s" % (reason,)


#: The Xen tier (tests/test_xen_guest.py: minutes, a whole Xen host under qemu) runs only
#: when asked for: ``XE_ONESHOT_XEN=1`` (``make test-xen``). Otherwise its tests are
#: deselected (reported as such), never skipped: a skip would read as "could not run".
XEN_TIER = os.environ.get("XE_ONESHOT_XEN", "") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "xen: the Xen tier, run by `make test-xen` "
                            "(XE_ONESHOT_XEN=1); deselected otherwise")


def pytest_collection_modifyitems(config, items):
    if XEN_TIER:
        return
    xen = [item for item in items if item.get_closest_marker("xen")]
    if xen:
        config.hook.pytest_deselected(items=xen)
        items[:] = [item for item in items if not item.get_closest_marker("xen")]
