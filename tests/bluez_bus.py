"""A private dbus-daemon named as the system bus, with bluezoo on it (a mock of BlueZ's D-Bus
API: two powered mock adapters, the coach's and the fake treadmill's), or with an org.bluez
that never answers; and the central's list of devices forgotten, so a discovery finds one anew."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dbus_fast import BusType
from dbus_fast.aio import MessageBus

CENTRAL = ("hci0", "00:00:00:00:AA:01")
PERIPHERAL = ("hci1", "00:00:00:00:BB:02")


class Bluezoo:
    """A private dbus-daemon with bluezoo on it: two powered mock adapters, nothing else."""

    def __init__(self, tmp: Path, powered: bool = True, adapters: int = 2) -> None:
        self.tmp = tmp
        self.powered = powered
        self.adapters = adapters
        self.procs: list[subprocess.Popen[bytes]] = []
        self.address = ""

    def start(self) -> None:
        env = self.start_bus()
        self.procs.append(subprocess.Popen(
            [sys.executable, "-c", _BLUEZOO, "-q", "-q",
             *(["--auto-enable"] if self.powered else []), "--scan-interval", "1",
             *[arg for address in (CENTRAL[1], PERIPHERAL[1])[:self.adapters]
               for arg in ("-a", address)]], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def start_stuck(self) -> None:
        """Instead of bluezoo, a process that owns org.bluez and never answers anything: a
        bluetoothd that hangs (every call to it waits for ever; D-Bus itself has no limit)."""
        env = self.start_bus()
        stuck = subprocess.Popen([sys.executable, "-c", _STUCK], env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.procs.append(stuck)  # type: ignore[arg-type]
        assert stuck.stdout is not None
        if stuck.stdout.readline().strip() != "owned":
            raise RuntimeError("the stuck org.bluez did not start")

    def start_bus(self) -> dict[str, str]:
        """A private dbus-daemon; the environment that names it as the system bus."""
        daemon = shutil.which("dbus-daemon")
        if daemon is None:
            raise RuntimeError("dbus-daemon is not installed (Debian package dbus)")
        sock = self.tmp / "bus"
        self.address = f"unix:path={sock}"
        self.procs.append(subprocess.Popen(
            [daemon, "--session", "--nofork", "--nopidfile", f"--address={self.address}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("dbus-daemon did not start")
        return {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address}

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


#: bluezoo, its devices' GATT objects removed when they are disconnected, as BlueZ does:
#: bluezoo keeps them, so a device could not be connected a second time (its GATT objects
#: exported again at the same paths: EEXIST), and a link lost could never come back. Their
#: subscriptions to the app's notifications end with them too.
_BLUEZOO = """
from bluezoo import device
from bluezoo.bluezoo import main

_disconnect = device.Device.disconnect


async def disconnect(self, uuid=None):
    await _disconnect(self, uuid)
    for link in reversed(list(self.services.values())):
        subscription = getattr(link, "client_props_changed_subscription", None)
        if subscription is not None:  # else its notifications go on, twice once connected again
            subscription.unsubscribe()
            await link.client.StopNotify()
        self.peer_adapter.mock.remove_object(link)
    self.services.clear()
    await self.ServicesResolved.set_async(False)


device.Device.disconnect = disconnect
main()
"""

_STUCK = """
import asyncio, time
from dbus_fast import BusType
from dbus_fast.aio import MessageBus

async def main():
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    await bus.request_name("org.bluez")
    print("owned", flush=True)
    time.sleep(3600)  # the loop never runs again: nothing sent to org.bluez is answered

asyncio.run(main())
"""


@contextmanager
def _on_system_bus(zoo: Bluezoo, start: Callable[[], None]) -> Iterator[Bluezoo]:
    """``zoo`` started by ``start`` and named by DBUS_SYSTEM_BUS_ADDRESS meanwhile; stopped,
    and the variable put back as it was, after."""
    old = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    try:
        start()
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = zoo.address
        yield zoo
    finally:
        zoo.stop()
        if old is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = old


@contextmanager
def stuck_bluez() -> Iterator[Bluezoo]:
    """A private system bus whose org.bluez never answers, named by DBUS_SYSTEM_BUS_ADDRESS
    meanwhile."""
    with tempfile.TemporaryDirectory(prefix="vc-bluez-") as tmp:
        zoo = Bluezoo(Path(tmp))
        with _on_system_bus(zoo, zoo.start_stuck):
            yield zoo


@contextmanager
def mock_bluez(powered: bool = True, adapters: int = 2) -> Iterator[Bluezoo]:
    """bluezoo on a private bus, with DBUS_SYSTEM_BUS_ADDRESS pointing at it meanwhile."""
    with tempfile.TemporaryDirectory(prefix="vc-bluez-") as tmp:
        zoo = Bluezoo(Path(tmp), powered, adapters)
        with _on_system_bus(zoo, zoo.start):
            _wait_for_adapters(adapters)
            yield zoo


def _wait_for_adapters(count: int = 2) -> None:
    async def check() -> bool:
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            intro = await bus.introspect("org.bluez", "/")
            obj = bus.get_proxy_object("org.bluez", "/", intro)
            managed: dict[str, Any] = await obj.get_interface(
                "org.freedesktop.DBus.ObjectManager").call_get_managed_objects()
            return sum("org.bluez.Adapter1" in v for v in managed.values()) >= count
        except Exception:  # noqa: BLE001 - not up yet
            return False
        finally:
            bus.disconnect()

    for _ in range(100):
        if asyncio.run(check()):
            return
        time.sleep(0.1)
    raise RuntimeError("bluezoo did not come up")


def forget(address: str = PERIPHERAL[1], adapter: str = CENTRAL[0]) -> None:
    """Remove a device from the central's list, so the next discovery reports it anew (bluezoo
    reports a device to one discovery only; real BlueZ reports every advertisement)."""
    async def run() -> None:
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            path = f"/org/bluez/{adapter}"
            intro = await bus.introspect("org.bluez", path)
            obj = bus.get_proxy_object("org.bluez", path, intro)
            try:
                await obj.get_interface("org.bluez.Adapter1").call_remove_device(
                    f"{path}/dev_{address.replace(':', '_')}")
            except Exception:  # noqa: BLE001 - not known yet: nothing to forget
                pass
        finally:
            bus.disconnect()

    asyncio.run(run())
