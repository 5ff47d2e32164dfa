"""The engine's queue: ``_speedups.Intake`` (C) against ``_intake.PyIntake``, its specification.

The two are driven side by side through arbitrary interleavings of ``add``,
``take_batch``, ``take_all`` and closing; after every step what they returned
and everything they expose must agree, and both must agree with a plain model
of the rules (limits, batch boundaries by count and by bytes, when to wake).
The engine's own state machine (tests/test_engine_state_machine.py) runs once
more here on the Python intake, so the engine is checked on both. Where the C
path is inactive, the machine drives two Python intakes against the model, and
the tests of the C type alone skip.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from segment_core import _engine
from segment_core._message_queue import Intake, PyIntake
from segment_core._native import speedups

from . import test_engine_state_machine
from .c_path import requires_c

# The C twin, or (where the C path is inactive) the Python class again, so the model still runs.
CIntake: Any = PyIntake if speedups is None else speedups.Intake
# The C type, for the tests about it alone (they skip where it is inactive).
BOTH_KINDS = [pytest.param(CIntake, id="c", marks=requires_c), pytest.param(PyIntake, id="python")]

WAKE, QUIET = "wake", "quiet"


def make_both(**limits: int) -> tuple[Any, PyIntake[str]]:
    return CIntake(**limits, wake=WAKE, quiet=QUIET), PyIntake(**limits, wake=WAKE, quiet=QUIET)


def new_intake(kind: Any, **limits: Any) -> Any:
    """An intake of ``kind`` with WAKE/QUIET and limits that only what is given will reach."""
    settings = {
        "max_messages": 10**6,
        "max_bytes": 10**9,
        "batch_size": 10**6,
        "batch_budget": 10**6,
        "max_message_bytes": 10**6,
        "wake": WAKE,
        "quiet": QUIET,
    }
    return kind(**{**settings, **limits})


def observed(intake: Any) -> dict[str, Any]:
    seen = {
        name: getattr(intake, name)
        for name in ("depth", "queued_bytes", "next_seq", "accepting", "head_full", "max_messages", "max_bytes")
    }
    seen["head_since"] = intake.head_since if intake.depth else None  # meaningless when empty
    return seen


class IntakeMachine(RuleBasedStateMachine):
    """C and Python side by side, and a model: the queue as a list of (data, queued at)."""

    @initialize(
        max_messages=st.integers(1, 12),
        max_bytes=st.integers(1, 200),
        batch_size=st.integers(1, 6),
        batch_budget=st.integers(1, 60),
        max_message_bytes=st.integers(1, 40),
    )
    def setup(
        self, max_messages: int, max_bytes: int, batch_size: int, batch_budget: int, max_message_bytes: int
    ) -> None:
        self.limits = {
            "max_messages": max_messages,
            "max_bytes": max_bytes,
            "batch_size": batch_size,
            "batch_budget": batch_budget,
            "max_message_bytes": max_message_bytes,
        }
        self.c, self.py = make_both(**self.limits)
        self.queue: list[tuple[bytes, float]] = []
        self.now = 0.0
        self.accepted = 0

    @rule(size=st.integers(0, 50), later=st.floats(0, 5))
    def add(self, size: int, later: float) -> None:
        self.now += later
        data = bytes([65 + self.accepted % 26]) * size
        said = self.c.add(data, self.now)
        assert said == self.py.add(data, self.now)
        refused = (
            size > self.limits["max_message_bytes"]
            or not self.py.accepting
            or len(self.queue) >= self.limits["max_messages"]
            or sum(len(d) for d, _ in self.queue) + size > self.limits["max_bytes"]
        )
        if refused:
            assert said is None
            return
        assert said in (WAKE, QUIET)
        if not self.queue:
            assert said == WAKE  # a first message starts the upload_interval clock
        self.queue.append((data, self.now))
        self.accepted += 1

    @precondition(lambda self: self.queue)
    @rule()
    def take_batch(self) -> None:
        taken = self.c.take_batch()
        assert taken == self.py.take_batch()
        assert taken == tuple(d for d, _ in self.queue[: len(taken)])
        assert 1 <= len(taken) <= self.limits["batch_size"]
        assert sum(len(d) for d in taken) + len(taken) - 1 <= self.limits["batch_budget"] or len(taken) == 1
        rest = self.queue[len(taken) :]
        if rest:
            # Closed no earlier than it had to be: the next message would not have fit.
            fits = (
                len(taken) < self.limits["batch_size"]
                and sum(len(d) for d in taken) + len(taken) + len(rest[0][0]) <= self.limits["batch_budget"]
            )
            assert not fits
        self.queue = rest

    @rule()
    def take_all(self) -> None:
        taken = self.c.take_all()
        assert taken == self.py.take_all() == tuple(d for d, _ in self.queue)
        self.queue = []

    @rule(accepting=st.booleans())
    def set_accepting(self, accepting: bool) -> None:
        self.c.accepting = self.py.accepting = accepting

    @invariant()
    def agree(self) -> None:
        seen = observed(self.c)
        assert seen == observed(self.py)
        assert seen["depth"] == len(self.queue)
        assert seen["queued_bytes"] == sum(len(d) for d, _ in self.queue)
        assert seen["next_seq"] == self.accepted
        if self.queue and not seen["head_full"]:
            assert seen["head_since"] == self.queue[0][1]  # the open batch is the whole queue


TestIntakeMachine = IntakeMachine.TestCase


class EngineMachineOnPythonIntake(test_engine_state_machine.EngineMachine):
    """The engine's whole state machine, with the pure-Python intake under it."""

    def __init__(self) -> None:
        self._saved = vars(_engine)["Intake"]
        setattr(_engine, "Intake", PyIntake)  # noqa: B010 - not an export
        super().__init__()

    def teardown(self) -> None:
        setattr(_engine, "Intake", self._saved)  # noqa: B010
        super().teardown()


def test_the_engine_machine_really_runs_on_the_python_intake() -> None:
    machine = EngineMachineOnPythonIntake()
    try:
        machine.setup(options={}, seed=1)
        assert type(machine.engine._intake) is PyIntake
    finally:
        machine.teardown()
    assert vars(_engine)["Intake"] is Intake


TestEngineMachineOnPythonIntake = EngineMachineOnPythonIntake.TestCase


def test_the_engine_uses_the_c_intake_where_the_c_path_is_active() -> None:
    assert vars(_engine)["Intake"] is (PyIntake if speedups is None else speedups.Intake)


@pytest.mark.parametrize("kind", BOTH_KINDS)
def test_refusals_and_wrong_arguments(kind: Any) -> None:
    intake = kind(
        max_messages=2, max_bytes=10, batch_size=5, batch_budget=100, max_message_bytes=8, wake=WAKE, quiet=QUIET
    )
    with pytest.raises(TypeError):
        intake.add(bytearray(b"x"), 0.0)
    with pytest.raises(TypeError):
        intake.add("x", 0.0)
    assert intake.add(b"x" * 9, 0.0) is None  # over max_message_bytes
    assert intake.add(b"x" * 8, 0.0) == WAKE
    assert intake.add(b"x" * 3, 0.0) is None  # over max_bytes
    assert intake.add(b"x" * 2, 0.0) == QUIET
    assert intake.add(b"", 0.0) is None  # over max_messages
    intake.take_all()
    intake.accepting = False
    assert intake.add(b"x", 0.0) is None
    assert (intake.depth, intake.next_seq) == (0, 2)
    assert intake.take_batch() == ()
    assert intake.take_all() == ()


@requires_c
def test_taken_messages_are_released() -> None:
    """Taken bytes belong to the caller only: the queue keeps no reference to them."""
    intake = new_intake(CIntake, batch_size=3)
    data = [bytes([i % 256]) * 100 + i.to_bytes(4, "big") for i in range(2_000)]
    for item in data:
        intake.add(item, 0.0)
    first = intake.take_batch()
    assert first == tuple(data[:3])
    counts = [len(gc.get_referrers(item)) for item in first]
    del first
    remaining = intake.take_all()
    assert remaining == tuple(data[3:])
    assert counts == [2, 2, 2]  # the tuple taken and the list `data`, not the intake


@requires_c
def test_the_c_intake_is_collected_in_a_cycle() -> None:
    class Holder:
        pass

    holder = Holder()
    intake = new_intake(CIntake, wake=holder)
    holder.intake = intake  # type: ignore[attr-defined]
    alive = weakref.ref(holder)
    del holder, intake
    gc.collect()
    assert alive() is None


@pytest.mark.parametrize("kind", BOTH_KINDS)
def test_a_finalizer_that_adds_during_a_take_leaves_the_queue_whole(kind: Any) -> None:
    """Making the taken tuple may run a collection; a finalizer's add must land in the queue, not corrupt it."""
    intake = new_intake(kind, batch_size=26)
    for index in range(25):
        intake.add(b"m%d" % index, 0.0)
    said: list[Any] = []

    class AddsWhenCollected:
        def __del__(self) -> None:
            said.append(intake.add(b"late", 1.0))

    garbage = AddsWhenCollected()
    garbage.cycle = garbage  # type: ignore[attr-defined]
    del garbage
    threshold = gc.get_threshold()
    gc.set_threshold(1)
    try:
        taken = intake.take_batch()
    finally:
        gc.set_threshold(*threshold)
    assert said in ([QUIET], [WAKE])  # the finalizer ran during the take
    # Whichever batch the take saw, what is left is consistent: fewer than 26 messages cannot be a
    # full batch, and batches drain in order to exactly what was added.
    assert not intake.head_full
    left_bytes = intake.queued_bytes
    left = intake.take_all()
    assert left_bytes == sum(map(len, left))
    assert taken + left == (*(b"m%d" % index for index in range(25)), b"late")


@requires_c
def test_a_compaction_that_runs_out_of_memory_loses_nothing() -> None:
    testcapi = pytest.importorskip("_testcapi")
    intake = new_intake(CIntake, batch_size=1)
    messages = [b"m%d" % index for index in range(2048)]
    for message in messages:
        intake.add(message, 0.0)
    taken = [intake.take_batch() for _ in range(1023)]
    testcapi.set_nomemory(0, 0)  # every allocation fails, so the list cannot be compacted
    try:
        taken.append(intake.take_batch())
    finally:
        testcapi.remove_mem_hooks()
    while intake.depth:
        taken.append(intake.take_batch())
    assert [batch for (batch,) in taken] == messages
    assert intake.queued_bytes == 0
