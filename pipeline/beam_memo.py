"""One of Beam's per-run costs, paid once per DoFn instead of at every call: its state and timer specs.

Beam asks ``apache_beam.transforms.userstate.get_dofn_specs(dofn)`` whether a DoFn keeps state or
timers at each step that touches it: when a ParDo is made, several times at every translation of the
graph to its runner form, and twice when a worker builds the DoFn's bundle processor. Each call looks
at the signature of every method of the DoFn (``inspect.signature``): 440 calls for a small local
import, 0.1 of its 0.5 CPU-seconds in the launcher's process.

The answer is a function of the DoFn object alone (its methods' default arguments), so it is kept
per object (weakly: a DoFn's entry goes with it) after its first computation: 110 computations
instead of 440, and 0.53 → 0.44 CPU-seconds an import (tests/test_beam_memo.py, and the closing
notes of issue 18). A DoFn Beam cannot weakly reference or hash is computed at every call, as
before. ``install`` is idempotent; the launcher installs it at import.
"""

from __future__ import annotations

import weakref

from apache_beam.transforms import userstate

_beams_own = userstate.get_dofn_specs
_specs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def dofn_specs(dofn) -> tuple[set, set]:  # noqa: ANN001 (a DoFn)
    """``get_dofn_specs(dofn)``: (state specs, timer specs), computed once per DoFn object."""
    try:
        return _specs[dofn]
    except (KeyError, TypeError):  # not seen yet; or not hashable or weakly referable: computed each time
        pass
    specs = _beams_own(dofn)
    try:
        _specs[dofn] = specs
    except TypeError:
        pass
    return specs


def install() -> None:
    """Make Beam's callers (who look ``userstate.get_dofn_specs`` up at each call) use ``dofn_specs``."""
    userstate.get_dofn_specs = dofn_specs
