"""What an ExecuTorch program (.pte) runs where, read from the file itself, without any runtime.

A .pte is a FlatBuffer (executorch/schema/program.fbs, file identifier "ET12"): each method's
execution plan is a chain of instructions, each a KernelCall (an operator run by the runtime's own
kernels: portable, optimized or quantized) or a DelegateCall (a whole partition handed to a
backend such as XnnpackBackend). That is the placement: which partitions were delegated, and which
ops fell back to the CPU kernels because the partitioner could not take them. Reading it here works
the same under the full `executorch` wheel and the torch-free `executorch-numpy-runtime`, neither of
which exposes it, and on Python 3.8.

Only the few fields placement needs are read; this is not a general FlatBuffer parser.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

FILE_IDENTIFIER_PREFIX = b"ET"       # ET12 today; the digits are the schema's version
KERNEL_CALL, DELEGATE_CALL = 1, 2    # InstructionArguments union members (program.fbs order, NONE = 0)
# Field indexes in their tables (program.fbs declaration order).
_PROGRAM_PLANS = 1
_PLAN_NAME, _PLAN_CHAINS, _PLAN_OPERATORS, _PLAN_DELEGATES = 0, 5, 6, 7
_CHAIN_INSTRUCTIONS = 2
_INSTR_TYPE, _INSTR_ARGS = 0, 1
_OPERATOR_NAME, _OPERATOR_OVERLOAD = 0, 1
_CALL_INDEX = 0                      # KernelCall.op_index, DelegateCall.delegate_index
_DELEGATE_ID = 0


class NotAProgramError(ValueError):
    """The bytes are not an ExecuTorch program (or one too damaged to read)."""


@dataclass(frozen=True)
class Step:
    """One instruction that computes: an operator on the runtime's kernels, or a delegated partition."""

    kind: str        # "kernel" or "delegate"
    name: str        # "aten::mean.out", or the backend id ("XnnpackBackend")
    index: int       # position among the method's computing instructions


@dataclass(frozen=True)
class Method:
    name: str
    steps: tuple[Step, ...]

    @property
    def delegated(self) -> tuple[Step, ...]:
        return tuple(step for step in self.steps if step.kind == "delegate")

    @property
    def kernels(self) -> tuple[Step, ...]:
        return tuple(step for step in self.steps if step.kind == "kernel")


def is_program(head: bytes) -> bool:
    return len(head) >= 8 and head[4:6] == FILE_IDENTIFIER_PREFIX and head[6:8].isdigit()


def read_methods(data: bytes) -> list[Method]:
    """Every method's computing steps in execution order; NotAProgramError when `data` is no .pte."""
    if not is_program(data[:8]):
        raise NotAProgramError(f"no ExecuTorch file identifier (ET12) at bytes 4..8, found {data[4:8]!r}")
    try:
        buffer = _Buffer(data)
        program = buffer.root()
        return [_method(buffer, plan) for plan in buffer.tables(program, _PROGRAM_PLANS)]
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise NotAProgramError(f"the program's FlatBuffer is damaged ({exc})") from exc


def placement_summary(method: Method) -> str:
    """e.g. "XnnpackBackend: 2 partitions; CPU kernels: aten::mean.out, aten::cumsum.out"."""
    parts = []
    backends = sorted({step.name for step in method.delegated})
    for backend in backends:
        count = sum(1 for step in method.delegated if step.name == backend)
        parts.append(f"{backend}: {count} partition{'s' if count != 1 else ''}")
    if method.kernels:
        parts.append("CPU kernels: " + ", ".join(step.name for step in method.kernels))
    return "; ".join(parts) or "no computing instructions"


def _method(buffer: _Buffer, plan: int) -> Method:
    operators = [_operator_name(buffer, op) for op in buffer.tables(plan, _PLAN_OPERATORS)]
    delegates = [buffer.string(d, _DELEGATE_ID) or "unknown" for d in buffer.tables(plan, _PLAN_DELEGATES)]
    steps: list[Step] = []
    for chain in buffer.tables(plan, _PLAN_CHAINS):
        for instruction in buffer.tables(chain, _CHAIN_INSTRUCTIONS):
            step = _step(buffer, instruction, operators, delegates, len(steps))
            if step is not None:
                steps.append(step)
    return Method(buffer.string(plan, _PLAN_NAME) or "forward", tuple(steps))


def _step(buffer: _Buffer, instruction: int, operators: list[str], delegates: list[str],
          index: int) -> Step | None:
    kind = buffer.scalar(instruction, _INSTR_TYPE, "<B", 0)
    if kind not in (KERNEL_CALL, DELEGATE_CALL):
        return None  # moves, jumps and frees compute nothing
    call = buffer.table(instruction, _INSTR_ARGS)
    which = buffer.scalar(call, _CALL_INDEX, "<i", 0) if call is not None else -1
    names = operators if kind == KERNEL_CALL else delegates
    name = names[which] if 0 <= which < len(names) else f"#{which}"
    return Step("kernel" if kind == KERNEL_CALL else "delegate", name, index)


def _operator_name(buffer: _Buffer, operator: int) -> str:
    name, overload = buffer.string(operator, _OPERATOR_NAME), buffer.string(operator, _OPERATOR_OVERLOAD)
    return f"{name}.{overload}" if overload else name


class _Buffer:
    """The FlatBuffer wire format: tables reach their fields through a vtable of 16-bit offsets."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def root(self) -> int:
        return self._u32(0)

    def _u32(self, pos: int) -> int:
        return struct.unpack_from("<I", self.data, pos)[0]

    def _field(self, table: int, index: int) -> int:
        """The field's absolute position, or 0 when the table leaves it out."""
        vtable = table - struct.unpack_from("<i", self.data, table)[0]
        vtable_size = struct.unpack_from("<H", self.data, vtable)[0]
        slot = 4 + 2 * index
        if slot >= vtable_size:
            return 0
        offset = struct.unpack_from("<H", self.data, vtable + slot)[0]
        return table + offset if offset else 0

    def scalar(self, table: int, index: int, fmt: str, default: int) -> int:
        pos = self._field(table, index)
        return struct.unpack_from(fmt, self.data, pos)[0] if pos else default

    def table(self, table: int, index: int) -> int | None:
        pos = self._field(table, index)
        return pos + self._u32(pos) if pos else None

    def string(self, table: int, index: int) -> str:
        start = self.table(table, index)
        if start is None:
            return ""
        return self.data[start + 4:start + 4 + self._u32(start)].decode("utf-8")

    def tables(self, table: int, index: int) -> list[int]:
        vector = self.table(table, index)
        if vector is None:
            return []
        elements = [vector + 4 + 4 * i for i in range(self._u32(vector))]
        return [pos + self._u32(pos) for pos in elements]
