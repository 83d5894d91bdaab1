"""Two of Beam's per-run costs paid once per object instead of at every call: a DoFn's state and timer
specs, and a view of the pipeline options.

1. Beam asks ``apache_beam.transforms.userstate.get_dofn_specs(dofn)`` whether a DoFn keeps state or
   timers at each step that touches it: when a ParDo is made, several times at every translation of
   the graph to its runner form, and twice when a worker builds the DoFn's bundle processor. Each call
   looks at the signature of every method of the DoFn (``inspect.signature``): 440 calls for a small
   local import. The answer is a function of the DoFn object alone (its methods' default arguments),
   so it is kept per DoFn object after its first computation: 110 computations instead of 440.
2. Beam reads its options through ``PipelineOptions.view_as(cls)`` some 470 times a small import (at
   every ``apply``, for the type checks), and each call builds a new argparse parser of every option
   of ``cls`` and parses the command line again. A view holds no value of its own: it reads and writes
   the one dict of values it shares with the options it was made from (``_all_options``), and
   ``view_as`` only adds the class's defaults that are not there yet. So the first view of each class
   is kept per options object and given again: the same values, read and written the same way.

Both are kept weakly (an entry goes with its DoFn or options object); an object that cannot be
weakly referenced or hashed is computed at every call, as before. A small in-process import: 0.51 →
0.41 CPU-seconds with the first, 0.48 → 0.36 with the second (tests/test_beam_memo.py; the closing
notes of issue 18). ``install`` is idempotent; the launcher installs both at import.
"""

from __future__ import annotations

import weakref

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms import userstate

_beams_own = userstate.get_dofn_specs
_beams_own_view_as = PipelineOptions.view_as
_specs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_views: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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


def view_as(options: PipelineOptions, cls: type) -> PipelineOptions:
    """``options.view_as(cls)``, made once per options object and class."""
    try:
        views = _views.setdefault(options, {})
    except TypeError:  # not hashable or weakly referable: made each time
        return _beams_own_view_as(options, cls)
    view = views.get(cls)
    if view is None:
        view = views[cls] = _beams_own_view_as(options, cls)
    return view


def install() -> None:
    """Make Beam's callers use ``dofn_specs`` (they look ``userstate.get_dofn_specs`` up at each call)
    and ``view_as``."""
    userstate.get_dofn_specs = dofn_specs
    PipelineOptions.view_as = view_as
