"""The corpus of real release-file trees (tests/resources/distros) and what each should give."""

from tests.support.paths import CHECKOUT

CORPUS = CHECKOUT / "tests" / "resources" / "distros"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


def expected(name):
    """A corpus tree's ``expected`` file: ``key=value`` lines, raw (not quoted)."""
    values = {}
    for line in (CORPUS / name / "expected").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values
