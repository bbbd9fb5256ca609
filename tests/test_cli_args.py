"""The command line of xe-oneshot: options, usage errors, help; and section names."""

import pytest

from xe_oneshot import cli, sections


def test_sections_expand_groups_and_lists_in_publishing_order():
    assert sections.expand(["volumes,memory", "static"]) == ["os", "misc", "memory", "volumes"]
    assert sections.expand(["all"]) == ["os", "misc", "memory", "network", "volumes"]
    assert sections.expand(["ephemeral"]) == ["memory", "network", "volumes"]
    with pytest.raises(ValueError, match="unknown section 'disks'"):
        sections.expand(["memory,disks"])


def test_parse_args_forms():
    opts = cli.parse_args(["-s", "memory", "--section=network", "--root", "/r",
                           "--state-dir=/s", "--no-balloon", "-vv", "--threshold", "2.5",
                           "--max-age=60"])
    assert opts.sections == ["memory", "network"]
    assert (opts.root, opts.state_dir, opts.no_balloon, opts.verbose) == ("/r", "/s", True, 2)
    assert (opts.threshold, opts.max_age) == (2.5, 60.0)
    assert cli.parse_args(["--format", "json"]).print_keys is True


@pytest.mark.parametrize("argv, message", [
    (["--section"], "--section needs a value"),
    (["--bogus"], "unknown option --bogus"),
    (["extra"], "unexpected argument 'extra'"),
    (["--format", "xml"], "--format takes text or json"),
    (["--threshold", "-1"], "--threshold takes a number >= 0"),
    (["--max-age", "nan"], "--max-age takes a number >= 0"),
    (["--print=yes"], "--print takes no value"),
    (["--dry-run", "--print"], "exclude each other"),
])
def test_parse_args_errors(argv, message):
    with pytest.raises(cli.UsageError, match=message):
        cli.parse_args(argv)


def test_usage_errors_exit_2_with_one_line_and_usage(capsys):
    assert cli.main(["--section", "nope"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("xe-oneshot: unknown section 'nope'")
    assert err[1].startswith("usage: xe-oneshot")


def test_help_lists_sections_and_exit_codes(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for word in ("os, misc, memory, network, volumes", "ephemeral (memory network volumes)",
                 "3  no XenStore", "1  a section failed"):
        assert word in out
