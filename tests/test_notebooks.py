"""The notebooks of analysis/notebooks run top to bottom (nbclient), show their figures, run
from a copy anywhere, and are stored clean."""

import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted(
    (Path(__file__).resolve().parent.parent / "analysis" / "notebooks").glob("*.ipynb")
)


def test_there_are_six_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    book = nbformat.read(path, as_version=4)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: strip outputs"


# A cell that draws: a plot of the API or a saved figure shown with Image(...).
DRAWS = re.compile(r"\bapi\.plot_\w+\(|\bImage\(")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_from_a_copy_and_shows_every_figure(path, tmp_path):
    copy = shutil.copy(path, tmp_path / path.name)  # elsewhere: paths must come from the package
    book = nbformat.read(copy, as_version=4)
    # execute() raises CellExecutionError at the first cell that fails, naming it.
    NotebookClient(
        book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    drawing = [c for c in book.cells if c.cell_type == "code" and DRAWS.search(c.source)]
    assert drawing, f"{path.name}: no figure at all"
    for cell in book.cells:
        if cell.cell_type != "code":
            continue
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source
        if cell in drawing:
            images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
            assert images, f"{path.name}: this cell shows no image:\n{cell.source}"
