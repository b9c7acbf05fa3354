"""Random edits of a rules file never crash the reloader: each one is adopted or reported, and the
last good table keeps serving."""

from __future__ import annotations

import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.config import Overrides, embedded_rules_text, load_config
from router.plugins import builtin_registry, load_plugins
from router.reload import RulesWatcher
from router.state import RouterState

BASE = embedded_rules_text()
EDIT = st.tuples(
    st.integers(0, len(BASE)),
    st.integers(0, 40),
    st.text(alphabet=st.sampled_from(list("{}[]:,-'\" \n#*&!|>abc123")), max_size=12),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(edits=st.lists(EDIT, min_size=1, max_size=4))
def test_random_edits_are_adopted_or_reported_never_raised(edits):
    text = BASE
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut :]
    registry = builtin_registry()
    good = load_config(None, registry)
    plugins = load_plugins(entry_points=False)
    state = RouterState(registry, good, plugins)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "rules.yaml")
        with open(path, "w", encoding="utf-8") as file:
            file.write(text)
        adopted = RulesWatcher(state, path, Overrides()).reload()
    if adopted:
        assert state.config is not good and state.last_load_error is None
    else:
        assert state.config is good, "the last good table stays live"
        assert state.last_load_error and "\n" not in state.last_load_error and state.last_load_error.startswith(path)
