"""A mapper's ``config.yaml``, with upstream mapper-framework's keys::

    grpc_server:
      socket_path: /etc/kubeedge/modbus.sock   # this mapper's DeviceMapperService
    common:
      name: modbus-mapper
      version: v1.23.1
      api_version: v1.0.0
      protocol: modbus                         # the devices it gets: spec.protocol.protocolName
      address: 127.0.0.1                       # where the REST API listens
      edgecore_sock: /etc/kubeedge/dmi.sock
      http_port: "7777"                        # PROJECT: "0" turns the REST API off

    cfg = load_config("mapper.yaml")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ConfigError(ValueError):
    """A mapper configuration (or a device's) that cannot be used; the message says why."""


class GrpcServer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    socket_path: str = "/etc/kubeedge/mapper.sock"


class Common(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1)
    version: str = "v1.23.1"
    api_version: str = "v1.0.0"
    protocol: str = Field(min_length=1)
    address: str = "127.0.0.1"
    edgecore_sock: str = "/etc/kubeedge/dmi.sock"
    http_port: str = "7777"

    @field_validator("http_port", mode="before")
    @classmethod
    def _port(cls, value: Any) -> str:
        text = str(value).strip() if value is not None else ""
        if text and (not text.isdigit() or int(text) > 65535):
            raise ValueError(f"http_port must be a port number, got {value!r}")
        return text or "7777"


class MapperConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")
    grpc_server: GrpcServer = Field(default_factory=GrpcServer)
    common: Common

    @property
    def http_port(self) -> int:
        return int(self.common.http_port)


def parse_config(data: Any, *, protocol: str = "") -> MapperConfig:
    if not isinstance(data, dict):
        raise ConfigError("the mapper config must be a YAML mapping with grpc_server and common")
    common = data.get("common")
    if protocol and isinstance(common, dict) and not common.get("protocol"):
        data = {**data, "common": {**common, "protocol": protocol}}
    try:
        return MapperConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"invalid mapper config: {problems}") from None


def load_config(path: str | Path, *, protocol: str = "") -> MapperConfig:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the mapper config {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"the mapper config {path} is not YAML: {exc}") from None
    return parse_config(data, protocol=protocol)
