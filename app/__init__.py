"""The M-TOPnet inspection app (``panel serve app``): catalogue, screening, embedding, inspector.

``session_page`` opens the data once per process and builds one :class:`~app.dashboard.Dashboard` per
browser session; the dashboard composes small views (``map_view``, ``table_view``,
``screening_view``, ``inspector_view`` with ``inspection_view``), each a ``pn.viewable.Viewer``
that wires itself to the session's state (``state.Session``) in its own ``__init__``.
"""
