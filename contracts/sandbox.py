"""What executors and code-interpreter workers say to each other on `ossa.sandbox.*`.

A session is a kernel that keeps variables and files between calls of one thread (Assistants) or
one response chain (Responses, whose runs share a thread). The first call of a session goes to the
workers' queue group; the worker that starts the kernel records itself in the `ossa_sandbox_sessions`
bucket, and later calls go straight to it. A worker that is gone (no responders) means a new kernel
elsewhere: `recreated` says so, and the model is told its earlier variables are lost.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class SandboxFile(BaseModel):
    """A File of the project to place in the session's working directory before the code runs."""

    file_id: str
    filename: str | None = None  # else the File's own name


class SandboxLimits(BaseModel):
    """What an agent asks for (its manifest's `spec.runtime`); a worker never goes past its operator's
    maximum, whatever is asked."""

    memory_bytes: int | None = Field(None, gt=0)
    call_seconds: float | None = Field(None, gt=0)
    cpu_seconds: int | None = Field(None, gt=0)
    processes: int | None = Field(None, gt=0)
    file_bytes: int | None = Field(None, gt=0)


class ExecuteRequest(BaseModel):
    session: str  # the thread id
    project: str
    code: str
    files: list[SandboxFile] = Field(default_factory=list)
    limits: SandboxLimits | None = None
    had_session: bool = False  # the caller knew a worker for this session: a new kernel is a re-creation


class OutputFile(BaseModel):
    """A file the code wrote (or a figure it showed), stored as a File of purpose `assistants_output`."""

    file_id: str
    filename: str
    path: str  # where the code sees it, e.g. /mnt/data/chart.png
    bytes: int
    image: bool = False  # a figure the code displayed (shown as an image output)


class ExecuteResult(BaseModel):
    session: str
    worker: str
    logs: str = ""
    error: str | None = None  # the exception the code raised (`Name: message`), or a limit it hit
    files: list[OutputFile] = Field(default_factory=list)
    truncated: bool = False
    kernel_died: bool = False
    recreated: bool = False  # a new kernel although the caller had one: earlier variables are gone
    notes: list[str] = Field(default_factory=list)  # what the model should know (files not stored, ...)


class SessionPlace(BaseModel):
    """`ossa_sandbox_sessions` record: which worker holds a session's kernel."""

    worker: str
    project: str


class Pong(BaseModel):
    """A worker's answer to `ossa.sandbox.worker.<id>.ping`."""

    worker: str
    sessions: int
