"""Writing a report page: one self-contained index.html, written atomically, from one of
three inputs (a rollout's rollout.json, a campaign's campaign.json, a pytest artifacts tree)."""

from __future__ import annotations

from pathlib import Path

from ..artifacts import write_atomic
from ..errors import InputFileError
from .artifacts_page import artifacts_html, find_machine_dirs, load_artifacts
from .campaign_page import campaign_html, load_campaign
from .rollout_input import load_rollout
from .rollout_page import rollout_html

PAGE = "index.html"
KINDS = ("rollout", "campaign", "artifacts")


def _page_path(report_dir: Path, out: Path | None) -> Path:
    """OUT as given: a .html file, else a directory that gets index.html."""
    if out is None:
        return report_dir / PAGE
    path = out if out.suffix in (".html", ".htm") else out / PAGE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputFileError(f"{path.parent}: cannot create the report directory: {exc.strerror}") from None
    return path


def render_rollout(report_dir: Path, out: Path | None = None) -> Path:
    """The page of `report_dir/rollout.json`, written to report_dir/index.html (or `out`)."""
    path = _page_path(report_dir, out)
    write_atomic(path, rollout_html(load_rollout(report_dir), path.parent))
    return path


def render_campaign(report_dir: Path, out: Path | None = None) -> Path:
    """The page of `report_dir/campaign.json`, written to report_dir/index.html (or `out`)."""
    path = _page_path(report_dir, out)
    write_atomic(path, campaign_html(load_campaign(report_dir), report_dir, path.parent))
    return path


def render_artifacts(artifacts_dir: Path, out: Path | None = None) -> Path:
    """The page of a pytest artifacts directory: one row per machine directory under it."""
    machines = load_artifacts(artifacts_dir)
    path = _page_path(artifacts_dir, out)
    write_atomic(path, artifacts_html(artifacts_dir, machines, path.parent))
    return path


def detect(directory: Path) -> str:
    """Which input `directory` holds: rollout, campaign or artifacts (InputFileError if none)."""
    if not directory.is_dir():
        what = "does not exist" if not directory.exists() else "is not a directory"
        raise InputFileError(f"{directory}: {what}: expected a report directory (rollout.json or "
                             "campaign.json) or a pytest artifacts directory")
    if (directory / "rollout.json").is_file():
        return "rollout"
    if (directory / "campaign.json").is_file():
        return "campaign"
    if find_machine_dirs(directory):
        return "artifacts"
    raise InputFileError(f"{directory}: no rollout.json, no campaign.json and no machine artifacts "
                         "(verdict.json, serial.log or com1.log) under it: expected a harness rollout or "
                         "campaign report directory, or a pytest artifacts directory")


def render(directory: Path, out: Path | None = None) -> tuple[str, Path]:
    """Detect the input kind of `directory` and write its page: (kind, page path)."""
    kind = detect(directory)
    renderer = {"rollout": render_rollout, "campaign": render_campaign, "artifacts": render_artifacts}[kind]
    return kind, renderer(directory, out)
