"""The README's Python example runs as written (in a temporary folder, figures drawn by Agg)."""
import os
import re

import pytest

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def test_readme_python_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib").use("Agg")
    text = open(README, encoding="utf-8").read()
    section = text[text.index("\n## Python\n"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md (## Python)", "exec"), {"__name__": "__readme__"})
    for name in ("spectrum.png", "classes.svg", "lenet.nfk"):
        assert (tmp_path / name).stat().st_size > 0, name
