import Foundation
import Testing
@testable import MeshAgent

/// Settings from flags, the configuration file and the environment, in-process: precedence,
/// ranges and the error an operator sees.
@Suite("configuration")
struct ConfigurationTests {
    static func flags(_ pairs: [SettingKey: String]) -> Settings {
        pairs.mapValues { SettingValue(values: [$0], origin: "--flag") }
    }

    @Test func flagsBeatTheFileWhichBeatsTheEnvironment() throws {
        let file = try ConfigurationFile.parse("node-id = from-file\nmax-pending = 200\npeer = 10.0.0.2:1883\npeer = 10.0.0.3:1883\n", path: "mesh.conf")
        let env = ["MESH_NODE_ID": "from-env", "MESH_MAX_PENDING": "300", "MESH_PEER_TIMEOUT": "7", "MESH_PEERS": "10.0.0.9:1883"]
        let resolved = Settings.resolve(flags: Self.flags([.maxPending: "100"]), file: file, environment: env)
        let c = try AgentConfiguration(settings: resolved)
        #expect(c.nodeID == "from-file")
        #expect(c.maxPendingPerPeer == 100)
        #expect(c.peerTimeout == 7, "only the environment sets it")
        #expect(c.peers.map(\.description) == ["10.0.0.2:1883", "10.0.0.3:1883"], "the file's list wins over MESH_PEERS")
    }

    @Test func defaultsHoldWithoutSettings() throws {
        let c = try AgentConfiguration(settings: Self.flags([.nodeID: "n"]))
        #expect(c.maxPendingPerPeer == 50_000)
        #expect(c.maxPendingBytesPerPeer == 64 * 1024 * 1024)
        #expect(c.peerTimeout == 3)
        #expect(c.replayWindow == 2 && c.replayMargin == 0.1 && c.replayMaxBytes == 32 * 1024 * 1024)
        #expect(c.local.description == "127.0.0.1:1883")
    }

    @Test(arguments: [
        (SettingKey.maxPending, "60001"), (.maxPending, "0"), (.maxPending, "many"),
        (.peerTimeout, "0.5"), (.replayWindow, "-1"), (.replayMargin, "11"), (.replayMaxBytes, "-5"),
        (.maxPendingBytes, "10"), (.topicAliases, "70000"), (.sessionGrace, "10"),
    ])
    func outOfRangeValuesNameTheSettingAndWhereItCameFrom(_ key: SettingKey, _ value: String) {
        let settings = Self.flags([.nodeID: "n", key: value])
        #expect {
            try AgentConfiguration(settings: settings)
        } throws: { error in
            guard let e = error as? ConfigurationError else { return false }
            return e.key == key.rawValue && e.value == value && e.location == "--flag"
        }
    }

    @Test func fileErrorsPointAtTheLine() {
        #expect {
            try ConfigurationFile.parse("node-id = a\n\n# comment\nreplay-windw = 3\n", path: "/etc/x.conf")
        } throws: { error in
            (error as? ConfigurationError)?.location == "/etc/x.conf:4" && (error as? ConfigurationError)?.key == "replay-windw"
        }
        #expect {
            try ConfigurationFile.parse("node-id = a\nnode-id = b\n", path: "f")
        } throws: { error in
            (error as? ConfigurationError)?.reason.contains("given twice") == true
        }
        #expect(throws: ConfigurationError.self) { try ConfigurationFile.parse("just words\n", path: "f") }
    }

    @Test func quotedValuesAndEveryKeyHasAnEnvironmentName() throws {
        let file = try ConfigurationFile.parse("node-id = \"quoted\"\n", path: "f")
        #expect(file[.nodeID]?.value == "quoted")
        let names = SettingKey.allCases.map(\.environmentName)
        #expect(Set(names).count == names.count)
        #expect(names.allSatisfy { $0.hasPrefix("MESH_") && !$0.contains("-") })
    }
}
