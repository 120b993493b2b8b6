"""Each run's report while the run goes on: rendered again after every trial and deployment check, with
what is still to come, so that ``report.md`` can be opened at any moment (each file is replaced whole)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from slmbench.engine.planning import PlannedTrial, RunPlan


class LiveReports:
    """The reports of a command's runs, with the trials each is still waiting for."""

    def __init__(
        self, plans: list[RunPlan], pending: list[PlannedTrial], constraints: Any, options: Any, say: Callable[[str], None]
    ) -> None:
        self.total = {plan.run_dir: len(plan.trials) for plan in plans}
        self.to_come = {plan.run_dir: [planned.key for planned in pending if planned.run_dir == plan.run_dir] for plan in plans}
        self.after = {plan.run_dir: after_trials(plan) for plan in plans}
        self.constraints, self.options, self.say = constraints, options, say

    def trial_finished(self, planned: PlannedTrial) -> None:
        """``planned`` ended (whatever its status): its run's report again."""
        keys = self.to_come[planned.run_dir]
        if planned.key in keys:
            keys.remove(planned.key)
        self.render(planned.run_dir)

    def render(self, run_dir: Path) -> None:
        """``run_dir``'s report as it stands, with what is still to come; a failure is said, never raised."""
        from slmbench.report.live import RunProgress
        from slmbench.report.options import ReportOptions
        from slmbench.report.recommend import Constraints
        from slmbench.report.render import render_report

        to_come = self.to_come[run_dir]
        progress = RunProgress(self.total[run_dir] - len(to_come), self.total[run_dir], list(to_come), self.after[run_dir])
        try:
            render_report(run_dir, self.constraints or Constraints(), self.options or ReportOptions(), progress)
        except Exception as error:  # noqa: BLE001 - the report mid-run is a view; the run and its final report go on
            self.say(f"the report could not be rendered mid-run ({type(error).__name__}: {error}); it is rendered again at the end")


def after_trials(plan: RunPlan) -> list[str]:
    """What ``plan``'s run does after its trials, as its options ask, in words for the report's banner."""
    options = plan.run.options
    steps = []
    deployment = (options.deployment_check if options else None) or "contenders"
    if deployment != "none":
        steps.append("the deployment check of " + ("the contenders" if deployment == "contenders" else "every model with weights"))
    export = options.export_check if options else "recommended"
    if export != "none" and (options is None or options.keep_artifacts == "all"):
        steps.append("the export check of " + ("the recommended trial" if export == "recommended" else "every trial"))
    if any(planned.config.train_size is not None for planned in plan.trials):
        steps.append("the labels-needed fits of the learning curves")
    return steps
