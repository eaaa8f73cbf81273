"""StartStop: a start that fails half-way is stopped before its error propagates (also on Ctrl-C), leaving the
`with` block always stops, and errors are never swallowed."""

from __future__ import annotations

import pytest

from harness.core.errors import HarnessError
from harness.core.lifecycle import StartStop


class Recorder(StartStop):
    """Records the calls it gets; `start` raises `fail_with` after acquiring its first resource."""

    def __init__(self, fail_with: BaseException | None = None) -> None:
        self.calls: list[str] = []
        self.fail_with = fail_with
        self.resource_open = False

    def start(self) -> None:
        self.calls.append("start")
        self.resource_open = True
        if self.fail_with is not None:
            raise self.fail_with

    def stop(self) -> None:
        self.calls.append("stop")
        self.resource_open = False


def test_with_starts_returns_itself_and_stops() -> None:
    recorder = Recorder()
    with recorder as entered:
        assert entered is recorder and recorder.calls == ["start"] and recorder.resource_open
    assert recorder.calls == ["start", "stop"] and not recorder.resource_open


@pytest.mark.parametrize("error", [HarnessError("QEMU refused to start"), OSError("socket"), KeyboardInterrupt(),
                                   SystemExit(3)])
def test_a_failing_start_is_stopped_before_its_error_propagates(error: BaseException) -> None:
    recorder = Recorder(fail_with=error)
    with pytest.raises(type(error)) as info:
        with recorder:
            pytest.fail("the body must not run after a failed start")
    assert info.value is error
    assert recorder.calls == ["start", "stop"] and not recorder.resource_open


@pytest.mark.parametrize("error", [ValueError("bad"), KeyboardInterrupt(), GeneratorExit()])
def test_leaving_the_block_by_an_error_stops_and_reraises(error: BaseException) -> None:
    recorder = Recorder()
    with pytest.raises(type(error)) as info:
        with recorder:
            raise error
    assert info.value is error and recorder.calls == ["start", "stop"]


def test_an_error_in_stop_is_not_hidden() -> None:
    class BadStop(Recorder):
        def stop(self) -> None:
            super().stop()
            raise HarnessError("could not stop")

    with pytest.raises(HarnessError, match="could not stop"):
        with BadStop():
            pass


def test_the_base_class_demands_both_methods() -> None:
    with pytest.raises(NotImplementedError):
        StartStop().start()
    with pytest.raises(NotImplementedError):
        StartStop().stop()


def test_the_harness_parts_that_start_things_use_it() -> None:
    from harness.vm.ftp import FileServer
    from harness.vm.machine import Machine

    assert issubclass(Machine, StartStop) and issubclass(FileServer, StartStop)
