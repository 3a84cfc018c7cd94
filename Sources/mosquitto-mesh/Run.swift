import ArgumentParser
import Foundation
import Logging
import MeshAgent
import Mosquitto
import ServiceLifecycle

extension MosquittoMesh {
    /// The daemon.
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the mesh agent beside a local Mosquitto broker.",
            discussion: """
            The local broker must log to topics (deploy/mosquitto/mesh.conf): log_dest topic, log_type notice,
            subscribe, unsubscribe, error. Environment variables (flags win): MESH_NODE_ID, MESH_LOCAL, MESH_PEERS
            (comma-separated), MESH_STATE_DIR, MESH_FORWARD_PREFIX, MESH_USERNAME, MESH_PASSWORD, MESH_PEER_USERNAME,
            MESH_PEER_PASSWORD, MESH_HEALTH_LISTEN, MESH_METRICS_LISTEN, MESH_LOG_LEVEL, MESH_CAFILE, MESH_CERTFILE,
            MESH_KEYFILE, MESH_TLS_VERSION, MESH_PEER_CAFILE, MESH_PEER_CERTFILE, MESH_PEER_KEYFILE, MESH_PEER_TLS_VERSION.
            Invalid values exit with status 64 and a one-line error naming the value.
            """
        )

        @Option(name: .customLong("node-id"), help: "This node's id: unique in the mesh, no '/', '+', '#' or spaces. (MESH_NODE_ID)")
        var nodeID: String?

        @Option(help: "The local broker, HOST:PORT. (MESH_LOCAL, default 127.0.0.1:1883)")
        var local: String?

        @Option(name: .customLong("peer"), help: "A peer broker, HOST:PORT; repeat for each. (MESH_PEERS=a:1883,b:1883)")
        var peers: [String] = []

        @Option(name: .customLong("state-dir"), help: "Where the session table is kept across restarts. (MESH_STATE_DIR)")
        var stateDir: String?

        @Option(name: .customLong("forward-prefix"), help: "Topic prefix of forwarded copies. (MESH_FORWARD_PREFIX, default forward/)")
        var forwardPrefix: String?

        @Option(help: "Username on the local broker. (MESH_USERNAME)")
        var username: String?
        @Option(help: "Password on the local broker. (MESH_PASSWORD; prefer the environment: flags show in ps)")
        var password: String?
        @Option(name: .customLong("peer-username"), help: "Username on peer brokers. (MESH_PEER_USERNAME, default: --username)")
        var peerUsername: String?
        @Option(name: .customLong("peer-password"), help: "Password on peer brokers. (MESH_PEER_PASSWORD, default: --password)")
        var peerPassword: String?

        @Option(name: .customLong("cafile"), help: "CA file for TLS to the local broker. (MESH_CAFILE)")
        var caFile: String?
        @Option(name: .customLong("certfile"), help: "Client certificate for the local broker. (MESH_CERTFILE)")
        var certFile: String?
        @Option(name: .customLong("keyfile"), help: "Client key for the local broker. (MESH_KEYFILE)")
        var keyFile: String?
        @Option(name: .customLong("tls-version"), help: "tlsv1.2 or tlsv1.3 for the local link. (MESH_TLS_VERSION)")
        var tlsVersion: String?
        @Option(name: .customLong("peer-cafile"), help: "CA file for TLS to peers. (MESH_PEER_CAFILE)")
        var peerCAFile: String?
        @Option(name: .customLong("peer-certfile"), help: "Client certificate for peers. (MESH_PEER_CERTFILE)")
        var peerCertFile: String?
        @Option(name: .customLong("peer-keyfile"), help: "Client key for peers. (MESH_PEER_KEYFILE)")
        var peerKeyFile: String?
        @Option(name: .customLong("peer-tls-version"), help: "tlsv1.2 or tlsv1.3 for peer links. (MESH_PEER_TLS_VERSION)")
        var peerTLSVersion: String?

        @Option(name: .customLong("health-listen"), help: "HAProxy agent-check listener, HOST:PORT. (MESH_HEALTH_LISTEN)")
        var healthListen: String?

        @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical. (MESH_LOG_LEVEL, default info)")
        var logLevel: String?

        @Option(name: .customLong("stats-interval"), help: "Seconds between retained $mesh/<node>/stats summaries. (default 10)")
        var statsInterval: Double?

        @Option(name: .customLong("peer-sync-timeout"), help: "Seconds startup waits for each peer's interest before taking local messages. (default 5)")
        var peerSyncTimeout: Double?

        @Option(name: .customLong("max-pending"), help: "Unacknowledged forwards held per peer before backpressure. (default 100000)")
        var maxPending: Int?

        func validate() throws {
            _ = try makeConfiguration(environment: ProcessInfo.processInfo.environment)
            _ = try parsedLogLevel(environment: ProcessInfo.processInfo.environment)
        }

        func parsedLogLevel(environment: [String: String]) throws -> Logger.Level {
            let text = logLevel ?? environment["MESH_LOG_LEVEL"] ?? "info"
            guard let level = Logger.Level(rawValue: text.lowercased()) else {
                throw ValidationError("invalid --log-level '\(text)': expected trace, debug, info, notice, warning, error or critical")
            }
            return level
        }

        func makeConfiguration(environment env: [String: String]) throws -> AgentConfiguration {
            func value(_ flag: String?, _ key: String) -> String? {
                if let flag { return flag }
                if let v = env[key], !v.isEmpty { return v }
                return nil
            }
            guard let node = value(nodeID, "MESH_NODE_ID") else {
                throw ValidationError("missing --node-id (or MESH_NODE_ID)")
            }
            do {
                let localEndpoint = try Endpoint(parsing: value(local, "MESH_LOCAL") ?? "127.0.0.1:1883")
                var peerTexts = peers
                if peerTexts.isEmpty, let list = env["MESH_PEERS"] {
                    peerTexts = list.split(separator: ",").map { String($0) }.filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
                }
                let peerEndpoints = try peerTexts.map { text throws(ConfigurationError) in
                    do throws(ConfigurationError) { return try Endpoint(parsing: text) } catch {
                        throw ConfigurationError(key: "peer", value: text, reason: error.reason)
                    }
                }
                var c = AgentConfiguration(nodeID: node, local: localEndpoint, peers: peerEndpoints)
                c.stateDirectory = value(stateDir, "MESH_STATE_DIR")
                if let p = value(forwardPrefix, "MESH_FORWARD_PREFIX") { c.forwardPrefix = p }
                let user = value(username, "MESH_USERNAME")
                let pass = value(password, "MESH_PASSWORD")
                c.localSecurity = LinkSecurity(username: user, password: pass,
                                               tls: try tls(value(caFile, "MESH_CAFILE"), value(certFile, "MESH_CERTFILE"),
                                                            value(keyFile, "MESH_KEYFILE"), value(tlsVersion, "MESH_TLS_VERSION"), prefix: ""))
                c.peerSecurity = LinkSecurity(username: value(peerUsername, "MESH_PEER_USERNAME") ?? user,
                                              password: value(peerPassword, "MESH_PEER_PASSWORD") ?? pass,
                                              tls: try tls(value(peerCAFile, "MESH_PEER_CAFILE"), value(peerCertFile, "MESH_PEER_CERTFILE"),
                                                           value(peerKeyFile, "MESH_PEER_KEYFILE"), value(peerTLSVersion, "MESH_PEER_TLS_VERSION"), prefix: "peer-"))
                if let h = value(healthListen, "MESH_HEALTH_LISTEN") {
                    do throws(ConfigurationError) { c.healthListen = try Endpoint(parsing: h) } catch {
                        throw ConfigurationError(key: "health-listen", value: h, reason: error.reason)
                    }
                }
                if let m = maxPending { c.maxPendingPerPeer = m }
                if let v = statsInterval {
                    guard v > 0, v <= 86400 else { throw ConfigurationError(key: "stats-interval", value: "\(v)", reason: "must be between 0 and 86400 seconds") }
                    c.statsInterval = .milliseconds(Int(v * 1000))
                }
                if let v = peerSyncTimeout {
                    guard v >= 0, v <= 3600 else { throw ConfigurationError(key: "peer-sync-timeout", value: "\(v)", reason: "must be between 0 and 3600 seconds") }
                    c.peerSyncTimeout = .milliseconds(Int(v * 1000))
                }
                try c.validate()
                return c
            } catch let error as ConfigurationError {
                throw ValidationError(error.description)
            } catch {
                throw ValidationError("\(error)")
            }
        }

        private func tls(_ ca: String?, _ cert: String?, _ key: String?, _ version: String?, prefix: String) throws -> ClientConfiguration.TLS? {
            guard ca != nil || cert != nil || key != nil else {
                if let version { throw ConfigurationError(key: "\(prefix)tls-version", value: version, reason: "needs --\(prefix)cafile") }
                return nil
            }
            guard let ca else { throw ConfigurationError(key: "\(prefix)cafile", value: "", reason: "a client certificate needs a CA file") }
            for (flag, path) in [("\(prefix)cafile", ca), ("\(prefix)certfile", cert), ("\(prefix)keyfile", key)] {
                if let path, !FileManager.default.isReadableFile(atPath: path) {
                    throw ConfigurationError(key: flag, value: path, reason: "not a readable file")
                }
            }
            if (cert == nil) != (key == nil) {
                throw ConfigurationError(key: "\(prefix)certfile", value: cert ?? key ?? "", reason: "certificate and key go together")
            }
            if let version, !["tlsv1.2", "tlsv1.3"].contains(version) {
                throw ConfigurationError(key: "\(prefix)tls-version", value: version, reason: "expected tlsv1.2 or tlsv1.3")
            }
            return ClientConfiguration.TLS(caFile: ca, certFile: cert, keyFile: key, version: version)
        }

        func run() async throws {
            let env = ProcessInfo.processInfo.environment
            let level = try parsedLogLevel(environment: env)
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
            var logger = Logger(label: "mosquitto-mesh")
            logger.logLevel = level
            let configuration = try makeConfiguration(environment: env)
            let agent: MeshAgent
            do {
                agent = try MeshAgent(configuration: configuration, logger: logger)
            } catch {
                logger.critical("cannot start: \(error)")
                throw ExitCode(78)  // EX_CONFIG
            }
            let group = ServiceGroup(
                configuration: .init(
                    services: [.init(service: agent)],
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger
                )
            )
            try await group.run()
        }
    }
}
