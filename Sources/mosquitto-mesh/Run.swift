import ArgumentParser
import Foundation
import Logging
import MeshAgent
import Mosquitto
import ServiceLifecycle
import UnixSignals

extension MosquittoMesh {
    /// The daemon.
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the mesh agent beside a local Mosquitto broker.",
            discussion: """
            Settings come from flags, then the configuration file (--config, default \(ConfigurationFile.defaultPath) \
            if it exists; `key = value` lines with the flag names as keys, `peer` repeatable), then the environment \
            (MESH_NODE_ID, MESH_LOCAL, MESH_PEERS=host:port,host:port, MESH_STATE_DIR, …: MESH_ + the flag name \
            upper-cased), then defaults. SIGHUP re-reads the file and applies a changed peer set without touching the \
            other links. The local broker must log to topics (deploy/mosquitto/mesh.conf). A bad value exits with \
            status 64 and one line naming it and where it came from.
            """
        )

        @Option(name: .customLong("config"), help: "Configuration file. (MESH_CONFIG, default \(ConfigurationFile.defaultPath) if present)")
        var config: String?

        @Option(name: .customLong("node-id"), help: "This node's id: unique in the mesh, no '/', '+', '#' or spaces.")
        var nodeID: String?
        @Option(help: "The local broker, HOST:PORT (default 127.0.0.1:1883).")
        var local: String?
        @Option(name: .customLong("peer"), help: "A peer broker, HOST:PORT; repeat for each.")
        var peers: [String] = []
        @Option(name: .customLong("state-dir"), help: "Where the session table is kept across restarts.")
        var stateDir: String?
        @Option(name: .customLong("forward-prefix"), help: "Topic prefix of forwarded copies (default forward/).")
        var forwardPrefix: String?
        @Option(help: "Username on the local broker (and on peers unless --peer-username).")
        var username: String?
        @Option(help: "Password on the local broker. Prefer the file or MESH_PASSWORD: flags show in ps.")
        var password: String?
        @Option(name: .customLong("peer-username"), help: "Username on peer brokers.")
        var peerUsername: String?
        @Option(name: .customLong("peer-password"), help: "Password on peer brokers.")
        var peerPassword: String?
        @Option(name: .customLong("cafile"), help: "CA file: TLS to the local broker.")
        var caFile: String?
        @Option(name: .customLong("certfile"), help: "Client certificate for the local broker.")
        var certFile: String?
        @Option(name: .customLong("keyfile"), help: "Client key for the local broker.")
        var keyFile: String?
        @Option(name: .customLong("tls-version"), help: "tlsv1.2 or tlsv1.3 for the local link.")
        var tlsVersion: String?
        @Option(name: .customLong("peer-cafile"), help: "CA file: TLS to peers.")
        var peerCAFile: String?
        @Option(name: .customLong("peer-certfile"), help: "Client certificate for peers.")
        var peerCertFile: String?
        @Option(name: .customLong("peer-keyfile"), help: "Client key for peers.")
        var peerKeyFile: String?
        @Option(name: .customLong("peer-tls-version"), help: "tlsv1.2 or tlsv1.3 for peer links.")
        var peerTLSVersion: String?
        @Option(name: .customLong("health-listen"), help: "HAProxy agent-check listener, HOST:PORT (an IPv4 or IPv6 address: [::]:18830).")
        var healthListen: String?
        @Option(name: .customLong("metrics-listen"), help: "Prometheus endpoint (GET /metrics), HOST:PORT (an IPv4 or IPv6 address: [::1]:9883).")
        var metricsListen: String?
        @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical (default info).")
        var logLevel: String?
        @Option(name: .customLong("max-pending"), help: "QoS 1/2 forwards held per peer (unacknowledged, or waiting for its link) beyond which messages for it are dropped and counted; at most 60000 (default 50000).")
        var maxPending: String?
        @Option(name: .customLong("max-pending-bytes"), help: "The same limit in payload bytes (default 67108864).")
        var maxPendingBytes: String?
        @Option(name: .customLong("peer-timeout"), help: "Seconds a peer link may hear nothing (not even its heartbeat) before it is declared down and reconnected (default 3).")
        var peerTimeout: String?
        @Option(name: .customLong("topic-aliases"), help: "Topic aliases per peer link, capped by the peer broker's max_topic_alias (default 64; 0 = off).")
        var topicAliases: String?
        @Option(name: .customLong("stats-interval"), help: "Seconds between retained $mesh/<node>/stats summaries (default 10).")
        var statsInterval: String?
        @Option(name: .customLong("peer-sync-timeout"), help: "Seconds startup waits for peers' interest before taking local messages (default 5).")
        var peerSyncTimeout: String?
        @Option(name: .customLong("session-grace"), help: "Seconds an offline MQTT 5 session (whose expiry the broker does not log) is kept when the broker's session count cannot prove it gone (default 86400).")
        var sessionGrace: String?
        @Option(name: .customLong("max-uncertain-sessions"), help: "At most this many such sessions are kept; the oldest are let go first, counted (default 100000).")
        var maxUncertainSessions: String?
        @Option(name: .customLong("replay-window"), help: "Seconds each routed message is kept to be sent again to a peer whose advert of a new matching filter arrives after it (the subscribe race); 0 turns replay off (default 2).")
        var replayWindow: String?
        @Option(name: .customLong("replay-margin"), help: "Seconds a replay reaches back before the moment the peer says its filter appeared: clock skew between nodes plus the peer's log delay (default 0.1).")
        var replayMargin: String?
        @Option(name: .customLong("replay-max-bytes"), help: "Bytes the replay buffer may hold; the oldest messages go first, counted (default 33554432).")
        var replayMaxBytes: String?
        @Option(name: .customLong("shared-balance"), help: "round-robin or topic-hash: which broker delivers a message to a $share group with members only on other brokers (default round-robin).")
        var sharedBalance: String?
        @Option(name: .customLong("delivery"), help: "prefixed or direct: a forward crosses under the forward prefix and the peer's agent republishes it (default), or it is published on the peer broker under its own topic with a mesh:o user property (one pass less on the receiving broker; MQTT 5 subscribers see the property; QoS 1 forwards may arrive twice after a link cut). Peers whose agents do not advertise an origin token get prefixed forwards.")
        var delivery: String?
        @Option(name: .customLong("discovery"), help: "on or off: learn the other nodes from the peers' views and from the nodes that link here, and link to each; the configured peers are seeds (default on).")
        var discovery: String?
        @Option(name: .customLong("discovery-expiry"), help: "Seconds a discovered node is kept without sign of life before its link closes (default 300).")
        var discoveryExpiry: String?
        @Option(name: .customLong("advertise-address"), help: "HOST:PORT at which other brokers reach the local broker, announced to them (default: --local, or if that is loopback the address each link's socket uses, with --local's port).")
        var advertiseAddress: String?
        @Option(name: .customLong("adopt-after"), help: "Seconds a node's broker must be unreachable (from this agent and every live one) before the survivors adopt its persistent sessions; 0 = never (default 5).")
        var adoptAfter: String?
        @Option(name: .customLong("adopted-session-expiry"), help: "Session expiry (s) given to an adopted MQTT 5 session, whose real one the broker never logs (default 86400).")
        var adoptedSessionExpiry: String?
        @Option(name: .customLong("haproxy-runtime"), help: "An HAProxy runtime API, HOST:PORT (stats socket ... level operator); repeat per load balancer: a lost node's clients are held there until adopted, then sent to the adopting broker.")
        var haproxyRuntime: [String] = []
        @Option(name: .customLong("haproxy-server"), help: "This broker's server name in HAProxy's backend (needed with --haproxy-runtime).")
        var haproxyServer: String?
        @Option(name: .customLong("haproxy-backend"), help: "HAProxy backend with the client-id stick table (default mosquitto).")
        var haproxyBackend: String?

        /// The flags given, as settings.
        var flagSettings: Settings {
            let pairs: [(SettingKey, String?)] = [
                (.nodeID, nodeID), (.local, local), (.stateDir, stateDir), (.forwardPrefix, forwardPrefix),
                (.username, username), (.password, password), (.peerUsername, peerUsername), (.peerPassword, peerPassword),
                (.caFile, caFile), (.certFile, certFile), (.keyFile, keyFile), (.tlsVersion, tlsVersion),
                (.peerCAFile, peerCAFile), (.peerCertFile, peerCertFile), (.peerKeyFile, peerKeyFile), (.peerTLSVersion, peerTLSVersion),
                (.healthListen, healthListen), (.metricsListen, metricsListen), (.logLevel, logLevel),
                (.maxPending, maxPending), (.maxPendingBytes, maxPendingBytes), (.peerTimeout, peerTimeout), (.statsInterval, statsInterval), (.peerSyncTimeout, peerSyncTimeout),
                (.topicAliases, topicAliases), (.sessionGrace, sessionGrace), (.maxUncertainSessions, maxUncertainSessions),
                (.replayWindow, replayWindow), (.replayMargin, replayMargin), (.replayMaxBytes, replayMaxBytes),
                (.sharedBalance, sharedBalance), (.delivery, delivery), (.discovery, discovery), (.discoveryExpiry, discoveryExpiry),
                (.advertiseAddress, advertiseAddress), (.adoptAfter, adoptAfter), (.adoptedSessionExpiry, adoptedSessionExpiry),
                (.haproxyServer, haproxyServer), (.haproxyBackend, haproxyBackend),
            ]
            var s: Settings = [:]
            for (key, value) in pairs { if let value { s[key] = SettingValue(values: [value], origin: "--\(key.rawValue)") } }
            if !peers.isEmpty { s[.peer] = SettingValue(values: peers, origin: "--peer") }
            if !haproxyRuntime.isEmpty { s[.haproxyRuntime] = SettingValue(values: haproxyRuntime, origin: "--haproxy-runtime") }
            return s
        }

        /// Reads flags, file and environment into a validated configuration.
        func loadConfiguration() throws(ConfigurationError) -> AgentConfiguration {
            let env = ProcessInfo.processInfo.environment
            var file: Settings = [:]
            if let path = config ?? env["MESH_CONFIG"] {
                file = try ConfigurationFile.load(path: path)
            } else if FileManager.default.fileExists(atPath: ConfigurationFile.defaultPath) {
                file = try ConfigurationFile.load(path: ConfigurationFile.defaultPath)
            }
            return try AgentConfiguration(settings: Settings.resolve(flags: flagSettings, file: file, environment: env))
        }

        func validate() throws {
            do { _ = try loadConfiguration() } catch { throw ValidationError(error.description) }
        }

        func run() async throws {
            let memoryPolicy = ProcessMemory.keepResidentSetFlat()
            let configuration: AgentConfiguration
            do { configuration = try loadConfiguration() } catch { throw ValidationError(error.description) }
            let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
            var logger = Logger(label: "mosquitto-mesh")
            logger.logLevel = level
            switch memoryPolicy {
            case .fixedThresholds: break
            case .operatorTunables(let tunables):
                logger.notice("GLIBC_TUNABLES sets the allocator; the agent's fixed malloc thresholds are not applied", metadata: ["tunables": "\(tunables)"])
            case .refused:
                logger.warning("glibc refused the agent's malloc thresholds; resident memory may creep under client churn")
            }
            var metricsEndpoint: MetricsEndpoint?
            do {
                if let listen = configuration.metricsListen { metricsEndpoint = try await MetricsEndpoint(listen: listen, logger: logger) }
            } catch {
                logger.critical("cannot start: \(error)")
                throw ExitCode(78)
            }
            let agent: MeshAgent
            do {
                agent = try MeshAgent(configuration: configuration, logger: logger)
            } catch {
                logger.critical("cannot start: \(error)")
                throw ExitCode(78)  // EX_CONFIG
            }
            let reloadLogger = logger
            let reloader = ConfigurationReloader { [self] in
                let logger = reloadLogger
                do {
                    let fresh = try loadConfiguration()
                    logger.notice("SIGHUP: configuration reloaded", metadata: ["peers": "\(fresh.peers.map(\.description))"])
                    for (name, changed) in [("node-id", fresh.nodeID != configuration.nodeID), ("local", fresh.local != configuration.local),
                                            ("state-dir", fresh.stateDirectory != configuration.stateDirectory),
                                            ("forward-prefix", fresh.forwardPrefix != configuration.forwardPrefix),
                                            ("discovery", fresh.discovery != configuration.discovery),
                                            ("discovery-expiry", fresh.discoveryExpiry != configuration.discoveryExpiry),
                                            ("advertise-address", fresh.advertiseAddress != configuration.advertiseAddress),
                                            ("delivery", fresh.delivery != configuration.delivery)] where changed {
                        logger.warning("SIGHUP: '\(name)' changed; it takes effect only after a restart")
                    }
                    try await agent.updateSeeds(fresh.peers)
                } catch {
                    logger.error("SIGHUP: configuration rejected, keeping the current one: \(error)")
                }
            }
            let health = configuration.healthListen.map { listen in
                HealthEndpoint(listen: listen, logger: logger, opensAfter: { await agent.waitUntilLinksStarted() },
                               state: { [weak agent] in agent?.health ?? .down })
            }
            // Graceful shutdown goes from last to first: the agent drains while the health
            // endpoint still answers (`down`) and /metrics still shows the drain.
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
            if let metricsEndpoint { services.append(.init(service: metricsEndpoint)) }
            if let health { services.append(.init(service: health)) }
            services += [.init(service: agent), .init(service: reloader)]
            let group = ServiceGroup(
                configuration: .init(
                    services: services,
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger
                )
            )
            try await group.run()
        }
    }
}

/// Turns SIGHUP into calls of `reload`, one at a time, until graceful shutdown.
struct ConfigurationReloader: Service {
    let reload: @Sendable () async -> Void

    func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        for await _ in hangups.cancelOnGracefulShutdown() { await reload() }
    }
}
