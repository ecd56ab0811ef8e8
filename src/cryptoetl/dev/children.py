"""The child processes of ``cryptoetl dev``: start one, stream its output, wait for it, stop it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp

from cryptoetl.dev.console import Console, DevError

STOP_GRACE_S = 10.0  # the worker itself finishes within 10 s of SIGTERM
READY_TIMEOUT_S = 30.0
STREAM_LIMIT = 1 << 20  # longest line read from a child (JSON log lines can be long)


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    pump: asyncio.Task[None]

    @property
    def running(self) -> bool:
        return self.process.returncode is None


def cryptoetl_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cryptoetl", *args]


async def spawn(
    name: str, command: Sequence[str], env: Mapping[str, str], console: Console
) -> Child:
    """Start ``command`` in its own session (Ctrl-C reaches only us) and stream its output."""
    process = await asyncio.create_subprocess_exec(
        *command,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        limit=STREAM_LIMIT,
    )
    assert process.stdout is not None
    pump = asyncio.create_task(_pump(name, process.stdout, console), name=f"pump:{name}")
    return Child(name=name, process=process, pump=pump)


async def _pump(name: str, stream: asyncio.StreamReader, console: Console) -> None:
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line longer than STREAM_LIMIT: show what we have
            line = await stream.read(STREAM_LIMIT)
        if not line:
            return
        console.line(name, line.decode(errors="replace"))


async def stop_child(child: Child, console: Console, grace: float = STOP_GRACE_S) -> int | None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL the child's whole process group."""
    process = child.process
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            console.say(f"{child.name} did not stop within {grace:.0f} s: killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(child.pump, 2.0)
    return process.returncode


async def wait_http(url: str, child: Child, timeout: float = READY_TIMEOUT_S) -> int:
    """Poll ``url`` until it answers (any HTTP status, returned) or the child exits."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while True:
            if not child.running:
                raise DevError(f"{child.name} exited with status {child.process.returncode}")
            try:
                async with session.get(url) as response:
                    return response.status
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise DevError(f"{child.name} did not answer {url} within {timeout:.0f} s")
            await asyncio.sleep(0.2)
