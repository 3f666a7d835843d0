"""The event the streams wait on (``current_loop_ops().event``) behaves as anyio's on every
loop, including asyncio's leaner one."""

import anyio
import pytest

from streams._core.loopops import current_loop_ops

pytestmark = pytest.mark.anyio


async def test_waiting_on_a_set_event_is_a_checkpoint() -> None:
    event = current_loop_ops().event()
    event.set()
    assert event.is_set()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await event.wait()
        pytest.fail("a wait on a set event must still be a cancel point")


async def test_set_wakes_every_waiter() -> None:
    event = current_loop_ops().event()
    woken: list[int] = []

    async def waiter(number: int) -> None:
        await event.wait()
        woken.append(number)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            for number in range(3):
                group.start_soon(waiter, number)
            await anyio.wait_all_tasks_blocked()
            assert event.statistics().tasks_waiting == 3
            event.set()
    assert sorted(woken) == [0, 1, 2]


async def test_a_cancelled_waiter_does_not_disturb_the_others() -> None:
    event = current_loop_ops().event()
    woken: list[str] = []

    async def waiter(name: str) -> None:
        await event.wait()
        woken.append(name)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            with anyio.CancelScope() as doomed:
                group.start_soon(waiter, "first")
                async with anyio.create_task_group() as inner:
                    inner.start_soon(waiter, "cancelled")
                    group.start_soon(waiter, "third")
                    await anyio.wait_all_tasks_blocked()
                    inner.cancel_scope.cancel()
                doomed.cancel()
            await anyio.wait_all_tasks_blocked()
            assert event.statistics().tasks_waiting == 2
            event.set()
    assert sorted(woken) == ["first", "third"]


async def test_waits_that_time_out_do_not_pile_up() -> None:
    event = current_loop_ops().event()

    async def waiter() -> None:
        await event.wait()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            for _ in range(200):
                with anyio.move_on_after(0):
                    await event.wait()
            assert event.statistics().tasks_waiting == 1
            event.set()


async def test_a_set_before_the_waiter_runs_is_not_lost() -> None:
    event = current_loop_ops().event()
    done = anyio.Event()

    async def waiter() -> None:
        await event.wait()
        done.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(waiter)
            event.set()
            await done.wait()
