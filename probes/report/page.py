"""The page around the sections: inline CSS and a few lines of JS (sorting, filtering); nothing fetched."""

from __future__ import annotations

from html import escape

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
h3{font-size:14px;margin:12px 0 6px}small{color:#666;font-weight:normal}
table{border-collapse:collapse;font-size:13px}th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
th:first-child,td:first-child{text-align:left}th{cursor:pointer;background:#f6f6f6;position:sticky;top:0}
th:hover{background:#e8eefc}.scroll{max-height:520px;overflow:auto;border:1px solid #ddd;display:inline-block}
.filter{display:block;margin:6px 0;padding:4px 6px;width:260px}.figs{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;width:108px;font-size:11px}figcaption{overflow-wrap:anywhere}.id{color:#555}
.thumb{width:72px;height:72px;object-fit:contain;border:1px solid #ccc;background:#fff;display:block}
.missing{display:flex;align-items:center;justify-content:center;color:#999}
.pair{margin-bottom:12px}.leak h3{color:#b00}.note{color:#666}
"""

JS = """
document.querySelectorAll('table.sortable th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0], num = th.dataset.num === '1';
    var asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[th.cellIndex].dataset.v, y = b.cells[th.cellIndex].dataset.v;
      var c = num ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
document.querySelectorAll('input.filter').forEach(function (box) {
  box.addEventListener('input', function () {
    var q = box.value.toLowerCase(), body = box.nextElementSibling.querySelector('tbody');
    Array.prototype.forEach.call(body.rows, function (r) {
      r.style.display = r.cells[0].textContent.toLowerCase().indexOf(q) >= 0 ? '' : 'none';
    });
  });
});
document.body.dataset.ready = '1';  // the browser test reads it: every script above ran without throwing
"""


def page(title: str, sections: list[tuple[str, str]]) -> str:
    """A complete HTML document: (heading, fragment) per section, in order."""
    body = "".join(f'<section id="s{i}"><h2>{escape(h)}</h2>{frag}</section>' for i, (h, frag) in enumerate(sections))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<link rel="icon" href="data:,"><style>{CSS}</style></head><body><h1>{escape(title)}</h1>{body}'
            f"<script>{JS}</script></body></html>")
