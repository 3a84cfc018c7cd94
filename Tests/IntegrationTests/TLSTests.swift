import Foundation
import MeshCore
import MeshHarness
import Testing

/// Peer links across an untrusted network: TLS with a CA the test generates (openssl).
@Suite("TLS links", .serialized, .timeLimit(.minutes(2)))
struct TLSTests {
    /// A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA.
    struct Certificates {
        let directory: String
        var ca: String { directory + "/ca.crt" }
        var otherCA: String { directory + "/other-ca.crt" }
        var serverCert: String { directory + "/server.crt" }
        var serverKey: String { directory + "/server.key" }

        init(directory: String) async throws {
            self.directory = directory
            let d = directory
            let steps: [[String]] = [
                ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=mesh-test-ca", "-keyout", "\(d)/ca.key", "-out", "\(d)/ca.crt"],
                ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=someone-else", "-keyout", "\(d)/other-ca.key", "-out", "\(d)/other-ca.crt"],
                ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "\(d)/server.key", "-out", "\(d)/server.csr"],
                ["x509", "-req", "-in", "\(d)/server.csr", "-CA", "\(d)/ca.crt", "-CAkey", "\(d)/ca.key", "-CAcreateserial", "-days", "2",
                 "-extfile", "\(d)/san.ext", "-out", "\(d)/server.crt"],
            ]
            try "subjectAltName=IP:127.0.0.1\n".write(toFile: "\(d)/san.ext", atomically: true, encoding: .utf8)
            for args in steps {
                let p = try ChildProcess(executable: "/usr/bin/openssl", arguments: args, logPath: "\(d)/openssl.log")
                guard await p.waitForExit(timeout: .seconds(30)), p.exitCode == 0 else {
                    throw HarnessError("openssl \(args.joined(separator: " ")) failed: \(p.logTail())")
                }
            }
        }
    }

    @Test("a peer link with the right CA forwards; with the wrong CA it is refused and says why", arguments: [true, false])
    func tlsPeerLink(rightCA: Bool) async throws {
        let dir = MeshCluster.temporaryDirectory("tls")
        let certs = try await Certificates(directory: dir)
        let tlsPort = Network.freePort()
        var bOptions = BrokerProcess.Options()
        bOptions.extraConfiguration = ["listener \(tlsPort) 127.0.0.1", "cafile \(certs.ca)", "certfile \(certs.serverCert)",
                                       "keyfile \(certs.serverKey)", "tls_version tlsv1.2"]
        let a = BrokerProcess(name: "a", directory: dir + "/broker-a")
        let b = BrokerProcess(name: "b", directory: dir + "/broker-b", options: bOptions)
        let agentA = AgentProcess(nodeID: "a", local: a, peers: ["127.0.0.1:\(tlsPort)"], stateDirectory: dir + "/agent-a",
                                  extraArguments: ["--peer-cafile", rightCA ? certs.ca : certs.otherCA, "--peer-sync-timeout", "1"])
        let agentB = AgentProcess(nodeID: "b", local: b, peers: [a.endpoint], stateDirectory: dir + "/agent-b")
        func stopAll() async {
            await agentA.stop(); await agentB.stop(); await a.stop(); await b.stop()
        }
        do {
            try await a.start()
            try await b.start()
            try agentA.start(); try agentB.start()
            try await agentB.waitUntilUp()
            let sub = try HarnessClient(clientID: "tls-sub", port: b.port)
            try await sub.connect()
            try await sub.subscribe("secure/#", qos: 1)
            let reader = try await ControlReader(port: a.port)
            if rightCA {
                try await agentA.waitUntilUp()
                try await waitUntil(timeout: .seconds(10), "a to read b's interest over TLS") { (reader.seq(seenBy: "a", of: "b") ?? 0) > 0 }
                try await waitUntil(timeout: .seconds(10), "b's advert with secure/#") {
                    guard let m = reader.latest("$mesh/a/peers/b/subscriptions") else { return false }
                    return m.text.contains("secure/#")
                }
                let pub = try HarnessClient(clientID: "tls-pub", port: a.port)
                try await pub.connect()
                try pub.publish("secure/x", "over tls", qos: 1)
                #expect(try await sub.waitForMessages(1).first?.text == "over tls")
                pub.close()
            } else {
                try await waitUntil(timeout: .seconds(15), "a to log the failed TLS handshake") {
                    agentA.logTail().contains("certificate verify failed")
                }
                // The link never came up: a's view says so.
                try await waitUntil(timeout: .seconds(5), "a's view") { reader.view(of: "a") != nil }
                let peers = reader.view(of: "a")?.peers
                #expect(peers?.first?.connected == false)
                #expect(agentA.isRunning, "a wrong CA must not crash the agent")
            }
            sub.close(); reader.close()
        } catch {
            print(agentA.logTail())
            await stopAll()
            throw error
        }
        await stopAll()
        try? FileManager.default.removeItem(atPath: dir)
    }
}
