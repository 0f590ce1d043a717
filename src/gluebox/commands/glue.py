"""``gluebox glue``: every GLUE task with one model, then the results, the GLUE score and the submission.

``gluebox glue [--tasks ...] [train flags] [--overrides FILE] [--output_dir SUITE]`` plans, then
runs each task as a normal run directory under ``SUITE/runs/``; ``--resume SUITE`` continues a
suite; ``--check ZIP`` validates a submission zip. See :mod:`gluebox.suite`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from gluebox.errors import GlueboxError, RunInterrupted


def check(path: str, data_dir: str | None) -> int:
    """``--check ZIP``: 0 and one line when the leaderboard would accept it, else 1 and one line per problem."""
    from gluebox.suite.submission import SUBMISSION_FILES, check_zip, reference_ids

    references, _ = reference_ids(data_dir)
    problems = check_zip(path, references)
    if problems:
        for problem in problems:
            print(f"{path}: {problem}", flush=True)
        print(f"gluebox: {path} has {len(problems)} problem(s); the leaderboard would reject it", file=sys.stderr)
        return 1
    where = f"the test files in {data_dir}" if data_dir else "the official test sets' sizes"
    print(f"{path}: valid: {len(SUBMISSION_FILES)} files, "
          f"{sum(len(references[f.name]) for f in SUBMISSION_FILES):,} rows, checked against {where}", flush=True)
    return 0


def glue(args: argparse.Namespace) -> int:
    from gluebox.commands.train import flag_values
    from gluebox.config import given_values
    from gluebox.suite.plan import make_plan
    from gluebox.suite.runner import run_local, run_on_ray, run_state
    from gluebox.suite.spec import SET_BY_SUITE, load_overrides, new_suite, open_suite, parse_tasks

    if args.check is not None:
        if args.resume is not None:
            raise GlueboxError("--check only reads a zip; drop --resume")
        return check(args.check, getattr(args, "data_dir", None))
    if args.cpus_per_task <= 0 or args.gpus_per_task < 0:
        raise GlueboxError("--cpus_per_task must be positive and --gpus_per_task 0 or more")
    # --output_dir is the suite's own flag; the train flags the suite sets are not on its command line.
    given = given_values(args.config, {k: v for k, v in flag_values(args).items() if k not in SET_BY_SUITE})
    if args.resume is not None:
        extra = [name for name in ("tasks", "overrides", "output_dir") if getattr(args, name) is not None]
        if extra:
            raise GlueboxError(f"--resume continues {args.resume} as it was planned; drop "
                               f"{', '.join('--' + name for name in extra)}")
        suite = open_suite(args.resume, given)
    else:
        suite = new_suite(args.output_dir, parse_tasks(args.tasks), given, load_overrides(args.overrides))

    # A new suite refused before it starts (data that does not read) gives its folder back.
    with suite.claim.released_on_error() if suite.claim is not None else contextlib.nullcontext():
        states = {task: run_state(suite.run_path(task)) for task in suite.tasks}
        labels = {"new": "to run", "restart": "to run", "resume": "resume", "complete": "complete"}
        plan = make_plan(suite, {task: labels[state] for task, state in states.items()})
        if args.resume is None and given.get("time_budget") is not None:
            share_budget(suite, plan, given["time_budget"])
        elif args.resume is not None:
            for entry in plan.tasks:  # the shares the suite was planned with
                entry.time_budget = suite.configs[entry.task].get("time_budget")
        where = (f"in parallel on the Ray cluster at {args.address} ({args.cpus_per_task:g} CPU(s), "
                 f"{args.gpus_per_task:g} GPU(s) per task)" if args.address else "one after another on this machine")
        data = suite.data_dir or "the hub dataset nyu-mll/glue"
        print(f"glue: {len(suite.tasks)} task(s){' and AX (with the mnli run)' if suite.ax else ''} with {suite.model} "
              f"on {data}, {where}; writing {suite.path}", flush=True)
        print(plan.describe(), flush=True)
        suite.save()

    try:
        if args.address:
            run_on_ray(suite, plan, args.address, args.cpus_per_task, args.gpus_per_task)
        else:
            run_local(suite, plan)
    except RunInterrupted as interruption:
        from gluebox.suite.report import collect, write_results

        write_results(suite, collect(suite), None)
        raise RunInterrupted(f"suite {suite.path} stopped ({interruption}); continue it with "
                             f"`gluebox glue --resume {suite.path}`", interruption.signum) from None
    return finish(suite)


def share_budget(suite, plan, budget) -> None:
    """``--time_budget``: the suite's ``budget`` shared among its tasks by planned cost (a task with its own in
    ``--overrides`` keeps it); each task's config gets its share."""
    from gluebox.config import parse_duration
    from gluebox.suite.plan import share_time

    own = {task: suite.configs[task]["time_budget"] for task in suite.tasks
           if "time_budget" in suite.overrides.get(task, {})}
    for task, seconds in share_time(plan, parse_duration(budget), own).items():
        suite.configs[task]["time_budget"] = seconds


def finish(suite) -> int:
    """Results, learning curves and the submission zip, checked; a one-line error if a task failed."""
    from gluebox.suite.report import RESULTS_MD, collect, glue_score, write_plot, write_results
    from gluebox.suite.submission import ZIP_NAME, build_zip, check_zip, reference_ids

    results = collect(suite)
    references, _ = reference_ids(suite.data_dir)
    target = suite.path / ZIP_NAME
    placeholders = build_zip(suite.predictions, references, target)
    write_results(suite, results, placeholders)
    plot = write_plot(suite)
    problems = check_zip(target, references)
    for problem in problems:  # a bug if it ever happens: say so rather than hand over a bad zip
        print(f"glue: WARNING: {target.name}: {problem}", file=sys.stderr, flush=True)
    if placeholders:
        print(f"glue: WARNING: {len(placeholders)} file(s) of {target.name} are placeholders (a constant prediction) "
              f"for tasks not run or failed: {', '.join(placeholders)}", file=sys.stderr, flush=True)
    score, count = glue_score(results)
    shown = "none" if score is None else f"{100 * score:.1f}"
    print(f"glue: {'GLUE score' if count == 9 else f'score over {count} of 9 tasks'} (validation) {shown}; "
          f"wrote {suite.path / RESULTS_MD}, results.csv, {target.name}"
          + (f", {plot.name}" if plot else ""), flush=True)
    failed = [r for r in results if r.task in suite.tasks and r.status != "complete"]
    if failed:
        names = ", ".join(f"{r.task} ({r.status}{': ' + r.message if r.message else ''})" for r in failed)
        raise GlueboxError(f"{len(failed)} task(s) did not complete: {names}; fix and continue with "
                           f"`gluebox glue --resume {suite.path}`")
    return 0
