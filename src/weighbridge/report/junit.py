"""JUnit XML for CI: one test case per (case, sample) and one for the regression gate, per model."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from ..analysis.compare import Comparison
from ..core.files import write_atomic

# characters XML 1.0 forbids (a case id from a suite file may hold any of them)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _x(text: str) -> str:
    """Text XML can hold: each forbidden character shown as its code point."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def junit_xml(comparisons: list[Comparison], alpha: float, margin: float) -> str:
    suites = ET.Element("testsuites", name="weighbridge check")
    for c in comparisons:
        regressed = c.regression(alpha, margin)
        keys = sorted(set(c.fixed) | set(c.broken)) or []
        suite = ET.SubElement(suites, "testsuite", name=_x(f"weighbridge.{c.model}"), tests=str(c.pairs + 1),
                              failures=str(len(c.broken) + int(regressed)))
        gate = ET.SubElement(suite, "testcase", classname=_x(f"weighbridge.{c.model}"), name="regression-gate")
        if regressed:
            ET.SubElement(gate, "failure", message=f"pass rate {c.baseline_pass_rate:.1%} -> {c.candidate_pass_rate:.1%} "
                                                   f"(p={c.p_value:.4g} < {alpha}, drop > {margin:.1%})").text = (
                _x("broken: " + ", ".join(c.broken)))
        for key in keys:
            case = ET.SubElement(suite, "testcase", classname=_x(f"weighbridge.{c.model}"), name=_x(key))
            if key in c.broken:
                ET.SubElement(case, "failure", message="passed in the baseline, fails now")
        ET.SubElement(suite, "system-out").text = f"{c.pairs} paired items; {len(c.fixed)} fixed, {len(c.broken)} broken; {c.test}"
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(comparisons: list[Comparison], alpha: float, margin: float, path: Path) -> Path:
    return write_atomic(path, junit_xml(comparisons, alpha, margin))
