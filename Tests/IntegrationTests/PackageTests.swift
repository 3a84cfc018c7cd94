import Foundation
import MeshHarness
import Testing

/// The Debian package, for real: built by scripts/package.sh (or taken from `MESH_DEB`),
/// installed with `dpkg -i` on this machine, run from a PATH without Swift, purged.
///
/// It installs a package on the machine it runs on, so it needs root and dpkg-deb; elsewhere
/// it is skipped with the reason. While installed, the package's files are live on this
/// machine: /etc/mosquitto-mesh/mesh.conf is all comments (agents of other checkouts read it
/// by default and must not trip on it), the broker snippet lands in /etc/mosquitto/conf.d
/// (the system broker is not restarted; tests start their own brokers).
@Suite("debian package", .serialized, .timeLimit(.minutes(10)))
struct PackageTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let canInstall = getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/dpkg-deb")
        && FileManager.default.isExecutableFile(atPath: "/usr/bin/dpkg-shlibdeps")
    /// What a machine without the Swift toolchain has on its PATH.
    static let cleanEnvironment = ["PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"]

    /// Runs a command to completion; returns its exit code and its output (stdout + stderr).
    static func run(_ arguments: [String], environment: [String: String]? = cleanEnvironment,
                    timeout: Duration = .seconds(60)) async throws -> (code: Int32?, output: String) {
        let dir = MeshCluster.temporaryDirectory("pkg-cmd")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = try ChildProcess(executable: arguments[0], arguments: Array(arguments.dropFirst()), environment: environment, logPath: dir + "/out")
        if !(await p.waitForExit(timeout: timeout)) { await p.stop() }
        return (p.exitCode, (try? String(contentsOfFile: dir + "/out", encoding: .utf8)) ?? "")
    }

    /// Every file under the directories the package touches, with its content's hash: the
    /// machine must look the same after the purge as before the install.
    static func snapshot() async throws -> String {
        let paths = ["/etc/mosquitto", "/etc/mosquitto-mesh", "/lib/systemd/system/mosquitto-mesh.service", "/usr/bin/mosquitto-mesh",
                     "/etc/systemd/system/multi-user.target.wants", "/usr/share/doc/mosquitto-mesh", "/var/lib/mosquitto-mesh"]
        let existing = paths.filter { FileManager.default.fileExists(atPath: $0) }
        let (_, out) = existing.isEmpty ? (0, "") : try await run(["/usr/bin/find"] + existing + ["-printf", "%p %m %u:%g %s\n"])
        let overrides = (try? String(contentsOfFile: "/var/lib/dpkg/statoverride", encoding: .utf8)) ?? ""
        return (out.split(separator: "\n") + overrides.split(separator: "\n").filter { $0.contains("mosquitto-mesh") }.map { "statoverride \($0)" })
            .sorted().joined(separator: "\n")
    }

    @Test("scripts/package.sh builds a .deb; dpkg -i installs it; the installed agent runs a two-broker mesh from a PATH without Swift; dpkg --purge leaves the machine as it was",
          .enabled(if: canInstall, "needs root, dpkg-deb and dpkg-shlibdeps: the test installs the package on this machine"))
    func installRunPurge() async throws {
        let clock = ContinuousClock()
        // 1. The package.
        var deb = ProcessInfo.processInfo.environment["MESH_DEB"] ?? ""
        if deb.isEmpty {
            let started = clock.now
            let (code, out) = try await Self.run([Self.root.path + "/scripts/package.sh"], environment: ProcessInfo.processInfo.environment,
                                                 timeout: .seconds(540))
            try #require(code == 0, "scripts/package.sh failed:\n\(out.suffix(3000))")
            deb = String(out.split(separator: "\n").last ?? "")
            print("package: scripts/package.sh took \(started.duration(to: clock.now))")
        }
        try #require(deb.hasSuffix(".deb") && FileManager.default.fileExists(atPath: deb), "no package: \(deb)")
        let (_, fields) = try await Self.run(["/usr/bin/dpkg-deb", "--field", deb, "Version", "Depends"])
        print("package: \(deb)\n\(fields)")
        #expect(!fields.contains("swift"), "the package must not depend on a Swift toolchain: \(fields)")
        #expect(fields.contains("libmosquitto1"))

        if FileManager.default.isExecutableFile(atPath: "/usr/bin/lintian") {
            // Clean at --pedantic but for the tags explained in deploy/debian/lintian-overrides.
            let lint = try await Self.run(["/usr/bin/lintian", "--pedantic", deb], timeout: .seconds(120))
            let tags = lint.output.split(separator: "\n").filter { $0.range(of: #"^[EWIPX]: "#, options: .regularExpression) != nil }
            #expect(tags.isEmpty, "lintian: \(tags.joined(separator: "\n"))")
        }

        if try await Self.run(["/usr/bin/dpkg-query", "-W", "-f=${Status}", "mosquitto-mesh"]).output.contains("installed") {
            // Left over by an interrupted run of this test: start from a clean machine.
            print("package: mosquitto-mesh was installed already; purging it first")
            _ = try await Self.run(["/usr/bin/dpkg", "--purge", "mosquitto-mesh"])
        }
        let before = try await Self.snapshot()

        // 2. Install.
        var env = Self.cleanEnvironment
        env["DEBIAN_FRONTEND"] = "noninteractive"
        let install = try await Self.run(["/usr/bin/dpkg", "-i", deb], environment: env, timeout: .seconds(120))
        var installed = install.code == 0
        defer {
            // Whatever happened below: never leave the package on the machine.
            if installed {
                let p = try? ChildProcess(executable: "/usr/bin/dpkg", arguments: ["--purge", "mosquitto-mesh"], environment: Self.cleanEnvironment)
                while p?.isRunning == true { usleep(10_000) }
            }
        }
        try #require(installed, "dpkg -i failed:\n\(install.output)")
        let fm = FileManager.default
        for path in ["/usr/bin/mosquitto-mesh", "/lib/systemd/system/mosquitto-mesh.service", "/etc/mosquitto-mesh/mesh.conf",
                     "/etc/mosquitto-mesh/acl", "/etc/mosquitto-mesh/mesh.env", "/etc/mosquitto/conf.d/mosquitto-mesh.conf",
                     "/usr/share/man/man1/mosquitto-mesh.1.gz", "/usr/share/doc/mosquitto-mesh/copyright"] {
            #expect(fm.fileExists(atPath: path), "\(path) not installed")
        }
        let envText = try String(contentsOfFile: "/etc/mosquitto-mesh/mesh.env", encoding: .utf8)
        let password = try #require(envText.split(separator: "\n").first { $0.hasPrefix("MESH_PASSWORD=") }.map { String($0.dropFirst(14)) },
                                    "no password in mesh.env:\n\(envText)")
        #expect(password.count >= 16)
        #expect((try? String(contentsOfFile: "/etc/mosquitto/passwd", encoding: .utf8))?.hasPrefix("mesh:") == true)
        #expect(try await Self.run(["/usr/bin/getent", "passwd", "mosquitto-mesh"]).code == 0, "system user missing")
        let perms = try await Self.run(["/usr/bin/stat", "-c", "%a %U:%G", "/etc/mosquitto-mesh/acl", "/etc/mosquitto-mesh/mesh.env", "/etc/mosquitto/passwd"]).output
        #expect(perms.split(separator: "\n") == ["640 root:mosquitto", "600 root:root", "640 root:mosquitto"], "\(perms)")
        #expect(fm.fileExists(atPath: "/etc/systemd/system/multi-user.target.wants/mosquitto-mesh.service"), "unit not enabled")
        if fm.isExecutableFile(atPath: "/usr/bin/systemd-analyze") {
            let verify = try await Self.run(["/usr/bin/systemd-analyze", "verify", "/lib/systemd/system/mosquitto-mesh.service"])
            #expect(verify.code == 0 && verify.output.isEmpty, "systemd-analyze verify: \(verify.output)")
        }

        // 3. The installed binary, with no Swift anywhere on its PATH or in its libraries.
        #expect(try await Self.run(["/bin/sh", "-c", "command -v swift"]).code != 0, "swift is on the clean PATH")
        let ldd = try await Self.run(["/usr/bin/ldd", "/usr/bin/mosquitto-mesh"]).output
        #expect(!ldd.contains("swift") && !ldd.contains("not found") && ldd.contains("libmosquitto.so.1"), "\(ldd)")
        let version = try await Self.run(["/usr/bin/mosquitto-mesh", "--version"])
        #expect(version.code == 0 && fields.contains(version.output.trimmingCharacters(in: .whitespacesAndNewlines)), "\(version)")
        let help = try await Self.run(["/usr/bin/mosquitto-mesh", "run", "--help"])
        #expect(help.code == 0 && help.output.contains("--discovery"), "\(help.output.prefix(500))")

        // 4. Two brokers configured by the installed snippet (their own ports and directories,
        //    the installed ACL; the installed password file plus one client user), two agents
        //    of the installed binary with the installed mesh.conf, the password from mesh.env.
        let dir = MeshCluster.temporaryDirectory("pkg-mesh")
        defer { try? fm.removeItem(atPath: dir) }
        try fm.copyItem(atPath: "/etc/mosquitto/passwd", toPath: dir + "/passwd")
        #expect(try await Self.run(["/usr/bin/mosquitto_passwd", "-b", dir + "/passwd", "alice", "alice-secret"]).code == 0)
        let snippet = try String(contentsOfFile: "/etc/mosquitto/conf.d/mosquitto-mesh.conf", encoding: .utf8)
        var brokers: [ChildProcess] = []
        var agents: [ChildProcess] = []
        let ports = [Network.freePort(), Network.freePort()]
        let health = [Network.freePort(), Network.freePort()]
        func cleanup() async {
            for a in agents { await a.stop() }
            for b in brokers { await b.stop() }
        }
        do {
            for (i, port) in ports.enumerated() {
                let conf = snippet.replacingOccurrences(of: "\nlistener 1883\n", with: "\nlistener \(port) 127.0.0.1\n")
                    .replacingOccurrences(of: "password_file /etc/mosquitto/passwd", with: "password_file \(dir)/passwd")
                try #require(conf.contains("listener \(port) 127.0.0.1") && conf.contains("acl_file /etc/mosquitto-mesh/acl"), "snippet changed shape")
                let brokerDir = "\(dir)/broker-\(i)"
                try fm.createDirectory(atPath: brokerDir, withIntermediateDirectories: true)
                try ("user root\npersistence_location \(brokerDir)/\nlog_dest file \(brokerDir)/mosquitto.log\n" + conf)
                    .write(toFile: brokerDir + "/mosquitto.conf", atomically: true, encoding: .utf8)
                brokers.append(try ChildProcess(executable: "/usr/sbin/mosquitto", arguments: ["-c", brokerDir + "/mosquitto.conf"],
                                                logPath: brokerDir + "/stderr.log"))
                let up = await Network.waitForListening(port: port, timeout: .seconds(10))
                try #require(up, "broker \(i) with the installed snippet did not start: \(brokers[i].logTail())")
            }
            var agentEnv = Self.cleanEnvironment
            agentEnv["MESH_PASSWORD"] = password
            for i in 0..<2 {
                let args = ["run", "--config", "/etc/mosquitto-mesh/mesh.conf", "--node-id", "pkg\(i)", "--local", "127.0.0.1:\(ports[i])",
                            "--peer", "127.0.0.1:\(ports[1 - i])", "--username", "mesh", "--state-dir", "\(dir)/agent-\(i)",
                            "--health-listen", "127.0.0.1:\(health[i])"]
                try fm.createDirectory(atPath: "\(dir)/agent-\(i)", withIntermediateDirectories: true)
                agents.append(try ChildProcess(executable: "/usr/bin/mosquitto-mesh", arguments: args, environment: agentEnv,
                                               logPath: "\(dir)/agent-\(i)/agent.log"))
            }
            for i in 0..<2 {
                try await waitUntil(timeout: .seconds(20), "installed agent \(i) to answer up: \(agents[i].logTail())") {
                    Network.readLine(port: health[i])?.hasPrefix("up") == true
                }
            }
            let sub = try HarnessClient(clientID: "pkg-sub", port: ports[1], username: "alice", password: "alice-secret")
            try await sub.connect()
            try await sub.subscribe("pkg/#", qos: 1)
            let pub = try HarnessClient(clientID: "pkg-pub", port: ports[0], username: "alice", password: "alice-secret")
            try await pub.connect()
            // The subscription reaches agent 0 asynchronously: a probe every 100 ms until one
            // crosses (at most 150).
            var crossed = false
            for probe in 0..<150 where !crossed {
                try pub.publish("pkg/probe", "\(probe)", qos: 1)
                _ = try? await sub.waitForMessages(1, timeout: .milliseconds(100), where: { $0.topic == "pkg/probe" })
                crossed = sub.messages.contains { $0.topic == "pkg/probe" }
            }
            try #require(crossed, "nothing crossed the installed mesh: \(agents.map { $0.logTail() })")
            try pub.publish("pkg/x", "hello from the package", qos: 1)
            try await sub.waitForMessages(1, timeout: .seconds(10), where: { $0.topic == "pkg/x" })
            // An ordinary user cannot reach the mesh's topics (the installed ACL).
            try pub.publish("forward/pkg/x", "injected", qos: 1)
            try pub.publish("pkg/y", "after", qos: 1)
            try await sub.waitForMessages(1, timeout: .seconds(10), where: { $0.topic == "pkg/y" })
            #expect(sub.messages.filter { $0.topic == "pkg/x" }.map(\.text) == ["hello from the package"])
            sub.close(); pub.close()
            for (i, a) in agents.enumerated() {
                a.signal(SIGTERM)
                #expect(await a.waitForExit(timeout: .seconds(20)))
                #expect(a.exitCode == 0, "installed agent \(i) did not stop cleanly: \(a.logTail())")
            }
        } catch {
            for a in agents { print("--- installed agent ---\n\(a.logTail())") }
            await cleanup()
            throw error
        }
        await cleanup()

        // 5. Purge: every file the package or its scripts made is gone.
        let purge = try await Self.run(["/usr/bin/dpkg", "--purge", "mosquitto-mesh"], environment: env, timeout: .seconds(120))
        installed = purge.code != 0
        #expect(purge.code == 0, "dpkg --purge failed:\n\(purge.output)")
        let after = try await Self.snapshot()
        #expect(after == before, "the purge left the machine changed:\nbefore:\n\(before)\nafter:\n\(after)")
    }
}
