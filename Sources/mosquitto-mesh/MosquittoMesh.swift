import ArgumentParser
import Foundation
import Logging

/// The `mosquitto-mesh` command: the daemon (`run`) and the operator's tools.
@main
struct MosquittoMesh: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mosquitto-mesh",
        abstract: "Joins stock Mosquitto brokers into one mesh: forwards a message only to brokers where a subscriber waits.",
        discussion: """
        Run one agent beside each broker:
          mosquitto-mesh run --node-id a --local 127.0.0.1:1883 --peer 10.0.0.2:1883 --peer 10.0.0.3:1883 --state-dir /var/lib/mosquitto-mesh

        Every option of `run` can also come from the environment (MESH_NODE_ID, MESH_LOCAL, MESH_PEERS=host:port,host:port, …);
        flags override the environment. See `mosquitto-mesh run --help`.
        """,
        version: "0.3.0",
        subcommands: [Run.self, Inspect.self, LocalCluster.self, Bench.self],
        defaultSubcommand: nil
    )
}
