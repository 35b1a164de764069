"""Which trials a sweep runs.

A grid sweep is the product of ``--set KEY=V1,V2,...`` settings and ``--seeds``; a trial is one
training run with one value of each setting and one seed. A search (``--trials N``) draws
settings from ``--search KEY=float:LO:HI[:log] | int:LO:HI | cat:A,B,...`` with Optuna. A KEY is
an option of ``spikesim train TASK`` without its dashes, with ``_`` for ``-`` (``lr``,
``batch_size``); every trial runs ``spikesim train TASK --seed S --KEY VALUE ...`` plus the
sweep's fixed ``--args``.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field


@dataclass
class Trial:
    """One run of a sweep: its name (folder), settings and seed."""
    name: str
    params: dict
    seed: int
    number: int | None = None           # Optuna trial number (searches)
    extra: list = field(default_factory=list)

    def config_key(self) -> str:
        """The configuration without the seed (trials of one configuration are its seeds)."""
        return config_name(self.params)

    def argv(self, task: str, out: str, fixed: list) -> list:
        args = ["--out", out, "--seed", str(self.seed), "--resume", *fixed]
        for k, v in self.params.items():
            args += [option(k), str(v)]
        return args


def option(key: str) -> str:
    return "--" + key.replace("_", "-")


def config_name(params: dict) -> str:
    if not params:
        return "default"
    return ",".join(f"{k}={v}" for k, v in params.items())


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=,+-]", "_", text)


def parse_settings(items) -> dict:
    """``["lr=5e-3,1e-2", "batch_size=32"]`` -> {"lr": ["5e-3", "1e-2"], ...} (in order)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE[,VALUE...]")
        k, v = item.split("=", 1)
        k = k.strip().lstrip("-").replace("-", "_")
        values = [x.strip() for x in v.split(",") if x.strip()]
        if not k or not values:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE[,VALUE...]")
        if k in ("seed", "out", "resume"):
            raise ValueError(f"--set {k}: the sweep sets --{k} itself (use --seeds)")
        out[k] = values
    return out


def parse_seeds(text) -> list:
    """"0-7" or "0,3,5" or "4" (a count: seeds 0..3)."""
    text = str(text).strip()
    try:
        if "-" in text:
            a, b = text.split("-", 1)
            seeds = list(range(int(a), int(b) + 1))
        elif "," in text:
            seeds = [int(x) for x in text.split(",")]
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise ValueError(f"--seeds {text!r}: expected a count (8), a range (0-7) or a list "
                         "(0,3,5)") from None
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError(f"--seeds {text!r}: expected at least one seed, none negative")
    return seeds


def grid_trials(settings: dict, seeds: list) -> list:
    keys = list(settings)
    trials = []
    for values in itertools.product(*(settings[k] for k in keys)):
        params = dict(zip(keys, values))
        for s in seeds:
            trials.append(Trial(_safe(f"{config_name(params)},seed={s}"), params, s))
    return trials


@dataclass
class SearchSpace:
    """KEY -> (kind, args) for Optuna's suggest_float/int/categorical."""
    dims: dict

    @classmethod
    def parse(cls, items) -> "SearchSpace":
        dims = {}
        for item in items or []:
            try:
                k, spec = item.split("=", 1)
                kind, rest = spec.split(":", 1)
                k = k.strip().replace("-", "_")
                if kind == "float":
                    parts = rest.split(":")
                    lo, hi = float(parts[0]), float(parts[1])
                    log = len(parts) > 2 and parts[2] == "log"
                    if not lo < hi or (log and lo <= 0):
                        raise ValueError
                    dims[k] = ("float", lo, hi, log)
                elif kind == "int":
                    lo, hi = (int(x) for x in rest.split(":")[:2])
                    if not lo < hi:
                        raise ValueError
                    dims[k] = ("int", lo, hi)
                elif kind == "cat":
                    choices = [x for x in rest.split(",") if x]
                    if not choices:
                        raise ValueError
                    dims[k] = ("cat", choices)
                else:
                    raise ValueError
            except ValueError:
                raise ValueError(f"--search {item!r}: expected KEY=float:LO:HI[:log], "
                                 "KEY=int:LO:HI or KEY=cat:A,B,...") from None
        if not dims:
            raise ValueError("a search needs at least one --search KEY=...")
        return cls(dims)

    def distributions(self) -> dict:
        import optuna.distributions as d
        out = {}
        for k, spec in self.dims.items():
            if spec[0] == "float":
                out[k] = d.FloatDistribution(spec[1], spec[2], log=spec[3])
            elif spec[0] == "int":
                out[k] = d.IntDistribution(spec[1], spec[2])
            else:
                out[k] = d.CategoricalDistribution(spec[1])
        return out


def journal_storage(path):
    """The Optuna storage of a search: a journal file (``study.log``) that the driver and the
    workers share and that a resumed sweep reloads."""
    import optuna
    from optuna.storages import JournalStorage
    try:
        from optuna.storages.journal import JournalFileBackend
    except ImportError:                         # optuna < 4
        from optuna.storages import JournalFileStorage as JournalFileBackend
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return JournalStorage(JournalFileBackend(str(path)))
