"""Energy per operation.

Defaults: 45 nm CMOS, Horowitz (ISSCC 2014), as the efficiency claims of the spiking-network
literature use them. float32: multiply 3.7 pJ, add 0.9 pJ, so a multiply-accumulate 4.6 pJ;
int32: multiply 3.1 pJ, add 0.1 pJ, MAC 3.2 pJ. An accumulate (AC) costs an add. A
nonlinearity (tanh, sigmoid; dense networks only) is counted as one MAC, an assumption
(a lookup table or a polynomial would cost more or less). Memory access is not counted unless
``mem`` (pJ per synaptic operation, for reading its weight) is set: Horowitz gives about 5 pJ
for a 32-bit read from an 8 KB SRAM and 640 pJ from DRAM.

``EnergyTable.from_spec`` overrides any constant from a JSON file (``{"mac": 4.6, ...}``) or
``key=value`` strings.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

PRECISIONS = ("float32", "int32")


@dataclass(frozen=True)
class EnergyTable:
    """pJ per operation."""
    mac: float = 4.6
    mul: float = 3.7
    add: float = 0.9
    act: float = 4.6
    mem: float = 0.0
    precision: str = "float32"

    @classmethod
    def default(cls, precision: str = "float32") -> "EnergyTable":
        if precision == "float32":
            return cls()
        if precision == "int32":
            return cls(mac=3.2, mul=3.1, add=0.1, act=3.2, precision="int32")
        raise ValueError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")

    def override(self, items) -> "EnergyTable":
        """This table with ``items`` (a JSON file path, or ``key=value`` strings) applied."""
        names = {f.name for f in fields(self)} - {"precision"}
        changes = {}
        for item in items or []:
            if "=" not in str(item) and Path(item).is_file():
                data = json.loads(Path(item).read_text())
                if not isinstance(data, dict):
                    raise ValueError(f"{item}: expected a JSON object of pJ per operation")
                pairs = data.items()
            elif "=" in str(item):
                k, v = str(item).split("=", 1)
                pairs = [(k.strip(), v)]
            else:
                raise ValueError(f"energy override {item!r}: expected KEY=PJ or a JSON file")
            for k, v in pairs:
                if k not in names:
                    raise ValueError(f"unknown operation {k!r} in energy override; known: "
                                     f"{', '.join(sorted(names))}")
                try:
                    v = float(v)
                except (TypeError, ValueError):
                    raise ValueError(f"energy of {k!r} must be a number of pJ, got {v!r}") \
                        from None
                if not v >= 0:
                    raise ValueError(f"energy of {k!r} must be >= 0 pJ, got {v}")
                changes[k] = v
        return replace(self, **changes)

    def energy_pj(self, ops: dict) -> float:
        """Energy of ``ops`` (``ac``, ``mac``, ``mul``, ``add``, ``act``) in pJ; every
        synaptic operation (AC or MAC) also reads its weight (``mem``)."""
        syn = ops.get("ac", 0.0) + ops.get("mac", 0.0)
        return (ops.get("ac", 0.0) * self.add + ops.get("mac", 0.0) * self.mac
                + ops.get("mul", 0.0) * self.mul + ops.get("add", 0.0) * self.add
                + ops.get("act", 0.0) * self.act + syn * self.mem)

    def to_dict(self) -> dict:
        return asdict(self)
