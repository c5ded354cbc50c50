"""Old import path of the dashboard's shared pieces, kept for scripts written against it.

The pieces now live by concern: ``routing`` (pages, the router), ``data`` (the results folder
and typed cached queries), ``state`` (URL-mirrored widgets, the filter row, messages) and
``tables`` (display tables, charts, the problems banner); the plain pandas behind the views is
in ``metabench.results.views``. New code imports those modules.
"""

from metabench.dashboard.data import ENV_VAR, _db, results_dir
from metabench.dashboard.routing import available_pages
from metabench.dashboard.state import FIRST_RUN
from metabench.dashboard.tables import VALIDATE_VAR
from metabench.results.views import smooth_curves

__all__ = ["ENV_VAR", "FIRST_RUN", "VALIDATE_VAR", "_db", "available_pages", "results_dir", "smooth_curves"]
