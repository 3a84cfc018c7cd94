import Foundation
import MeshHarness

/// The network-namespace topology that `examples/ha-netns/run.sh` builds and describes in
/// `<dir>/topology.env` (KEY=VALUE lines): where clients connect (the floating IP),
/// which processes make up the broker and the MASTER load balancer to kill, and where to
/// look for the floating IP afterwards.
struct FailoverNetnsTopology {
    var host: String
    var port: Int32
    /// HAProxy server name of the broker to kill, and its mosquitto pid.
    var brokerServer: String
    var brokerPIDs: [pid_t]
    /// The MASTER load balancer's processes (HAProxy, keepalived and its VRRP child).
    var masterName: String
    var masterPIDs: [pid_t]
    /// The MASTER's HAProxy admin socket (stick table before the broker kill).
    var masterAdminSocket: String
    var backupNetns: String
    var floatingIP: String

    struct TopologyError: Error, CustomStringConvertible {
        let path: String
        let reason: String
        var description: String { "netns topology \(path): \(reason)" }
    }

    init(directory: String) throws {
        let path = directory + "/topology.env"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw TopologyError(path: path, reason: "cannot read it (start the topology with examples/ha-netns/run.sh)")
        }
        var env: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            env[String(line[..<eq])] = String(line[line.index(after: eq)...]).trimmingCharacters(in: CharacterSet(charactersIn: "\"' "))
        }
        func need(_ key: String) throws -> String {
            guard let v = env[key], !v.isEmpty else { throw TopologyError(path: path, reason: "missing \(key)") }
            return v
        }
        func pids(_ key: String) throws -> [pid_t] {
            let list = try need(key).split(separator: " ").compactMap { pid_t($0) }
            guard !list.isEmpty else { throw TopologyError(path: path, reason: "\(key) has no pids") }
            return list
        }
        host = try need("FLOATING_IP")
        floatingIP = host
        guard let p = Int32(try need("MQTT_PORT")) else { throw TopologyError(path: path, reason: "MQTT_PORT is not a port") }
        port = p
        brokerServer = try need("KILL_BROKER")
        brokerPIDs = try pids("KILL_BROKER_PIDS")
        masterName = try need("MASTER_LB")
        masterPIDs = try pids("MASTER_LB_PIDS")
        masterAdminSocket = try need("MASTER_ADMIN_SOCKET")
        backupNetns = try need("BACKUP_NETNS")
    }

    /// Whether the floating IP is configured in the BACKUP's namespace now (`ip -n … addr`).
    func floatingIPOnBackup() -> Bool {
        let out = NSTemporaryDirectory() + "/mesh-vip-\(getpid()).txt"
        try? FileManager.default.removeItem(atPath: out)
        guard let child = try? ChildProcess(executable: "/usr/sbin/ip", arguments: ["-n", backupNetns, "-o", "-4", "addr", "show"], logPath: out) else { return false }
        // Bounded: `ip` answers in milliseconds; a hung one counts as "not yet".
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(2))
        while child.isRunning && clock.now < deadline { usleep(5000) }
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(atPath: out)
        return text.contains(" \(floatingIP)/")
    }
}
