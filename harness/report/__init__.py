"""The report page: a static, self-contained HTML page of a rollout, a campaign or a pytest
run's artifacts (issue 13 item 2). `harness report DIR` picks the kind; `harness rollout
--report` and `harness campaign --report` call render_rollout / render_campaign."""

from .writer import detect, render, render_artifacts, render_campaign, render_rollout

__all__ = ["detect", "render", "render_artifacts", "render_campaign", "render_rollout"]
