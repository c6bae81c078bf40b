"""A drop zone that sends files to the server in chunks (the page's FITS uploads).

Panel's FileDropper (FilePond) does this too, but FilePond's script, once on a page, asks the
browser for an animation frame 60 times a second for as long as the page is open: ~0.1 s of a core
per second and page in a browser without a GPU, whether anybody uploads or not (eight idle pages of
a team took ~0.8 of the server machine's two cores in ``benchmarks/bench_load.py``). This one does
nothing between uploads. A file travels as base64 chunks of ``chunk_bytes`` (one websocket message
each, well under the server's 20 MiB message limit); a file over ``max_bytes`` is refused in the
browser before anything is sent, and again by the server, which never trusts the page.
"""

from __future__ import annotations

import base64
import binascii
import logging
from html import escape

import param
from panel.custom import JSComponent

__all__ = ["ChunkedUpload"]

logger = logging.getLogger(__name__)

MAX_FILES_PER_DROP = 100
"""Files of one drop taken at most; the rest are named as refused."""


class ChunkedUpload(JSComponent):
    """Files dropped on (or chosen in) the zone; each drop's complete files land in ``value``.

    ``value`` is ``{name: bytes}`` for the files of the latest drop that arrived whole, and
    ``refused`` lists one line per file the page or the server refused (name and reason).
    """

    max_bytes = param.Integer(default=20 * 10**6, bounds=(1, None), doc="largest file accepted, bytes")
    chunk_bytes = param.Integer(default=2 * 10**6, bounds=(1024, None), doc="bytes per message")
    accept = param.String(default=".fits,.fit,.fts,.fz,.gz", doc="file name endings the chooser offers")
    value = param.Dict(default={}, doc="the latest drop's complete files: name -> content")
    refused = param.List(default=[], doc="files of the latest drop that were refused, one line each")

    _rename = {"value": None, "refused": None}  # the server's side only: never sent back to the page

    _esm = """
    export function render({ model }) {
      const zone = document.createElement('div');
      zone.className = 'mtopnet-drop-zone';
      zone.style.cssText = 'border: 2px dashed #999; border-radius: 6px; padding: 10px 14px; ' +
        'font: 14px sans-serif; color: #333; background: #f6f6f6; cursor: pointer; min-width: 300px;';
      const input = document.createElement('input');
      input.type = 'file'; input.multiple = true; input.accept = model.accept; input.style.display = 'none';
      const label = document.createElement('div');
      const megabytes = (bytes) => (bytes / 1e6).toFixed(1) + ' MB';
      label.innerHTML = 'Drop FITS spectra here or <u>browse</u> (up to ' + megabytes(model.max_bytes) + ' each)';
      const status = document.createElement('div');
      status.className = 'mtopnet-drop-status';
      status.style.cssText = 'font-size: 12px; color: #555; margin-top: 4px;';
      zone.append(input, label, status);
      let drops = 0;
      const asBase64 = (blob) => new Promise((resolve, reject) => {
        const reader = new FileReader();
        reader.onload = () => resolve(String(reader.result).split(',')[1] || '');
        reader.onerror = () => reject(reader.error);
        reader.readAsDataURL(blob);
      });
      const send = async (files) => {
        const drop = ++drops;
        const lines = [];
        const names = [];
        for (const file of Array.from(files)) {
          if (file.size > model.max_bytes) {
            lines.push(file.name + ': File is too large (' + megabytes(file.size) + '; the limit is ' +
                       megabytes(model.max_bytes) + ')');
            continue;
          }
          const count = Math.max(1, Math.ceil(file.size / model.chunk_bytes));
          for (let index = 0; index < count; index++) {
            status.textContent = 'sending ' + file.name + ' (' + (index + 1) + '/' + count + ')';
            const data = await asBase64(file.slice(index * model.chunk_bytes, (index + 1) * model.chunk_bytes));
            model.send_msg({drop: drop, name: file.name, index: index, count: count, size: file.size, data: data});
          }
          names.push(file.name);
        }
        model.send_msg({drop: drop, done: true, names: names, refused: lines});
        status.textContent = lines.length ? lines.join('; ') : (names.length ? 'sent: ' + names.join(', ') : '');
      };
      zone.addEventListener('click', (event) => { if (event.target !== input) input.click(); });
      input.addEventListener('change', () => { if (input.files.length) send(input.files); input.value = ''; });
      zone.addEventListener('dragover', (event) => { event.preventDefault(); zone.style.background = '#e8f0fe'; });
      zone.addEventListener('dragleave', () => { zone.style.background = '#f6f6f6'; });
      zone.addEventListener('drop', (event) => {
        event.preventDefault(); zone.style.background = '#f6f6f6';
        if (event.dataTransfer && event.dataTransfer.files.length) send(event.dataTransfer.files);
      });
      return zone;
    }
    """

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self._drop: object = None  # the drop whose chunks are arriving
        self._parts: dict[str, list[bytes | None]] = {}
        self._problems: list[str] = []

    def _handle_msg(self, msg) -> None:
        """One message from the page: a chunk of a file, or the end of a drop. Anything malformed
        or over the limits is refused by name, never raised."""
        if not isinstance(msg, dict):
            return
        drop = msg.get("drop")
        if drop != self._drop:  # a new drop: what was left of the previous one is dropped
            self._drop, self._parts, self._problems = drop, {}, []
        if msg.get("done"):
            self._finish(msg)
        else:
            self._take_chunk(msg)

    def _take_chunk(self, msg: dict) -> None:
        name = str(msg.get("name", ""))[:200] or "upload"
        try:
            index, count, size = int(msg["index"]), int(msg["count"]), int(msg["size"])
            data = base64.b64decode(str(msg["data"]), validate=True)
        except (KeyError, TypeError, ValueError, binascii.Error):
            self._refuse(name, "its upload arrived damaged")
            return
        if size > self.max_bytes or count > size // self.chunk_bytes + 1 or not 0 <= index < count:
            self._refuse(name, f"over the {self.max_bytes / 1e6:g} MB limit")
            return
        if name not in self._parts:
            if len(self._parts) >= MAX_FILES_PER_DROP:
                self._refuse(name, f"more than {MAX_FILES_PER_DROP} files in one drop")
                return
            self._parts[name] = [None] * count
        parts = self._parts[name]
        if parts is None:
            return  # refused earlier
        if len(parts) != count:
            self._refuse(name, "its upload arrived damaged")
            return
        parts[index] = data
        if sum(len(p) for p in parts if p is not None) > self.max_bytes:
            self._refuse(name, f"over the {self.max_bytes / 1e6:g} MB limit")

    def _refuse(self, name: str, why: str) -> None:
        self._parts[name] = None
        self._problems.append(f"{escape(name)}: {why}")  # names come from the page, shown in its messages

    def _finish(self, msg: dict) -> None:
        complete = {}
        for name, parts in self._parts.items():
            if parts is not None and all(p is not None for p in parts):
                complete[name] = b"".join(parts)
            elif parts is not None:
                self._problems.append(f"{escape(name)}: its upload did not arrive whole")
        refused = [escape(line[:300]) for line in msg.get("refused", []) if isinstance(line, str)][:MAX_FILES_PER_DROP]
        self._parts = {}
        with param.parameterized.discard_events(self):
            self.refused = refused + self._problems
            self.value = complete
        self.param.trigger("value")  # also when the same file comes again
