"""The Algorithm contract.

An algorithm meta-trains on batches of tasks handed to it and evaluates on batches of tasks; it
never samples data itself, never loops over meta-steps, never writes files.  `evaluate` must not
change the meta-parameters (a conformance test checks it).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, ClassVar

import torch

from metabench.errors import ConfigError
from metabench.suites.base import KINDS, Suite, TaskBatch

#: Version of the Algorithm contract a plugin is written against (stored with every run as
#: ``runs.contract_version``). Bump it when what the engine hands an algorithm, or expects back,
#: changes; a plugin declaring another version is refused with a sentence saying so.
CONTRACT_VERSION = 1
#: The miniImageNet and CIFAR-FS suites: every built-in classifier spells out its presets for them
#: (issue 22 section 1), so they never silently take the Omniglot settings.
IMAGE_SUITES = ("miniimagenet-5w1s", "miniimagenet-5w5s", "cifarfs-5w1s", "cifarfs-5w5s")


@dataclasses.dataclass(frozen=True)
class TrainRequest:
    """What the engine should sample for one meta-training step."""

    n_tasks: int
    n_way: int | None = None
    n_shot: int | None = None
    n_query: int | None = None


class Algorithm:
    name: ClassVar[str]
    family: ClassVar[str]                   # optimization / metric / memory / rl-...
    supports: ClassVar[frozenset[str]]      # task kinds (see metabench.suites.base.KINDS)
    Config: ClassVar[type]
    #: False for rows that do not meta-train (classical baselines): the engine then skips the
    #: training loop, records meta_steps = 0 and one validation point at step 0.
    needs_training: ClassVar[bool] = True
    #: preset name -> suite kind (or suite id) -> Config field overrides
    PRESETS: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    #: Named variants: short name -> the exact bracket entry (``rl2[trial_progress=true]``), each a
    #: configuration the paper did not use, so never a preset (docs/variants.md). ``--algorithms``
    #: accepts the short name; the leaderboard shows the entry.
    VARIANTS: ClassVar[dict[str, str]] = {}
    #: Config fields added after runs were recorded -> the value that computes exactly what those
    #: runs computed (a stored config without the field then still matches; engine.cell's
    #: ``config_differences``). Only for a field whose value reproduces the old code bit for bit.
    ADDED_FIELDS: ClassVar[dict[str, Any]] = {}
    #: The Algorithm contract version this class is written against (see CONTRACT_VERSION).
    contract_version: ClassVar[int] = CONTRACT_VERSION
    #: How the test-time adaptation budget is counted (issue 22 section 3): 'inner steps'
    #: (gradient steps on the support set, `test_inner_steps`), 'support passes' (metric and
    #: memory learners read the support set once) or 'none' (no adaptation to the support set).
    adaptation_unit: ClassVar[str] = "support passes"
    #: The Config field holding the number of inner steps at test, for 'inner steps' learners
    #: (`finetune` would name its `head_steps`).
    budget_field: ClassVar[str] = "test_inner_steps"
    #: Gradient-based learners set this to report their metric at the suite's common budgets
    #: (`Suite.common_budgets`, e.g. `mse@1` and `mse@10` on sinusoid) besides their own
    #: `test_inner_steps`: `evaluate` then runs `eval_steps()` steps and scores `report_steps()`.
    reports_common_budgets: ClassVar[bool] = False

    def __init__(self, suite: Suite, config: Any, device: torch.device, seed: int):
        self.suite, self.config, self.device, self.seed = suite, config, torch.device(device), seed
        #: How many meta-training steps the engine will run (set by the engine before training;
        #: None outside the engine).  For schedules that depend on it, e.g. Reptile's annealing.
        self.total_meta_steps: int | None = None

    # --- the contract -------------------------------------------------------------------------
    def train_request(self) -> TrainRequest:
        raise NotImplementedError

    def meta_train_step(self, batch: TaskBatch) -> dict[str, float]:
        raise NotImplementedError

    def evaluate(self, batch: TaskBatch) -> dict[str, torch.Tensor]:
        """Per-task metrics: metric name -> tensor of shape (n_tasks,)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def meta_parameters(self) -> dict[str, torch.Tensor]:
        """The learned meta-parameters (what `evaluate` must leave untouched)."""
        raise NotImplementedError

    @property
    def protocol(self) -> dict[str, Any]:
        """How test queries are evaluated: `transductive` and `query_batch` (stored with results)."""
        return {"transductive": False, "query_batch": "n/a"}

    # --- what the run records about its protocol (issue 22) ---------------------------------
    def budget_unit(self) -> str:
        """`adaptation_unit`, except 'trial' on meta-RL suites for learners that do not count
        inner steps: they adapt online, within the trial, which has no support set to pass over."""
        if self.suite.kind.startswith("rl-") and self.adaptation_unit != "inner steps":
            return "trial"
        return self.adaptation_unit

    def adaptation_budget(self) -> int | None:
        """The test-time adaptation budget in `budget_unit()`s: `test_inner_steps` for 'inner
        steps', 1 for 'support passes', 0 for 'none', None for 'trial' (the suite's trial length
        is the budget).  The headline metric is at this budget."""
        unit = self.budget_unit()
        if unit == "inner steps":
            return int(getattr(self.config, self.budget_field))
        return {"none": 0, "trial": None}.get(unit, 1)

    def report_steps(self) -> list[int]:
        """The inner-step counts k at which `evaluate` reports `metric@k`: 0..`test_inner_steps`
        (the `budget_field`), plus the suite's common budgets when the class `reports_common_budgets`."""
        own = int(getattr(self.config, self.budget_field))
        extra = tuple(getattr(self.suite, "common_budgets", ())) if self.reports_common_budgets else ()
        return sorted(set(range(own + 1)) | {int(k) for k in extra})

    def eval_steps(self) -> int:
        """How many inner steps `evaluate` runs: max(`test_inner_steps`, the largest common budget)
        for classes that report common budgets. The steps past `test_inner_steps` only add
        `metric@k` rows; they use no random numbers, so every other number is unchanged."""
        return max(self.report_steps())

    def backbone(self) -> str | None:
        """The network, as the published table names it (`metabench.results.published`):
        'conv4-pool-64', 'conv4-strided-64', 'mlp-40x2', 'lstm-lrua-200-128x40'...; None = not said."""
        return None

    def recorded_protocol(self) -> dict[str, Any]:
        """What the run records as its protocol (`runs.config['protocol']`): training way, shots
        and queries per class, the test-time adaptation budget and its unit, the backbone and a
        model option (`model`, e.g. Matching Networks' 'fce'). Published numbers are attached
        only to runs whose recorded protocol matches the paper's (issue 22). Subclasses whose
        training tasks are not plain support/query episodes override the training fields."""
        way = shot = query = None
        if self.needs_training and self.suite.kind in ("classification", "regression"):
            req = self.train_request()
            if self.suite.kind == "classification":
                way = req.n_way or self.suite.n_way
            shot = req.n_shot or self.suite.n_shot
            query = req.n_query or self.suite.n_query_test
        budget, unit = self.adaptation_budget(), self.budget_unit()
        return {"train_way": way, "train_shot": shot, "train_query": query,
                "test_steps": budget if unit == "inner steps" else None,
                "adaptation_budget": budget, "adaptation_unit": unit,
                "backbone": self.backbone(), "model": None}

    # --- helpers ------------------------------------------------------------------------------
    @classmethod
    def fits(cls, suite: Suite) -> tuple[bool, str]:
        if suite.kind in cls.supports:
            return True, ""
        return False, (f"{cls.name} handles {', '.join(sorted(cls.supports))} tasks; "
                       f"{suite.id} is {suite.kind}")

    @classmethod
    def preset_config(cls, preset: str, suite: Suite, overrides: dict[str, Any] | None = None):
        """The Config for `preset` on `suite`: defaults, then the preset's entry for the suite's
        kind, then its entry for the suite id, then `overrides`."""
        table = cls.PRESETS.get(preset)
        if table is None:
            raise ConfigError(f"{cls.name} has no preset {preset!r}; presets: {', '.join(cls.PRESETS)}")
        values: dict[str, Any] = {}
        values.update(table.get(suite.kind, {}))
        values.update(table.get(suite.id, {}))
        values.update(overrides or {})
        return make_config(cls.Config, values, where=f"{cls.name} ({preset} preset)")


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_algorithm_class(ref: str, obj: object) -> type[Algorithm]:
    """``obj`` if it is a usable Algorithm class (a plugin's), else ConfigError naming the rule.

    The static part of the contract; ``metabench check`` runs the behavioural part."""
    where = f"the algorithm {ref!r}"
    if not (isinstance(obj, type) and issubclass(obj, Algorithm)):
        raise ConfigError(f"{where} must be a subclass of metabench.algorithms.Algorithm, "
                          f"got {type(obj).__name__} {getattr(obj, '__name__', obj)!r}")
    for attr in ("name", "family", "supports", "Config"):
        if not hasattr(obj, attr):
            raise ConfigError(f"{where} must set the class attribute {attr!r} (see docs/plugins.md)")
    if not isinstance(obj.name, str) or not _NAME.fullmatch(obj.name):
        raise ConfigError(f"{where}: name must be letters, digits, '.', '_' or '-' (at most 64), "
                          f"got {obj.name!r}")
    bad = sorted(set(obj.supports) - set(KINDS))
    if bad or not obj.supports:
        raise ConfigError(f"{where}: supports must be a non-empty set of task kinds from "
                          f"{', '.join(KINDS)}, got {sorted(obj.supports)!r}")
    if not dataclasses.is_dataclass(obj.Config):
        raise ConfigError(f"{where}: Config must be a dataclass (frozen, one docstring per field)")
    if obj.contract_version != CONTRACT_VERSION:
        raise ConfigError(f"{where} is written for Algorithm contract version {obj.contract_version}; "
                          f"this metabench has version {CONTRACT_VERSION} (see docs/plugins.md)")
    needed = ("evaluate", "state_dict", "load_state_dict", "meta_parameters")
    if obj.needs_training:
        needed = ("train_request", "meta_train_step") + needed
    missing = [m for m in needed if getattr(obj, m) is getattr(Algorithm, m)]
    if missing:
        raise ConfigError(f"{where} must implement {', '.join(missing)} (see docs/plugins.md)")
    return obj


def make_config(config_cls: type, values: dict[str, Any], where: str):
    """Build a frozen Config dataclass, with a clear error for unknown fields or wrong types."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(unknown)}; "
                          f"known: {', '.join(fields)}")
    cfg = config_cls(**values)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


class BoundedConfig:
    """Base of a frozen Config dataclass: `BOUNDS` declares the allowed values of its fields once
    (see `check_bounds`) and `validate()` checks them.  A Config with rules that tie fields
    together overrides `validate`, calling `super().validate()` first.  `WHO`, when set, starts
    every message ('rl2: lr must be positive, got 0.0')."""

    BOUNDS: ClassVar[dict[str, str | tuple[Any, ...]]] = {}
    WHO: ClassVar[str] = ""

    def validate(self) -> None:
        check_bounds(self, self.BOUNDS, self.WHO)


_NUMBER = r"(-?[0-9.]+(?:e-?[0-9]+)?)"
_COMPARISON = re.compile(rf"(>=|>|<=|<) *{_NUMBER}")
_INTERVAL = re.compile(rf"([\[(]) *{_NUMBER}, *{_NUMBER} *([\])])")
_SAYS = {">=": "be at least {}", ">": "be above {}", "<=": "be at most {}", "<": "be below {}"}
_HOLDS = {">=": lambda v, x: v >= x, ">": lambda v, x: v > x, "<=": lambda v, x: v <= x, "<": lambda v, x: v < x}


def parse_bound(rule: str) -> tuple[Callable[[Any], bool], str]:
    """A rule of `BOUNDS` -> (does a value hold it, what the message says the value must do):
    '>= 1' -> 'be at least 1', '> 0' -> 'be positive', '<= 20' -> 'be at most 20', an interval
    '[0, 1)' -> 'lie in [0, 1)'.  A rule may end in ' (why)', which the message keeps."""
    text, _, why = rule.partition(" (")
    why = f" ({why}" if why else ""
    if m := _COMPARISON.fullmatch(text):
        op, x = m[1], float(m[2])
        says = "be positive" if (op, x) == (">", 0) else _SAYS[op].format(m[2])
        return (lambda v: _HOLDS[op](v, x)), says + why
    if m := _INTERVAL.fullmatch(text):
        above, below = _HOLDS[">=" if m[1] == "[" else ">"], _HOLDS["<=" if m[4] == "]" else "<"]
        lo, hi = float(m[2]), float(m[3])
        return (lambda v: above(v, lo) and below(v, hi)), f"lie in {text}{why}"
    raise ValueError(f"not a bound: {rule!r} (expected e.g. '>= 1', '> 0' or '[0, 1)')")


def check_bounds(config: Any, bounds: dict[str, str | tuple[Any, ...]], who: str = "") -> None:
    """ConfigError naming the first field of `config` outside its bound, the bound and the value.

    `bounds`: field -> the tuple of its allowed values ('batching must be one of auto, loop, vmap,
    got 'x''), or a rule of `parse_bound` ('inner_steps must be at least 1, got 0').  None passes
    a rule (fields whose None means 'the suite's'); a tuple value must hold it in every entry."""
    start = f"{who}: " if who else ""
    for name, rule in bounds.items():
        value = getattr(config, name)
        if isinstance(rule, tuple):
            if value not in rule:
                raise ConfigError(f"{start}{name} must be one of {', '.join(map(str, rule))}, got {value!r}")
            continue
        holds, says = parse_bound(rule)
        entries = value if isinstance(value, (tuple, list)) else (value,)
        if value is not None and not all(holds(v) for v in entries):
            subject = f"every entry of {name}" if entries is value else name
            raise ConfigError(f"{start}{subject} must {says}, got {value}")


def seeded_init(seed: int, build):
    """Build a module with the global RNG seeded, without disturbing the caller's global RNG
    (torch.nn initialisers only take the global generator)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def classification_metrics(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, accuracy) of logits (N, n_way) against labels (N,)."""
    loss = torch.nn.functional.cross_entropy(logits, y)
    acc = (logits.argmax(-1) == y).float().mean()
    return loss, acc


def train_on_episodes(model, opt, sched, batch: TaskBatch, episode) -> dict[str, float]:
    """One optimiser step of an episodic learner: `episode(t)` -> (loss, accuracy) of task t.

    The mean loss over the batch's tasks is back-propagated one task at a time (one task's graph
    in memory at once), then `opt` and `sched` step. Returns the mean loss and accuracy.
    """
    model.train()
    opt.zero_grad(set_to_none=True)
    total_loss = total_acc = 0.0
    for t in range(batch.n_tasks):
        loss, acc = episode(t)
        (loss / batch.n_tasks).backward()
        total_loss += loss.item()
        total_acc += float(acc)
    opt.step()
    sched.step()
    return {"loss": total_loss / batch.n_tasks, "accuracy": total_acc / batch.n_tasks}


def embed_episodes(embed, batch: TaskBatch, chunk: int = 8) -> torch.Tensor:
    """Embed every support and query image of a batch: (T, n_s + n_q, D).

    For eval-mode networks, whose outputs do not depend on the other images of the call, so
    several tasks share one forward pass (chunks of 8 tasks keep the first activation of 5-way
    1-shot Conv-4 episodes under ~100 MB).
    """
    T, n = batch.n_tasks, batch.support_x.shape[1] + batch.query_x.shape[1]
    x = torch.cat([batch.support_x, batch.query_x], 1)          # (T, n_s + n_q, C, H, W)
    z = torch.cat([embed(x[lo:lo + chunk].flatten(0, 1)) for lo in range(0, T, chunk)])
    return z.view(T, n, -1)


class EpisodicLearner(Algorithm):
    """An episodic learner whose whole state is `model`, its optimiser `opt` and its scheduler
    `sched` (ProtoNet, Matching Networks, MetaNet): the meta-parameters are the model's, the
    checkpoint is those three, and `evaluate_tasks` scores a batch task by task in eval mode.
    `train_request` asks for one episode of the Config's `train_way` x (`train_shot` +
    `n_query`) (None = the suite's way and shot); a learner whose Config differs overrides it."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: Any

    def _adam_halving(self, lr: float, halve_every: int) -> None:
        """`opt`: Adam over the model with step size `lr`, halved every `halve_every` steps (`sched`)."""
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=halve_every, gamma=0.5)

    def train_request(self) -> TrainRequest:
        c = self.config
        return TrainRequest(n_tasks=1, n_way=c.train_way or self.suite.n_way,
                            n_shot=c.train_shot or self.suite.n_shot, n_query=c.n_query)

    def meta_parameters(self) -> dict[str, torch.Tensor]:
        return dict(self.model.named_parameters())

    def state_dict(self) -> dict[str, Any]:
        return states_of(model=self.model, opt=self.opt, sched=self.sched)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_states(state, model=self.model, opt=self.opt, sched=self.sched)

    def evaluate_tasks(self, batch: TaskBatch, embed, task_metrics) -> dict[str, torch.Tensor]:
        """With the model in eval mode (its mode restored after): ``z = embed(batch)`` once, then
        ``task_metrics(z, t)`` -> (loss, accuracy) of task t. Returns ``accuracy`` and ``loss``,
        each (n_tasks,). Call it under ``torch.no_grad()``."""
        was_training = self.model.training
        self.model.eval()
        T = batch.n_tasks
        z = embed(batch)
        acc, loss = torch.zeros(T), torch.zeros(T)
        for t in range(T):
            loss[t], acc[t] = task_metrics(z, t)
        self.model.train(was_training)
        return {"accuracy": acc, "loss": loss}


def states_of(**parts: Any) -> dict[str, Any]:
    """``{name: part.state_dict()}`` for modules, optimisers and schedulers (see ``load_states``)."""
    return {name: part.state_dict() for name, part in parts.items()}


def load_states(state: dict[str, Any], **parts: Any) -> None:
    """The inverse of ``states_of``: ``part.load_state_dict(state[name])`` for each part."""
    for name, part in parts.items():
        part.load_state_dict(state[name])
