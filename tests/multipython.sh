#!/bin/bash
# `make test-pythons`: the unit and collector tests on the oldest and the newest Python
# the project supports (3.6 and 3.13, pyenv's interpreters), each in its own venv under
# build/ with the dependency versions pip picks for that interpreter. A missing
# interpreter is a failure, not a skip. PYTHONS="3.6 3.13" (default) picks the versions,
# TESTS the test files (default: the selection below); arguments go to pytest.
#
# Left out, because they test what only the main interpreter does: the packaging and
# system-integration tests (Debian's /usr/bin/python3, dpkg, udev, systemd: they run in
# `make test`), the benchmark (a developer tool on the main interpreter) and the house
# rules (static checks of the source, run by `make test`).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONS=${PYTHONS:-3.6 3.13}
root=$( (pyenv root) 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ -z "${TESTS:-}" ]; then
    for t in tests/test_*.py; do
        case $t in tests/test_integration_*|tests/test_bench.py|tests/test_house.py) ;; *) TESTS="${TESTS:-} $t" ;; esac
    done
fi

# the package's own requirements, as setup.cfg states them
requires=$(sed -n '/^install_requires *=/,/^[^ ]/{/^ /{s/^ *//;p}}' setup.cfg)

status=0
for version in $PYTHONS; do
    python=$(find "$root/versions" -maxdepth 3 -path "$root/versions/$version.*/bin/python3" \
             2>/dev/null | sort -V | tail -n 1)
    if [ -z "$python" ]; then
        echo "test-pythons: no Python $version under $root/versions (pyenv install $version)" >&2
        status=1
        continue
    fi
    venv="build/venv-$version"
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c pass 2>/dev/null; then
        rm -rf "$venv"
        "$python" -m venv "$venv"
        # the newest pip for this interpreter first (3.6's own pip 18 would take one
        # that no longer runs on it from an index without Requires-Python data)
        case $version in 3.6) pip="pip<22" ;; 3.7) pip="pip<24.1" ;; *) pip=pip ;; esac
        "$venv/bin/python" -m pip install -q -U "$pip"
    fi
    # shellcheck disable=SC2086
    "$venv/bin/python" -m pip install -q $requires -r tests/requirements.txt
    echo "== Python $("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])'):" \
        "$("$venv/bin/python" -m pip freeze | grep -i -E '^(psutil|sh|xattr|pytest)=' | tr '\n' ' ')"
    # shellcheck disable=SC2086
    "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" $TESTS || status=1
done
exit $status
