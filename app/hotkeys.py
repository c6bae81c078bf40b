"""Keyboard shortcuts for the inspection loop (Panel has no global hotkey widget).

A small ESM component listens to key presses on the page and sends the allowed ones to Python;
keys typed into an input, text area or select are ignored (Marz's rule), as are auto-repeats.
"""

from __future__ import annotations

import param
from panel.custom import JSComponent

from .inspections import ISSUE_MARKS

__all__ = ["Hotkeys", "KEYS"]

KEYS = {
    "n": "next object in the queue",
    "b": "previous object",
    "u": "next uninspected object",
    "0": "quality 0 (not inspected)",
    "1": "quality 1 (unknown)",
    "2": "quality 2 (possible)",
    "3": "quality 3 (good)",
    "4": "quality 4 (secure)",
    "a": "cycle the PDF's alternative solutions (line markers)",
    "p": "line markers back at the PDF's peak",
    **{key: f"mark: {meaning}" for key, meaning in ISSUE_MARKS.items()},
    "?": "show or hide this help",
}


class Hotkeys(JSComponent):
    """Send allowed key presses to Python as ``last`` = {"key": ..., "count": ...}."""

    keys = param.List(default=list(KEYS))
    last = param.Dict(default={})

    # handled at once, not after Panel's 50 ms wait for more changes (see
    # app.page.PromptFloatSlider): a key press comes alone
    _debounce = 0

    _esm = """
    export function render({ model }) {
      let count = 0;
      const onKey = (event) => {
        const target = event.composedPath()[0];
        if (target && (target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName))) return;
        if (event.repeat || event.ctrlKey || event.metaKey || event.altKey) return;
        if (!model.keys.includes(event.key)) return;
        event.preventDefault();
        count += 1;
        model.last = {key: event.key, count: count};
      };
      document.addEventListener('keydown', onKey);
      model.on('remove', () => document.removeEventListener('keydown', onKey));
      const marker = document.createElement('span');
      marker.className = 'mtopnet-hotkeys';
      return marker;
    }
    """
