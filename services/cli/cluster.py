"""`vss up --cluster`: the production topology (deploy/README.md) on one machine.

Three nats-server nodes on loopback as one JetStream cluster (everything at three
replicas), every store on PostgreSQL (the embedded server, or ``VSS_POSTGRES_DSN``), and two
case API processes writing the same cases. Node ``i`` listens on ``VSS_NATS_PORT + i``
(clients), ``VSS_NATS_MONITOR_PORT + i`` (monitoring) and ``VSS_NATS_ROUTE_PORT + i``
(routes between the nodes).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.shared.bus.embedded import EmbeddedNatsServer

NODES = 3
CLUSTER_NAME = "vss"


class ClusterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VSS_", extra="ignore")

    postgres_dsn: str | None = Field(
        default=None,
        description="vss up --cluster: a PostgreSQL server (postgresql://… of a user that may create"
        " databases) to put every store on; unset: the embedded server on postgres_port",
    )
    postgres_port: int = Field(
        default=5442, ge=1, le=65535, description="vss up --cluster: the embedded PostgreSQL's port"
    )
    case_port_2: int = Field(
        default=8010, ge=1, le=65535, description="vss up --cluster: the second case API process's port"
    )
    nats_route_port: int = Field(
        default=6422, ge=1, le=65533, description="vss up --cluster: node 0's route port (node i: +i)"
    )


def node_config(node_dir: Path, authorization: Path | None, route_ports: list[int], index: int) -> Path:
    """A node's configuration file: the cluster block, JetStream as production sets it and the
    generated authorization; ports, name and store directory are on its command line."""
    routes = "".join(f"    nats-route://127.0.0.1:{port}\n" for port in route_ports)
    include = f"include {os.path.relpath(authorization, node_dir)}\n" if authorization is not None else ""
    text = (
        # An acknowledged event is on disk (deploy/nats/nats-server.conf says why).
        "jetstream {\n  sync_interval: always\n}\n"
        f"cluster {{\n  name: {CLUSTER_NAME}\n  listen: 127.0.0.1:{route_ports[index]}\n"
        f"  routes: [\n{routes}  ]\n}}\n" + include
    )
    node_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = node_dir / "cluster.conf"
    path.write_text(text)
    return path


def nats_nodes(
    data: Path, *, port: int, monitor_port: int, route_port: int, authorization: Path | None
) -> list[EmbeddedNatsServer]:
    """The three nodes, each with its own store directory under <data>/nats-cluster."""
    route_ports = [route_port + i for i in range(NODES)]
    nodes = []
    for i in range(NODES):
        node_dir = data / "nats-cluster" / f"{CLUSTER_NAME}-{i}"
        nodes.append(
            EmbeddedNatsServer(
                node_dir / "jetstream",
                port=port + i,
                monitor_port=monitor_port + i,
                config_file=node_config(node_dir, authorization, route_ports, i),
                server_name=f"{CLUSTER_NAME}-{i}",
            )
        )
    return nodes


def ports(port: int, monitor_port: int, route_port: int) -> list[tuple[int, str]]:
    """Every port the nodes listen on, with the setting that moves it."""
    return [
        *((port + i, "VSS_NATS_PORT") for i in range(NODES)),
        *((monitor_port + i, "VSS_NATS_MONITOR_PORT") for i in range(NODES)),
        *((route_port + i, "VSS_NATS_ROUTE_PORT") for i in range(NODES)),
    ]
