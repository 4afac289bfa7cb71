"""Participants that leave, crash or vanish leave nothing behind."""

from __future__ import annotations

import asyncio
import gc
import os

from .conftest import RunningServer
from .peers import Peer
from .test_media_e2e import wait_for


def open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


async def settle() -> tuple[int, int]:
    for _ in range(20):
        await asyncio.sleep(0.05)
    gc.collect()
    return len(asyncio.all_tasks()), open_sockets()


async def test_fifty_join_leave_cycles_leave_no_tasks_or_sockets(classe: RunningServer) -> None:
    teacher = Peer(classe.url, "churn", "Prof", role="teacher")
    try:
        await teacher.join()
        await teacher.publish(audio=False)
        warm = Peer(classe.url, "churn", "warm-up")  # first use loads codecs and caches
        await warm.join()
        await wait_for(lambda: warm.video() and warm.video()[0].numbers)
        await warm.close()
        await wait_for(lambda: classe.server.census()[1] == 1)
        tasks_before, sockets_before = await settle()
        for cycle in range(50):
            student = Peer(classe.url, "churn", f"S{cycle}")
            await student.join()
            await wait_for(lambda s=student: bool(s.video() and s.video()[0].numbers))  # type: ignore[misc]
            if cycle % 2:
                await student.send({"type": "leave"})
            # else: the websocket just drops, as when a browser tab crashes
            await student.close()
            await wait_for(lambda: classe.server.census()[1] == 1, 5)
        room = classe.server.rooms["dev:churn"]
        assert len(room.live.peers) == 2 and len(room.live.session.transports) == 2  # the teacher's two
        assert not room.live.session.producers[next(iter(room.live.session.producers))].consumers
        # The shared media port forgot every departed connection: routes only to the teacher's.
        assert classe.server.network.shared is not None
        (port,) = classe.server.network.shared.sockets.values()
        live = [protocol for peer in room.live.peers.values() if peer._ice for protocol in peer._ice._protocols]
        assert set(port.by_ufrag.values()) == set(live)
        assert set(port.by_address.values()) <= set(live) and set(port.by_transaction.values()) <= set(live)
        tasks_after, sockets_after = await settle()
        assert tasks_after <= tasks_before, (tasks_before, tasks_after)
        assert sockets_after <= sockets_before, (sockets_before, sockets_after)
    finally:
        await teacher.close()


async def test_sections_of_departed_publishers_are_reused(classe: RunningServer) -> None:
    teacher = Peer(classe.url, "reuse", "Prof", role="teacher")
    try:
        await teacher.join()
        for cycle in range(4):
            student = Peer(classe.url, "reuse", f"S{cycle}")
            await student.join()
            await student.publish()
            before = sum(len(r.numbers) for r in teacher.video())
            await wait_for(lambda b=before: sum(len(r.numbers) for r in teacher.video()) >= b + 10)  # type: ignore[misc]
            await student.close()
            await wait_for(lambda: classe.server.census()[1] == 1, 5)
        await wait_for(
            lambda: (
                teacher.sub is not None and all(t.currentDirection == "inactive" for t in teacher.sub.getTransceivers())
            )
        )
        assert teacher.sub is not None and len(teacher.sub.getTransceivers()) == 2  # one audio, one video section
    finally:
        await teacher.close()
