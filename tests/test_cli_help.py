"""Help texts: one default per option, in the format the option accepts."""

from __future__ import annotations

import argparse
import re

from nrnn_theory.cli import COMMANDS, build_parser


def _subparsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_each_option_states_its_default_once_in_the_accepted_format():
    for name, p in _subparsers().items():
        text = p.format_help()
        assert "(default: None)" not in text, name
        flat = re.sub(r"\s+", " ", text)
        for action in p._actions:
            if not action.option_strings or not action.help:
                continue
            help_text = p._get_formatter()._expand_help(action)
            stated = help_text.count("(default") + help_text.count("(unset:")
            assert stated <= 1, (name, help_text)
            assert "(default: (" not in help_text and "(default: [" not in help_text, help_text
        assert "(default: 0.1,0.2,0.3)" in flat or name != "robustness", flat
    assert set(_subparsers()) == set(COMMANDS)
