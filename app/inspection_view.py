"""The inspection controls: queue, navigation, the inspector's name, flags, and disagreements."""

from __future__ import annotations

from html import escape
from urllib.parse import unquote

import panel as pn

from .inspections import ISSUE_MARKS, QUALITY_FLAGS
from .page import Page, PageView, batched
from .state import QUEUES

__all__ = ["InspectionControls", "INSPECTOR_COOKIE"]

INSPECTOR_COOKIE = "mtopnet_inspector"
"""Cookie in which the browser keeps the inspector's name."""


class InspectionControls(PageView):
    """Where the inspector moves through the queue and records what they see."""

    def __init__(self, page: Page, **params) -> None:
        super().__init__(page, **params)
        s = self.session
        self.queue_select = pn.widgets.Select.from_param(s.param.queue_kind, label="queue", options=list(QUEUES),
                                                         css_classes=["mtopnet-queue"])
        # the browser remembers the name (a cookie of this site only), so a reload keeps it
        s.inspector = s.inspector or unquote(pn.state.cookies.get(INSPECTOR_COOKIE, ""))[:80]
        self.inspector_name = pn.widgets.TextInput.from_param(s.param.inspector, label="inspector",
                                                              placeholder="your name (required to flag)",
                                                              css_classes=["mtopnet-inspector"])
        self.inspector_name.jscallback(value=f"""
            document.cookie = '{INSPECTOR_COOKIE}=' + encodeURIComponent(cb_obj.value)
                + '; path=/; max-age=31536000; SameSite=Strict';""")
        self._layout = self._build()

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    def _build(self) -> pn.viewable.Viewable:
        s = self.session
        quality = pn.widgets.RadioButtonGroup(options={v.split(":")[0]: k for k, v in QUALITY_FLAGS.items()},
                                              color="default", css_classes=["mtopnet-quality"])
        marks = pn.widgets.CheckButtonGroup(options={f"{v} ({k})": k for k, v in ISSUE_MARKS.items()},
                                            css_classes=["mtopnet-marks"])
        z_input = pn.widgets.TextInput(label="corrected z", placeholder="e.g. 1.23456", width=140)
        comment = pn.widgets.TextInput(label="comment", placeholder="comment (saved on Enter)", width=360)
        syncing = {"on": False}

        def load(*_):
            syncing["on"] = True
            record = s.inspections.get(s.current)
            quality.value, marks.value = record.quality, list(record.issues)
            z_input.value = "" if record.z_corrected is None else f"{record.z_corrected:.5f}"
            comment.value = record.comment
            syncing["on"] = False

        def save(**changes):
            if syncing["on"]:
                return
            try:
                s.flag(**changes)
            except ValueError as exc:
                self.page.notify(str(exc), "danger")
                return
            if self.page.message.alert_type == "danger":  # the mistake it reported is mended
                self.page.notify("")

        def on_z(event):
            text = event.new.strip()
            try:
                save(z_corrected=float(text) if text else None)
            except ValueError:
                self.page.notify(f"corrected z {text!r} is not a number", "danger")

        quality.param.watch(lambda e: save(quality=int(e.new)), "value")
        marks.param.watch(lambda e: save(issues="".join(e.new)), "value")
        z_input.param.watch(on_z, "value")
        comment.param.watch(lambda e: save(comment=e.new), "value")
        s.param.watch(load, ["current", "inspection_version"])
        load()
        previous = pn.widgets.Button(label="◀ previous (b)", css_classes=["mtopnet-prev"])
        following = pn.widgets.Button(label="next (n) ▶", css_classes=["mtopnet-next"])
        uninspected = pn.widgets.Button(label="next uninspected (u)")
        previous.on_click(batched(lambda e: s.step(-1)))
        following.on_click(batched(lambda e: s.step(+1)))
        uninspected.on_click(batched(lambda e: s.next_uninspected()))
        position = pn.pane.HTML(pn.bind(
            lambda current, kind, version, sel: f"queue <b>{escape(kind)}</b>: {len(s.queue())} objects; "
                                                f"current <b>{escape(current)}</b>",
            s.param.current, s.param.queue_kind, s.param.inspection_version, s.param.selection),
            css_classes=["mtopnet-current"])
        disagreements = pn.pane.Markdown(pn.bind(self._conflicts_text, version=s.param.inspection_version,
                                                 current=s.param.current), css_classes=["mtopnet-conflicts"])
        return pn.Column(pn.Row(self.queue_select, previous, following, uninspected, position),
                         pn.Row(self.inspector_name, quality, marks), pn.Row(z_input, comment), disagreements,
                         sizing_mode="stretch_width")

    def _conflicts_text(self, version: int, current: str) -> str:
        """The objects on which inspectors disagree (re-read as this page moves or flags: other
        inspectors write to the same store)."""
        table = self.session.conflicts()
        if table.empty:
            return "Inspectors agree on every object that more than one of them flagged."

        def cell(text: str) -> str:
            return escape(str(text)).replace("|", "/")

        lines = [f"**{len(table)} object{'s' * (len(table) != 1)} on which inspectors disagree** "
                 "(queue *inspectors disagree*; the export lists why in `vi_conflict`)", "",
                 "| object | disagreement | inspector: quality, z |", "|---|---|---|"]
        lines += [f"| {cell(row.object_id)} | {cell(row.reason)} | {cell(row.inspectors)} |"
                  for row in table.head(8).itertuples()]
        if len(table) > 8:
            lines.append(f"\n… and {len(table) - 8} more")
        return "\n".join(lines)

