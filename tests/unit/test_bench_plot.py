"""The bench's latency figure is a well-formed SVG with one box per series."""

import xml.etree.ElementTree as ET

from bench.plot import latency_svg


def test_latency_svg_has_a_box_per_series_and_escapes_labels():
    svg = latency_svg(
        [
            ("Health <p50>", "ms", {"hub": [1.0, 1.1, 1.2, 5.0], "limit": [0.9, 1.0]}),
            ("Empty", "ms", {"none": []}),
        ],
        caption="run & machine",
    )
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    boxes = [r for r in root.iter(f"{ns}rect") if r.get("fill-opacity")]
    assert len(boxes) == 2
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert "Health <p50>" in texts and "Empty" not in texts and "run & machine" in texts
