import Testing
@testable import MeshAgent

@Suite("HAProxy runtime API commands")
struct HAProxyRuntimeTests {
    @Test("client ids become single CLI arguments: space, tab, ';' and '\\' escaped; unusable ids refused")
    func keysAreEscaped() {
        #expect(HAProxyRuntime.escapedKey("sensor-17") == "sensor-17")
        #expect(HAProxyRuntime.escapedKey("a b;c\\d\te") == "a\\ b\\;c\\\\d\\\te")
        #expect(HAProxyRuntime.escapedKey("ünï") == "ünï")
        #expect(HAProxyRuntime.escapedKey("line\nbreak") == nil)
        #expect(HAProxyRuntime.escapedKey(String(repeating: "x", count: 129)) == nil, "longer than the table's key (len 128)")
        #expect(HAProxyRuntime.escapedKey(String(repeating: "x", count: 128)) != nil)
    }

    @Test("a hold sets gpt0 to a deadline; a move makes the entry again with only the server id")
    func commands() {
        let r = HAProxyRuntime(endpoint: Endpoint(host: "127.0.0.1", port: 9999), backend: "mosquitto")
        #expect(r.holdCommand(key: "a\\ b", until: 1_764_450_000) == "set table mosquitto key a\\ b data.gpt0 1764450000")
        #expect(r.holdCommand(key: "x", until: -5) == "set table mosquitto key x data.gpt0 0")
        #expect(r.moveCommands(key: "x", serverID: 3) == ["clear table mosquitto key x", "set table mosquitto key x data.server_id 3 data.gpt0 0"])
    }

    @Test("settings: the runtime API needs this broker's server name")
    func settings() throws {
        var flags: Settings = [.nodeID: .init(values: ["a"], origin: "--node-id"),
                               .haproxyRuntime: .init(values: ["10.0.0.1:9999", "10.0.0.2:9999"], origin: "--haproxy-runtime")]
        #expect(throws: ConfigurationError.self) { try AgentConfiguration(settings: flags) }
        flags[.haproxyServer] = .init(values: ["broker-a"], origin: "--haproxy-server")
        flags[.adoptAfter] = .init(values: ["7.5"], origin: "--adopt-after")
        let c = try AgentConfiguration(settings: flags)
        #expect(c.haproxyRuntime.map(\.description) == ["10.0.0.1:9999", "10.0.0.2:9999"])
        #expect(c.haproxyServer == "broker-a" && c.haproxyBackend == "mosquitto" && c.adoptAfter == 7.5)
        let env = Settings.resolve(flags: [:], file: [:], environment: ["MESH_NODE_ID": "a", "MESH_HAPROXY_RUNTIME": "h1:1,h2:2", "MESH_HAPROXY_SERVER": "s"])
        #expect(try AgentConfiguration(settings: env).haproxyRuntime.count == 2)
        flags[.haproxyServer] = .init(values: ["two words"], origin: "--haproxy-server")
        #expect(throws: ConfigurationError.self) { try AgentConfiguration(settings: flags) }
    }
}
