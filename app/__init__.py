"""The M-TOPnet inspection app (``panel serve app``): catalogue, screening, embedding, inspector."""
