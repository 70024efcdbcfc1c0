"""KubeEdge's vocabulary: operations, resource types, module, group and source names.

Every string here is part of the wire contract (``spec/kubeedge-contract.md`` sections 1.2-1.5),
so it lives in one place::

    from pykubeedge.core.constants import EdgeGroup, EdgeModule, Operation, ResourceType
    msg = new_message(source=EdgeModule.EDGED, group=EdgeGroup.META,
                      resource=f"default/{ResourceType.POD}/nginx", operation=Operation.QUERY)
"""

from __future__ import annotations

from typing import Final

RESOURCE_SEP: Final = "/"
NULL_NAMESPACE: Final = "null"
"""Namespace token of cluster-scoped objects in edge resources, e.g. ``null/node/edge-1``."""
NODE_PREFIX: Final = "node"
"""First token of the cloud resource form ``node/<nodeID>/...``."""


class Operation:
    """``route.operation`` values."""

    # beehive model
    INSERT: Final = "insert"
    DELETE: Final = "delete"
    QUERY: Final = "query"
    UPDATE: Final = "update"
    PATCH: Final = "patch"
    UPLOAD: Final = "upload"
    RESPONSE: Final = "response"
    ERROR: Final = "error"
    UNHOLD_UPGRADE: Final = "unhold-upgrade"
    # edge/pkg/common/message
    CONNECT: Final = "connect"
    SUBSCRIBE: Final = "subscribe"
    UNSUBSCRIBE: Final = "unsubscribe"
    MESSAGE: Final = "message"
    PUBLISH: Final = "publish"
    GET_RESULT: Final = "get_result"
    KEEPALIVE: Final = "keepalive"
    START: Final = "start"
    STOP: Final = "stop"
    # cloudhub model
    GET: Final = "get"
    LIST: Final = "list"
    DETAIL: Final = "detail"
    DELTA: Final = "delta"
    DOCUMENT: Final = "document"
    UPDATED: Final = "updated"
    DELETED: Final = "deleted"
    CONNECTED: Final = "connected"
    DISCONNECTED: Final = "disconnected"
    # CSI, metaserver, node tasks
    CREATE_VOLUME: Final = "createvolume"
    DELETE_VOLUME: Final = "deletevolume"
    CONTROLLER_PUBLISH_VOLUME: Final = "controllerpublishvolume"
    CONTROLLER_UNPUBLISH_VOLUME: Final = "controllerunpublishvolume"
    APPLICATION_RESPONSE: Final = "applicationResponse"
    UPGRADE: Final = "upgrade"
    PREPULL: Final = "prepull"
    # viaduct control messages, answered by the transport itself
    CONFIG: Final = "config"
    PING: Final = "ping"
    PONG: Final = "pong"


class ResourceType:
    """The ``<type>`` token of resource strings."""

    POD: Final = "pod"
    EVENT: Final = "event"
    CONFIGMAP: Final = "configmap"
    SERVICE_ACCOUNT_TOKEN: Final = "serviceaccounttoken"
    SECRET: Final = "secret"
    NODE: Final = "node"
    POD_LIST: Final = "podlist"
    POD_STATUS: Final = "podstatus"
    POD_PATCH: Final = "podpatch"
    NODE_STATUS: Final = "nodestatus"
    NODE_PATCH: Final = "nodepatch"
    RULE: Final = "rule"
    RULE_ENDPOINT: Final = "ruleendpoint"
    RULE_STATUS: Final = "rulestatus"
    LEASE: Final = "lease"
    SERVICE_ACCOUNT_ACCESS: Final = "serviceaccountaccess"
    CERTIFICATE_SIGNING_REQUEST: Final = "certificatesigningrequest"
    K8S_CA: Final = "k8s/ca.crt"
    SERVICE: Final = "service"
    ENDPOINTS: Final = "endpoints"
    PERSISTENT_VOLUME: Final = "persistentvolume"
    PERSISTENT_VOLUME_CLAIM: Final = "persistentvolumeclaim"
    VOLUME_ATTACHMENT: Final = "volumeattachment"
    VOLUME: Final = "volume"
    DEVICE: Final = "device"
    DEVICE_MODEL: Final = "devicemodel"
    MEMBERSHIP: Final = "membership"
    TWIN: Final = "twin"
    AUTH_INFO: Final = "auth_info"
    NODE_CONNECTION: Final = "node/connection"
    """Resource of EdgeHub's ``cloud_connected``/``cloud_disconnected`` events."""


class MessageGroup:
    """``route.group`` values seen on the cloud-edge wire."""

    RESOURCE: Final = "resource"
    FUNC: Final = "func"
    USER: Final = "user"
    TWIN: Final = "twin"
    META: Final = "meta"
    HUB: Final = "hub"
    TASKMANAGER: Final = "taskmanager"


class EdgeModule:
    """Beehive module names in edgecore."""

    EDGED: Final = "edged"
    EVENTBUS: Final = "eventbus"
    SERVICEBUS: Final = "servicebus"
    EDGESTREAM: Final = "edgestream"
    DEVICETWIN: Final = "twin"
    EDGEHUB: Final = "websocket"
    """EdgeHub registers as ``websocket`` whatever the transport."""
    METAMANAGER: Final = "metamanager"
    TASKMANAGER: Final = "taskmanager"


class EdgeGroup:
    """Beehive group names in edgecore (targets of ``send_to_group``)."""

    BUS: Final = "bus"
    HUB: Final = "hub"
    TWIN: Final = "twin"
    META: Final = "meta"
    EDGED: Final = "edged"
    USER: Final = "user"
    EDGESTREAM: Final = "edgestream"
    TASKMANAGER: Final = "taskmanager"


class CloudModule:
    """Beehive module names in cloudcore; each module's group has the same name."""

    CLOUDHUB: Final = "cloudhub"
    EDGECONTROLLER: Final = "edgecontroller"
    POLICYCONTROLLER: Final = "policycontroller"
    DEVICECONTROLLER: Final = "devicecontroller"
    NODEUPGRADEJOBCONTROLLER: Final = "nodeupgradejobcontroller"
    TASKMANAGER: Final = "taskmanager"
    SYNCCONTROLLER: Final = "synccontroller"
    DYNAMICCONTROLLER: Final = "dynamiccontroller"
    CLOUDSTREAM: Final = "cloudStream"
    ROUTER: Final = "router"


class CloudGroup(CloudModule):
    """Beehive group names in cloudcore: each module's name, plus ``user``."""

    USER: Final = "user"


CLOUD_MODULES: Final = frozenset(
    v for k, v in vars(CloudModule).items() if k.isupper() and isinstance(v, str))
"""Every cloudcore module name."""
CLOUD_ONLY_SOURCES: Final = CLOUD_MODULES - {EdgeModule.TASKMANAGER} | {"funcmgr"}
"""Sources only cloudcore uses (``taskmanager`` runs on both sides): a message from an edge
never carries one, and a message that does came from the cloud."""


class Source:
    """``route.source`` values that are not module names."""

    EDGEHUB: Final = "edgehub"
    """Source of EdgeHub's node-connection events."""
    ROUTER_EVENTBUS: Final = "router_eventbus"
    ROUTER_SERVICEBUS: Final = "router_servicebus"
    METASERVER: Final = "metaserver"
    EDGEMGR: Final = "edgemgr"


class MessageType:
    """``header.type``: the beehive context that delivers the message."""

    CHANNEL: Final = "channel"
    UNIXPACKET: Final = "unixpacket"


class Content:
    """Well-known string contents."""

    ACK_OK: Final = "OK"
    """Content of the edge's ACK (a ``response`` whose parent is the acknowledged message)."""
    KEEPALIVE_PING: Final = "ping"
    CLOUD_CONNECTED: Final = "cloud_connected"
    CLOUD_DISCONNECTED: Final = "cloud_disconnected"
