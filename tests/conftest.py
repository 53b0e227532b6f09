"""Hypothesis profiles.

Local runs explore new random examples every time (that is how the stream's
stale-main-desk bug was found). CI (``CI`` set, as ``.ci/run`` runs) uses a
derandomized profile: the same examples on every run, so a submission's
verdict does not depend on the draw. Run ``HYPOTHESIS_PROFILE=explore make test``
(or just run pytest locally) to search further; a failure found that way gets a
named regression test.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", print_blob=True)

_profile = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "explore")
settings.load_profile(_profile)
