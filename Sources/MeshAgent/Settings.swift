import Foundation
import MeshCore
import Mosquitto

/// Every setting of `mosquitto-mesh run`, by the name it has on the command line, in the
/// configuration file and (upper-cased, `MESH_` prefix) in the environment.
public enum SettingKey: String, CaseIterable, Sendable {
    case nodeID = "node-id", local, peer, stateDir = "state-dir", forwardPrefix = "forward-prefix"
    case username, password, peerUsername = "peer-username", peerPassword = "peer-password"
    case caFile = "cafile", certFile = "certfile", keyFile = "keyfile", tlsVersion = "tls-version"
    case peerCAFile = "peer-cafile", peerCertFile = "peer-certfile", peerKeyFile = "peer-keyfile", peerTLSVersion = "peer-tls-version"
    case healthListen = "health-listen", metricsListen = "metrics-listen", logLevel = "log-level"
    case maxPending = "max-pending", statsInterval = "stats-interval", peerSyncTimeout = "peer-sync-timeout"
    case topicAliases = "topic-aliases"
    case sessionGrace = "session-grace", maxUncertainSessions = "max-uncertain-sessions"
    case maxPendingBytes = "max-pending-bytes", peerTimeout = "peer-timeout"
    case replayWindow = "replay-window", replayMargin = "replay-margin", replayMaxBytes = "replay-max-bytes"
    case sharedBalance = "shared-balance", delivery
    case discovery, discoveryExpiry = "discovery-expiry", advertiseAddress = "advertise-address"
    case adoptAfter = "adopt-after", adoptedSessionExpiry = "adopted-session-expiry"
    case haproxyRuntime = "haproxy-runtime", haproxyServer = "haproxy-server", haproxyBackend = "haproxy-backend"

    /// `MESH_NODE_ID`, …; the peer list is `MESH_PEERS=host:port,host:port`.
    public var environmentName: String {
        self == .peer ? "MESH_PEERS" : "MESH_" + rawValue.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    /// Settings that may be given several times (one peer per line or flag).
    public var isList: Bool { self == .peer || self == .haproxyRuntime }
}

/// A setting's value and where it came from, so an error can point at the line to fix.
public struct SettingValue: Sendable, Equatable {
    public var values: [String]
    /// `--peer`, `/etc/mosquitto-mesh/mesh.conf:12` or `MESH_PEERS`.
    public var origin: String
    public init(values: [String], origin: String) {
        self.values = values
        self.origin = origin
    }
    public var value: String { values.last ?? "" }
}

public typealias Settings = [SettingKey: SettingValue]

/// `key = value` lines, `#` comments, `peer` repeatable. Unknown keys and malformed lines
/// are errors with file and line (a typo must not silently fall back to a default).
public enum ConfigurationFile {
    public static let defaultPath = "/etc/mosquitto-mesh/mesh.conf"

    public static func load(path: String) throws(ConfigurationError) -> Settings {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ConfigurationError(key: "config", value: path, reason: "cannot read: \(error.localizedDescription)")
        }
        return try parse(text, path: path)
    }

    public static func parse(_ text: String, path: String) throws(ConfigurationError) -> Settings {
        var settings: Settings = [:]
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let location = "\(path):\(number + 1)"
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let eq = line.firstIndex(of: "=") else {
                throw ConfigurationError(key: String(line.prefix(40)), value: "", reason: "expected 'key = value'", location: location)
            }
            let name = line[..<eq].trimmingCharacters(in: .whitespaces)
            var value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            guard let key = SettingKey(rawValue: name) else {
                throw ConfigurationError(key: name, value: value, reason: "unknown key (known: \(SettingKey.allCases.map(\.rawValue).joined(separator: ", ")))", location: location)
            }
            if let existing = settings[key] {
                guard key.isList else {
                    throw ConfigurationError(key: name, value: value, reason: "given twice (first at \(existing.origin))", location: location)
                }
                settings[key] = SettingValue(values: existing.values + [value], origin: existing.origin)
            } else {
                settings[key] = SettingValue(values: [value], origin: location)
            }
        }
        return settings
    }
}

extension Settings {
    /// Flags override the file, the file overrides the environment, the environment
    /// overrides defaults. (The file sits above the environment so that SIGHUP, which
    /// re-reads only the file, can change what a systemd EnvironmentFile set at start.)
    public static func resolve(flags: Settings, file: Settings, environment: [String: String]) -> Settings {
        var result: Settings = [:]
        for key in SettingKey.allCases {
            if let v = flags[key] { result[key] = v; continue }
            if let v = file[key] { result[key] = v; continue }
            if let raw = environment[key.environmentName], !raw.isEmpty {
                let values = key.isList ? raw.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } : [raw]
                result[key] = SettingValue(values: values, origin: key.environmentName)
            }
        }
        return result
    }
}

extension AgentConfiguration {
    /// Builds and validates a configuration; every error names the value and its origin.
    public init(settings: Settings) throws(ConfigurationError) {
        func fail(_ key: SettingKey, _ reason: String) -> ConfigurationError {
            let s = settings[key]
            return ConfigurationError(key: key.rawValue, value: s?.value ?? "", reason: reason, location: s?.origin)
        }
        func endpoint(_ key: SettingKey, _ text: String) throws(ConfigurationError) -> Endpoint {
            do { return try Endpoint(parsing: text) } catch {
                throw ConfigurationError(key: key.rawValue, value: text, reason: error.reason, location: settings[key]?.origin)
            }
        }
        func number(_ key: SettingKey, _ range: ClosedRange<Double>) throws(ConfigurationError) -> Double? {
            guard let s = settings[key] else { return nil }
            guard let v = Double(s.value), range.contains(v) else { throw fail(key, "expected a number in \(range.lowerBound)...\(range.upperBound)") }
            return v
        }
        guard let node = settings[.nodeID]?.value else { throw fail(.nodeID, "missing (flag --node-id, file key node-id or MESH_NODE_ID)") }
        let local = try endpoint(.local, settings[.local]?.value ?? "127.0.0.1:1883")
        var peers: [Endpoint] = []
        for text in settings[.peer]?.values ?? [] { peers.append(try endpoint(.peer, text)) }
        self.init(nodeID: node, local: local, peers: peers)
        stateDirectory = settings[.stateDir]?.value
        if let p = settings[.forwardPrefix]?.value { forwardPrefix = p }
        let user = settings[.username]?.value
        let pass = settings[.password]?.value
        localSecurity = LinkSecurity(username: user, password: pass,
                                     tls: try Self.tls(settings, .caFile, .certFile, .keyFile, .tlsVersion))
        peerSecurity = LinkSecurity(username: settings[.peerUsername]?.value ?? user, password: settings[.peerPassword]?.value ?? pass,
                                    tls: try Self.tls(settings, .peerCAFile, .peerCertFile, .peerKeyFile, .peerTLSVersion))
        if let h = settings[.healthListen]?.value { healthListen = try endpoint(.healthListen, h) }
        if let m = settings[.metricsListen]?.value { metricsListen = try endpoint(.metricsListen, m) }
        if let v = try number(.maxPending, 1...Double(Self.maximumPendingPerPeer)) { maxPendingPerPeer = Int(v) }
        if let v = try number(.maxPendingBytes, 1024...68_719_476_736) { maxPendingBytesPerPeer = Int(v) }
        if let v = try number(.peerTimeout, 1...120) { peerTimeout = v }
        if let v = try number(.topicAliases, 0...65535) { topicAliasesPerPeer = Int(v) }
        if let v = try number(.statsInterval, 0.1...86400) { statsInterval = .milliseconds(Int(v * 1000)) }
        if let v = try number(.peerSyncTimeout, 0...3600) { peerSyncTimeout = .milliseconds(Int(v * 1000)) }
        if let v = try number(.sessionGrace, 60...31_536_000) { sessionGrace = v }
        if let v = try number(.maxUncertainSessions, 1...100_000_000) { maxUncertainSessions = Int(v) }
        if let v = try number(.replayWindow, 0...60) { replayWindow = v }
        if let v = try number(.replayMargin, 0...10) { replayMargin = v }
        if let v = try number(.replayMaxBytes, 0...17_179_869_184) { replayMaxBytes = Int(v) }
        if let v = try number(.adoptAfter, 0...86_400) { adoptAfter = v }
        if let v = try number(.adoptedSessionExpiry, 1...Double(UInt32.max)) { adoptedSessionExpiry = UInt32(v) }
        for text in settings[.haproxyRuntime]?.values ?? [] { haproxyRuntime.append(try endpoint(.haproxyRuntime, text)) }
        if let v = settings[.haproxyServer]?.value { haproxyServer = v }
        if let v = settings[.haproxyBackend]?.value { haproxyBackend = v }
        if let balance = settings[.sharedBalance]?.value {
            guard let b = SharedBalance(rawValue: balance.lowercased()) else {
                throw fail(.sharedBalance, "expected \(SharedBalance.allCases.map(\.rawValue).joined(separator: " or "))")
            }
            sharedBalance = b
        }
        if let d = settings[.delivery]?.value {
            guard let mode = Delivery(rawValue: d.lowercased()) else {
                throw fail(.delivery, "expected \(Delivery.allCases.map(\.rawValue).joined(separator: " or "))")
            }
            delivery = mode
        }
        if let d = settings[.discovery]?.value {
            switch d.lowercased() {
            case "on", "true", "yes", "1": discovery = true
            case "off", "false", "no", "0": discovery = false
            default: throw fail(.discovery, "expected on or off")
            }
        }
        if let v = try number(.discoveryExpiry, 1...31_536_000) { discoveryExpiry = v }
        if let a = settings[.advertiseAddress]?.value { advertiseAddress = try endpoint(.advertiseAddress, a) }
        if let level = settings[.logLevel]?.value {
            guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(level.lowercased()) else {
                throw fail(.logLevel, "expected trace, debug, info, notice, warning, error or critical")
            }
            logLevel = level.lowercased()
        }
        do { try validate() } catch {
            var e = error
            if let key = SettingKey(rawValue: e.key) { e.location = settings[key]?.origin }
            throw e
        }
    }

    private static func tls(_ settings: Settings, _ caKey: SettingKey, _ certKey: SettingKey, _ keyKey: SettingKey,
                            _ versionKey: SettingKey) throws(ConfigurationError) -> ClientConfiguration.TLS? {
        let ca = settings[caKey]?.value, cert = settings[certKey]?.value, key = settings[keyKey]?.value
        let version = settings[versionKey]?.value
        func fail(_ k: SettingKey, _ value: String, _ reason: String) -> ConfigurationError {
            ConfigurationError(key: k.rawValue, value: value, reason: reason, location: settings[k]?.origin)
        }
        guard ca != nil || cert != nil || key != nil else {
            if let version { throw fail(versionKey, version, "needs \(caKey.rawValue)") }
            return nil
        }
        guard let ca else { throw fail(certKey, cert ?? key ?? "", "a client certificate needs \(caKey.rawValue)") }
        for (k, path) in [(caKey, ca), (certKey, cert), (keyKey, key)] {
            if let path, !FileManager.default.isReadableFile(atPath: path) { throw fail(k, path, "not a readable file") }
        }
        if (cert == nil) != (key == nil) { throw fail(certKey, cert ?? key ?? "", "\(certKey.rawValue) and \(keyKey.rawValue) go together") }
        if let version, !["tlsv1.2", "tlsv1.3"].contains(version) { throw fail(versionKey, version, "expected tlsv1.2 or tlsv1.3") }
        return ClientConfiguration.TLS(caFile: ca, certFile: cert, keyFile: key, version: version)
    }
}
