"""Config file schemas and defaults: cloudcore.yaml (``cloudcore.config.kubeedge.io/v1alpha1``)
and edgecore.yaml (``edgecore.config.kubeedge.io/v1alpha2``).

Keys and defaults are KubeEdge's, so an upstream cloudcore.yaml reads the same. Modules this
version does not implement yet are kept as free-form mappings so their keys are not lost.

    >>> cfg = load_cloudcore_config(None)        # all defaults
    >>> cfg.modules.cloudHub.nodeLimit
    500
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pykubeedge.core.errors import ConfigError

CLOUDCORE_API_VERSION = "cloudcore.config.kubeedge.io/v1alpha1"
EDGECORE_API_VERSION = "edgecore.config.kubeedge.io/v1alpha2"
DEFAULT_CLOUDCORE_CONFIG = Path("/etc/kubeedge/config/cloudcore.yaml")
DEFAULT_EDGECORE_CONFIG = Path("/etc/kubeedge/config/edgecore.yaml")
DEFAULT_PROJECT_ID = "e632aba927ea4ac2b575ec1603d56f10"


class _Section(BaseModel):
    # Unknown keys are kept (forward compatibility with upstream files), not rejected.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class KubeAPIConfig(_Section):
    master: str = ""
    kubeConfig: str = ""
    contentType: str = "application/vnd.kubernetes.protobuf"
    qps: int = Field(default=100, ge=1)
    burst: int = Field(default=200, ge=1)


class CloudHubWebSocket(_Section):
    enable: bool = True
    address: str = "0.0.0.0"
    port: int = Field(default=10000, ge=1, le=65535)


class CloudHubHTTPS(_Section):
    enable: bool = True
    address: str = "0.0.0.0"
    port: int = Field(default=10002, ge=1, le=65535)


class CloudHub(_Section):
    enable: bool = True
    keepaliveInterval: int = Field(default=30, ge=1)
    nodeLimit: int = Field(default=500, ge=1)
    writeTimeout: int = Field(default=30, ge=1)
    tlsCAFile: str = "/etc/kubeedge/ca/rootCA.crt"
    tlsCAKeyFile: str = "/etc/kubeedge/ca/rootCA.key"
    tlsCertFile: str = "/etc/kubeedge/certs/server.crt"
    tlsPrivateKeyFile: str = "/etc/kubeedge/certs/server.key"
    advertiseAddress: list[str] = Field(default_factory=list)
    dnsNames: list[str] = Field(default_factory=list)
    edgeCertSigningDuration: int = Field(default=365, ge=1)
    tokenRefreshDuration: int = Field(default=12, ge=1)
    websocket: CloudHubWebSocket = Field(default_factory=CloudHubWebSocket)
    https: CloudHubHTTPS = Field(default_factory=CloudHubHTTPS)


class DeviceControllerBuffer(_Section):
    updateDeviceTwins: int = Field(default=1024, ge=1)
    updateDeviceStatus: int = Field(default=1024, ge=1)
    deviceEvent: int = Field(default=1, ge=0)
    deviceModelEvent: int = Field(default=1, ge=0)
    deviceStatusEvent: int = Field(default=0, ge=0)


class DeviceControllerLoad(_Section):
    updateDeviceStatusWorkers: int = Field(default=1, ge=1)


class DeviceController(_Section):
    enable: bool = True
    buffer: DeviceControllerBuffer = Field(default_factory=DeviceControllerBuffer)
    load: DeviceControllerLoad = Field(default_factory=DeviceControllerLoad)


class CloudStream(_Section):
    """``modules.cloudStream``: upstream's keys and defaults; ``tunnelAddress`` and
    ``streamAddress`` are pykubeedge's (upstream listens on every address)."""

    enable: bool = False
    tlsTunnelCAFile: str = "/etc/kubeedge/ca/rootCA.crt"
    tlsTunnelCertFile: str = "/etc/kubeedge/certs/server.crt"
    tlsTunnelPrivateKeyFile: str = "/etc/kubeedge/certs/server.key"
    tunnelPort: int = Field(default=10004, ge=1, le=65535)
    tlsStreamCAFile: str = "/etc/kubeedge/ca/streamCA.crt"
    tlsStreamCertFile: str = "/etc/kubeedge/certs/stream.crt"
    tlsStreamPrivateKeyFile: str = "/etc/kubeedge/certs/stream.key"
    streamPort: int = Field(default=10003, ge=1, le=65535)
    tunnelAddress: str = "0.0.0.0"
    streamAddress: str = "0.0.0.0"


class Router(_Section):
    """``modules.router`` (upstream's keys and defaults): the REST listener of rule traffic."""

    enable: bool = False
    address: str = "0.0.0.0"
    port: int = Field(default=9443, ge=1, le=65535)
    restTimeout: int = Field(default=60, ge=1)


class CloudModules(_Section):
    cloudHub: CloudHub = Field(default_factory=CloudHub)
    deviceController: DeviceController = Field(default_factory=DeviceController)
    cloudStream: CloudStream = Field(default_factory=CloudStream)
    router: Router = Field(default_factory=Router)


class CloudCoreConfig(_Section):
    apiVersion: str = CLOUDCORE_API_VERSION
    kind: str = "CloudCore"
    kubeAPIConfig: KubeAPIConfig = Field(default_factory=KubeAPIConfig)
    modules: CloudModules = Field(default_factory=CloudModules)


class Database(_Section):
    driverName: str = "sqlite3"
    aliasName: str = "default"
    dataSource: str = "/var/lib/kubeedge/edgecore.db"


class EdgeHubWebSocket(_Section):
    enable: bool = True
    server: str = "127.0.0.1:10000"
    handshakeTimeout: int = Field(default=30, ge=1)
    readDeadline: int = Field(default=15, ge=1)
    writeDeadline: int = Field(default=15, ge=1)


class EdgeHub(_Section):
    enable: bool = True
    heartbeat: int = Field(default=15, ge=1)
    projectID: str = DEFAULT_PROJECT_ID
    messageQPS: float = Field(default=30, gt=0)
    messageBurst: int = Field(default=60, ge=1)
    tlsCaFile: str = "/etc/kubeedge/ca/rootCA.crt"
    tlsCertFile: str = "/etc/kubeedge/certs/server.crt"
    tlsPrivateKeyFile: str = "/etc/kubeedge/certs/server.key"
    httpServer: str = "https://127.0.0.1:10002"
    token: str = ""
    rotateCertificates: bool = True
    websocket: EdgeHubWebSocket = Field(default_factory=EdgeHubWebSocket)


class TailoredKubeletFlag(_Section):
    hostnameOverride: str = ""
    nodeIP: str = ""
    nodeLabels: dict[str, str] = Field(default_factory=dict)
    rootDirectory: str = "/var/lib/kubelet"


class Edged(_Section):
    enable: bool = True
    registerNodeNamespace: str = "default"
    # True, as kubelet (upstream edged defaults to false: no Events reach the cloud)
    reportEvent: bool = True
    tailoredKubeletFlag: TailoredKubeletFlag = Field(default_factory=TailoredKubeletFlag)


class MetaServer(_Section):
    enable: bool = False
    server: str = "127.0.0.1:10550"


class MetaManager(_Section):
    enable: bool = True
    contextSendGroup: str = "hub"
    contextSendModule: str = "websocket"
    remoteQueryTimeout: int = Field(default=60, ge=1)
    metaServer: MetaServer = Field(default_factory=MetaServer)


class EventBusTLS(_Section):
    enable: bool = False
    tlsMqttCAFile: str = "/etc/kubeedge/ca/rootCA.crt"
    tlsMqttCertFile: str = "/etc/kubeedge/certs/server.crt"
    tlsMqttPrivateKeyFile: str = "/etc/kubeedge/certs/server.key"


MQTT_MODE_INTERNAL, MQTT_MODE_BOTH, MQTT_MODE_EXTERNAL = 0, 1, 2


class EventBus(_Section):
    enable: bool = True
    mqttQOS: int = Field(default=0, ge=0, le=2)
    mqttRetain: bool = False
    mqttSessionQueueSize: int = Field(default=100, ge=1)
    mqttServerInternal: str = "tcp://127.0.0.1:1884"
    mqttServerExternal: str = "tcp://127.0.0.1:1883"
    mqttSubClientID: str = ""
    mqttPubClientID: str = ""
    mqttUsername: str = ""
    mqttPassword: str = ""
    mqttMode: int = Field(default=MQTT_MODE_EXTERNAL, ge=MQTT_MODE_INTERNAL,
                          le=MQTT_MODE_EXTERNAL)
    eventBusTLS: EventBusTLS = Field(default_factory=EventBusTLS)


class DeviceTwin(_Section):
    enable: bool = True
    dmiSockPath: str = "/etc/kubeedge/"


class EdgeStream(_Section):
    """``modules.edgeStream`` (upstream's keys and defaults)."""

    enable: bool = False
    tlsTunnelCAFile: str = "/etc/kubeedge/ca/rootCA.crt"
    tlsTunnelCertFile: str = "/etc/kubeedge/certs/server.crt"
    tlsTunnelPrivateKeyFile: str = "/etc/kubeedge/certs/server.key"
    handshakeTimeout: int = Field(default=30, ge=1)
    readDeadline: int = Field(default=15, ge=1)
    writeDeadline: int = Field(default=15, ge=1)
    server: str = "127.0.0.1:10004"


class ServiceBus(_Section):
    """``modules.serviceBus`` (upstream's keys and defaults)."""

    enable: bool = False
    server: str = "127.0.0.1"
    port: int = Field(default=9060, ge=1, le=65535)
    timeout: int = Field(default=60, ge=1)


class EdgeModules(_Section):
    edgeHub: EdgeHub = Field(default_factory=EdgeHub)
    edged: Edged = Field(default_factory=Edged)
    metaManager: MetaManager = Field(default_factory=MetaManager)
    eventBus: EventBus = Field(default_factory=EventBus)
    deviceTwin: DeviceTwin = Field(default_factory=DeviceTwin)
    edgeStream: EdgeStream = Field(default_factory=EdgeStream)
    serviceBus: ServiceBus = Field(default_factory=ServiceBus)


class EdgeCoreConfig(_Section):
    apiVersion: str = EDGECORE_API_VERSION
    kind: str = "EdgeCore"
    database: Database = Field(default_factory=Database)
    modules: EdgeModules = Field(default_factory=EdgeModules)

    @property
    def node_name(self) -> str:
        return self.modules.edged.tailoredKubeletFlag.hostnameOverride


M = TypeVar("M", bound=BaseModel)


def load_yaml_model(path: Path, model: type[M]) -> M:
    """Read ``path`` into ``model``; every failure is a one-line ConfigError naming the file."""
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from None
    return parse_model(doc or {}, model, str(path))


def parse_model(doc: Any, model: type[M], source: str) -> M:
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{source}: {where}: {first['msg']} "
                          f"({exc.error_count()} error(s))") from None


def load_cloudcore_config(path: Path | None) -> CloudCoreConfig:
    if path is None:
        return CloudCoreConfig()
    return load_yaml_model(path, CloudCoreConfig)


def load_edgecore_config(path: Path | None) -> EdgeCoreConfig:
    if path is None:
        return EdgeCoreConfig()
    return load_yaml_model(path, EdgeCoreConfig)
