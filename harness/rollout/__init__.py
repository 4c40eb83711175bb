"""Staged content rollout over a fleet of test machines (`harness rollout`, docs/rollout.md):
rings, bake, automatic halt, rollback and recovery, blast radius.

    fleet.py         fleet spec, ring sizes, seeded stratified ring assignment
    content.py       the baseline and update files, named for the guest
    record.py        the shared record: machine records, deliveries, the timeline
    node.py          one machine's life: baseline boot, online update, watch, bake, rollback
    orchestrator.py  rings, the halt gate, rollback of what has the update
    unstaged.py      --measure-unstaged: the push to every machine at once, on a fleet copy
    blast.py         blast radius and the unstaged estimate
    result.py        rollout.json (and the HTML page when harness.report exists)
    progress.py      the live lines on stderr
    session.py       a request checked, run and written; used by the CLI, the fixture, the bench
    cli.py           the `harness rollout` subcommand
    pytest_fixture.py  the `rollout` fixture

Nothing is imported here: the pytest plugin loads pytest_fixture.py on hosts without libvirt
(session.py and what it imports need libvirt-python).
"""
